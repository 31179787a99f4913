"""A buyer that reads everything it can (``metric_protocol: gram``): it holds the key,
so a validator's ``Enc(H_v)``, their sum, or a ciphertext computed from them in its
hands or in the public transcript would be that validator's statistics in the clear.

It decrypts every ciphertext it receives, nested messages included, and every one the
public transcript carries, and finds no entry of any validator's Gram matrix or of
their sum; it receives no message that carries them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from deltaml.crypto import EncryptedVector
from deltaml.crypto.serialization import ciphertexts_from_bytes
from deltaml.evidence.signatures import decode_blob
from deltaml.learning.gram_metric import validator_gram
from deltaml.transport import RecordingTransport
from gram_testkit import CONFIG, run_gram


def _vectors(obj: object) -> list[EncryptedVector]:
    if isinstance(obj, EncryptedVector):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [v for f in dataclasses.fields(obj) for v in _vectors(getattr(obj, f.name))]
    if isinstance(obj, tuple | list):
        return [v for item in obj for v in _vectors(item)]
    return []


@pytest.fixture(scope="module", params=[1, 2], ids=["one validator", "two validators"])
def seen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    holder: dict[str, RecordingTransport] = {}

    def wrap(inner):  # type: ignore[no-untyped-def]
        holder["r"] = RecordingTransport(inner)
        return holder["r"]

    path = tmp_path_factory.mktemp("gram") / "run.jsonl"
    result = run_gram(4 if request.param == 1 else 7, wrap, transcript=str(path))
    assert len(result.validators) == request.param
    parties = holder["r"].inner._parties  # type: ignore[attr-defined]
    buyer = parties["buyer"]
    grams = [validator_gram(parties[v]._factor, CONFIG.precision_bits) for v in result.validators]
    size = len(grams[0])
    total = [[sum(g[i][j] for g in grams) for j in range(size)] for i in range(size)]
    entries = {abs(v) for g in [*grams, total] for row in g for v in row if abs(v) >= 1 << 16}
    received = holder["r"].received_by("buyer")
    cts = [int(c) for msg in received for v in _vectors(msg) for c in v.ciphertexts]
    for line in Path(path).read_text().splitlines():
        for blob in json.loads(line)["blobs"].values():
            cts += [int(c) for c in ciphertexts_from_bytes(buyer.public_key, decode_blob(blob))]
    plain = {abs(buyer._private_key.decrypt_signed(c)) for c in cts}
    return entries, plain, {msg.kind for msg in received}, result


def test_the_buyer_decrypts_no_entry_of_any_validators_gram(seen) -> None:  # type: ignore[no-untyped-def]
    entries, plain, kinds, result = seen
    assert len(entries) > 20 and len(plain) > 20  # the test looks at something
    assert result.initial_metric is not None and result.contributions
    assert result.verified, result.verification
    assert not entries & plain
    assert not {"GramShare", "FormCross", "FormShare", "FormCombineRequest"} & kinds
    assert {"GramNotesRequest", "FormRequest", "FormOpenRequest"} <= kinds
