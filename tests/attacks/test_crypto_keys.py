"""Attack: a weak Paillier key (512 or 1024 bits) slipped into the protocol.

Issue 10, point 6: the wire and serialization decoders accepted 512–1024-bit keys, and
an owner encrypted its statistics under whatever key a ``StatsRequest`` carried. A key
that small can be factored, so whoever factors it reads the owner's sums. Outside a
test that opts in (``DELTAML_ALLOW_TEST_KEYS=1``, set by ``tests/conftest.py`` for the
session and removed here), every production path must refuse it.
"""

from __future__ import annotations

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.crypto.paillier import TEST_KEYS_ENV, PublicKey, key_fingerprint
from deltaml.crypto.serialization import pack_vectors, unpack_vectors
from deltaml.errors import DeltaMLValueError
from deltaml.protocol import messages as m
from deltaml.roles import DataOwner, ModelBuyer
from deltaml.services.wire import from_wire, to_wire

WEAK_BITS = [512, 1024]


@pytest.fixture(scope="module")
def weak_keys() -> dict[int, PublicKey]:
    """The attacker's keys: generating them is the one place a test opts in explicitly."""
    return {bits: generate_keypair(bits, allow_test_keys=True)[0] for bits in WEAK_BITS}


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test-key permission: what a deployed node runs with."""
    monkeypatch.delenv(TEST_KEYS_ENV, raising=False)


def _owner(key: PublicKey) -> DataOwner:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    return DataOwner("owner", x, y, committed_key=key_fingerprint(key))


@pytest.mark.parametrize("bits", WEAK_BITS)
def test_an_owner_refuses_to_encrypt_under_a_weak_key(
    bits: int, weak_keys: dict[int, PublicKey], production: None
) -> None:
    key = weak_keys[bits]
    # Even when the weak key is the one committed to: its size alone is refused.
    owner = _owner(key)
    with pytest.raises(DeltaMLValueError, match=f"unsupported key size of {bits} bits"):
        owner.handle(m.StatsRequest(True, key, 40))


@pytest.mark.parametrize("bits", WEAK_BITS)
def test_the_wire_and_serialization_decoders_refuse_a_weak_key(
    bits: int, weak_keys: dict[int, PublicKey], production: None
) -> None:
    key = weak_keys[bits]
    wire = to_wire(m.StatsRequest(True, key, 40))
    with pytest.raises(DeltaMLValueError, match=r"StatsRequest\.public_key: unsupported key size"):
        from_wire(wire)
    vector = EncryptedVector.encrypt(key, [1.0, 2.0], 40)
    with pytest.raises(DeltaMLValueError, match=f"unsupported key size of {bits} bits"):
        unpack_vectors(pack_vectors([vector]))


@pytest.mark.parametrize("bits", WEAK_BITS)
def test_no_weak_key_is_generated_or_held_by_a_buyer(
    bits: int, weak_keys: dict[int, PublicKey], production: None
) -> None:
    with pytest.raises(DeltaMLValueError, match="unsupported key size"):
        generate_keypair(bits)
    _, private = generate_keypair(bits, allow_test_keys=True)
    with pytest.raises(DeltaMLValueError, match="unsupported key size"):
        ModelBuyer("buyer", m.TrainingSpec("linear", 1), keypair=(private.public_key, private))


def test_a_test_opts_in_explicitly(weak_keys: dict[int, PublicKey], production: None) -> None:
    """The control: with the permission (the flag, or the environment) the same key works."""
    key = weak_keys[512]
    owner = DataOwner(
        "owner",
        np.ones((4, 2)),
        np.ones(4),
        committed_key=key_fingerprint(key),
        allow_test_keys=True,
    )
    reply = owner.handle(m.StatsRequest(True, key, 40, ("0",) * 7))  # 1 + 2·2 + 2 sums
    assert isinstance(reply, m.EncryptedSums) and len(reply.sums) > 0
