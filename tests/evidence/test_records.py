"""The typed transcript records: same bodies as before, and clear errors naming the field."""

from __future__ import annotations

import pytest

from deltaml.evidence.checks import HANDLERS
from deltaml.evidence.checks.base import ROLE_OF
from deltaml.protocol import records

REF = {"sha256": "ab" * 32, "length": 3, "exponent": 40}


def test_a_body_reads_back_to_the_same_record() -> None:
    rec = records.Broadcast(round=2, purpose="round", source="cd", exponents=["1f"], outgoing=REF)
    body = rec.to_body()
    assert body == {
        "round": 2,
        "purpose": "round",
        "source": "cd",
        "exponents": ["1f"],
        "outgoing": REF,
    }
    assert records.Broadcast.from_body({"kind": "Broadcast", "key": "k", **body}) == rec


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"round": "2", "dropped": ["a"], "remaining": []}, "Dropped.round: expected int"),
        ({"round": True, "dropped": ["a"], "remaining": []}, "Dropped.round: expected int"),
        ({"round": 2, "dropped": [1], "remaining": []}, "Dropped.dropped: expected"),
        ({"round": 2, "dropped": ["a"]}, "Dropped.remaining: missing"),
    ],
)
def test_a_malformed_body_is_refused_naming_record_and_field(body: dict, message: str) -> None:
    with pytest.raises(records.RecordError, match=message):
        records.Dropped.from_body(body)


def test_every_record_kind_has_one_check_and_a_role() -> None:
    assert set(HANDLERS) == set(ROLE_OF)
    assert set(records.RECORD_TYPES) <= set(HANDLERS)
