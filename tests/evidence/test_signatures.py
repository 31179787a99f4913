"""Canonical bodies and EIP-191 signatures: stable bytes, the right signer, nothing else."""

from __future__ import annotations

import pytest
from eth_account import Account

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.errors import DeltaMLValueError
from deltaml.evidence.signatures import (
    body_digest,
    canonical_json,
    ciphertexts_of,
    key_id,
    parse_hex_ints,
    recover_signer,
    sign_body,
    vector_bytes,
    vector_ref,
)
from deltaml.protocol import messages as m
from deltaml.roles.evidence import message_body, sign_message


@pytest.fixture(scope="module")
def keys():
    return generate_keypair(512, allow_test_keys=True)


def test_canonical_json_is_independent_of_key_order_and_spacing() -> None:
    a = {"b": [1, 2.5, "x"], "a": {"z": None, "y": True}}
    b = {"a": {"y": True, "z": None}, "b": [1, 2.5, "x"]}
    assert canonical_json(a) == canonical_json(b) == (b'{"a":{"y":true,"z":null},"b":[1,2.5,"x"]}')
    assert body_digest(a) == body_digest(b)
    assert body_digest(a) != body_digest({**a, "c": 0})
    with pytest.raises(DeltaMLValueError):
        canonical_json({"nan": float("nan")})
    with pytest.raises(DeltaMLValueError):
        canonical_json({"bytes": b"x"})


def test_a_signature_recovers_its_signer_and_only_for_its_body() -> None:
    alice, bob = Account.create(), Account.create()
    body = {"kind": "Test", "value": 1.25}
    signature = sign_body(alice, body)
    assert recover_signer(body, signature) == alice.address
    assert recover_signer({**body, "value": 1.5}, signature) != alice.address
    assert recover_signer(body, sign_body(bob, body)) == bob.address
    for bad in ("", "0x", "0x" + "00" * 65, "0x" + "ff" * 65, "zz", signature[:-2], 7):
        assert recover_signer(body, bad) != alice.address  # type: ignore[arg-type]


def test_vector_references_bind_the_exact_ciphertexts(keys) -> None:
    pk, _ = keys
    v = EncryptedVector.encrypt_ints(pk, [1, 2, 3], 9)
    ref = vector_ref(v)
    assert set(ref) == {"exponent", "length", "sha256"}  # no bound: it is the sender's claim
    assert (ref["exponent"], ref["length"]) == (9, 3)
    assert ciphertexts_of(pk, vector_bytes(v), ref) == [int(c) for c in v.ciphertexts]
    assert vector_ref(v.rerandomize())["sha256"] != ref["sha256"]
    blob = bytearray(vector_bytes(v))
    blob[-1] ^= 1
    with pytest.raises(DeltaMLValueError, match="digest"):
        ciphertexts_of(pk, bytes(blob), ref)


def test_hex_integers_are_parsed_strictly() -> None:
    assert parse_hex_ints(["0", "ff", "1a2b"], "x", 16) == [0, 255, 6699]
    for bad in (["FF"], ["-1"], ["0x1"], ["1_0"], [""], [" 1"], [5], "ff", ["f" * 5]):
        with pytest.raises(DeltaMLValueError):
            parse_hex_ints(bad, "x", 16)


def test_signed_messages_carry_their_senders_signature(keys) -> None:
    pk, _ = keys
    owner = Account.create()
    v = EncryptedVector.encrypt_ints(pk, [4, 5], 0)
    msg = sign_message(m.StateUpdate(3, v, "round", "ab" * 32), owner, pk)
    body = message_body(msg, key_id(pk))
    assert body["kind"] == "StateUpdate" and body["round"] == 3 and body["key"] == key_id(pk)
    assert recover_signer(body, msg.signature) == owner.address
    other_key, _ = generate_keypair(512, allow_test_keys=True)
    # bound to this request's key: the same body under another key is another body
    assert recover_signer(message_body(msg, key_id(other_key)), msg.signature) != owner.address
    replayed = m.StateUpdate(4, v, "round", "ab" * 32, msg.signature)  # another round
    assert recover_signer(message_body(replayed, key_id(pk)), msg.signature) != owner.address
