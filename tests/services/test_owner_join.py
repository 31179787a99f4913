"""An owner's join on chain (services/owner_join.py): a request the aggregator starts
between the owner's check and its join transaction is refused in the same plain line
as one already started — not with the contract's revert (seen in a browser test)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from deltaml.crypto import generate_keypair
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import LedgerError, ProtocolError
from deltaml.ledger.base import RequestStatus
from deltaml.protocol.rules import request_hash
from deltaml.services.owner_join import join_offer

AGGREGATOR = "0x" + "ab" * 20


class StartsMeanwhile:
    """A ledger whose request is started by the aggregator as this owner joins."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.joined = False

    def request(self, cid: int) -> Any:
        return self.state

    def has_joined(self, cid: int) -> bool:
        return False

    def join(self, cid: int, spec_hash: bytes, key_hash: bytes) -> None:
        self.state = dataclasses.replace(self.state, status=RequestStatus.IN_PROGRESS)
        raise LedgerError("WrongStatus", (cid, RequestStatus.IN_PROGRESS))


@dataclasses.dataclass(frozen=True)
class _State:
    status: RequestStatus
    spec_hash: bytes
    key_hash: bytes
    aggregator: str


def test_a_request_started_while_joining_is_refused_in_one_plain_line() -> None:
    public, _ = generate_keypair(1024, allow_test_keys=True)
    offer = {"chain_request_id": 3, "spec": {"model": "linear"}, "public_key": public.to_dict(),
             "requirements": {"features": ["a"], "target": "y", "owners": 2}}  # fmt: skip
    state = _State(
        RequestStatus.OPEN,
        request_hash(offer["spec"], offer["requirements"]),
        key_fingerprint(public),
        AGGREGATOR,
    )
    ledger = StartsMeanwhile(state)
    with pytest.raises(ProtocolError) as caught:
        join_offer(ledger, 7, offer, AGGREGATOR)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "request 7 (on chain 3) refused: it is IN_PROGRESS on chain, not OPEN"
    )
    # another revert is not dressed up as this one
    other = SimpleNamespace(
        request=lambda cid: state,
        has_joined=lambda cid: False,
        join=lambda *a: (_ for _ in ()).throw(LedgerError("NotRegistered", (3,))),
    )
    with pytest.raises(LedgerError, match="NotRegistered"):
        join_offer(other, 7, offer, AGGREGATOR)  # type: ignore[arg-type]
