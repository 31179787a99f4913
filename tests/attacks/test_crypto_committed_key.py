"""Attack: the aggregator asks the owners to encrypt under its own key.

Issue 10, point 6: owners encrypted their statistics under whatever public key a
``StatsRequest`` or ``Setup`` carried. An aggregator that puts its own key there
decrypts every owner's sums (and, after a ``Setup`` under its key, their updates).
Owners now encrypt only under the key the buyer committed to (its fingerprint,
``keyHash`` on chain): nothing encrypted under another key leaves an owner.
"""

from __future__ import annotations

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector, generate_keypair
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.standardize import sums_length
from deltaml.protocol import messages as m
from deltaml.roles import Aggregator, DataOwner, ModelBuyer
from deltaml.simulation import owner_ids
from deltaml.transport import InMemoryTransport, RecordingTransport

SPEC = m.TrainingSpec(model="linear", rounds=1)


def _shares(n: int = 3) -> list:  # type: ignore[type-arg]
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    return split_owners(train, n, seed=0)


def _vectors_in(messages: list[m.Message]) -> list[EncryptedVector]:
    out: list[EncryptedVector] = []
    for msg in messages:
        for value in vars(msg).values():
            items = value if isinstance(value, tuple) else (value,)
            out += [v for v in items if isinstance(v, EncryptedVector)]
    return out


def test_an_aggregator_running_under_its_own_key_gets_nothing_from_the_owners() -> None:
    buyer = ModelBuyer("buyer", SPEC, 512, allow_test_keys=True)
    committed = key_fingerprint(buyer.public_key)
    ids = owner_ids(3)
    owners = [
        DataOwner(oid, s.X, s.y, committed_key=committed)
        for oid, s in zip(ids, _shares(), strict=True)
    ]
    recorder = RecordingTransport(InMemoryTransport([buyer, *owners]))
    own_key, _ = generate_keypair(512, allow_test_keys=True)
    aggregator = Aggregator(recorder, "buyer", ids)
    initial = EncryptedVector.encrypt(own_key, np.zeros(11), SPEC.base_exponent)
    with pytest.raises(ProtocolError, match="not the request's committed key"):
        aggregator.train(SPEC, own_key, initial, 10, True)
    asked = recorder.received_by(ids[0])
    assert [msg.kind for msg in asked] == ["StatsRequest"]  # the attack was tried
    # Nothing an owner sent back is encrypted under the aggregator's key.
    replies = recorder.received_by("aggregator")
    assert not [v for v in _vectors_in(replies) if v.public_key == own_key]


def test_no_message_under_another_key_is_answered() -> None:
    buyer = ModelBuyer("buyer", SPEC, 512, allow_test_keys=True)
    own_key, _ = generate_keypair(512, allow_test_keys=True)
    share = _shares()[0]
    owner = DataOwner("o", share.X, share.y, committed_key=key_fingerprint(buyer.public_key))
    foreign = EncryptedVector.encrypt(own_key, np.zeros(11), SPEC.base_exponent)
    stats = m.PublicStats(100, (0.0,) * 10, (1.0,) * 10, 0.0, 1.0)
    for attack in (
        m.StatsRequest(True, own_key, 40),
        m.Setup("trainer", SPEC, stats, own_key, 2, foreign),
        # the buyer's key in the field, but the aggregator's under the vector
        m.Setup("trainer", SPEC, stats, buyer.public_key, 2, foreign),
    ):
        with pytest.raises(ProtocolError, match="key"):
            owner.handle(attack)
    # The committed key is answered, and pinned: a later vector under another key is not.
    honest = m.StatsRequest(True, buyer.public_key, 40, ("0",) * sums_length(10, True))
    assert isinstance(owner.handle(honest), m.EncryptedSums)
    setup = m.Setup("trainer", SPEC, stats, buyer.public_key, 2, buyer.initial_model(11))
    assert isinstance(owner.handle(setup), m.SetupDone)
    with pytest.raises(ProtocolError, match="another key"):
        owner.handle(m.RoundRequest(1, foreign))


def test_the_buyer_s_modulus_with_the_aggregator_s_randomness_base_is_refused() -> None:
    """The same ``n`` with ``h_s = 1 + k·n``: every "ciphertext" would be
    ``1 + (m + α·k)·n mod n²``, and with ``k = 2^200`` anyone knowing ``k`` reads
    ``m mod 2^200`` from it — the owner's data, no private key needed. The key
    fingerprint covers ``h_s``, so the owner refuses before encrypting anything."""
    from deltaml.crypto.paillier import PublicKey

    buyer = ModelBuyer("buyer", SPEC, 512, allow_test_keys=True)
    real = buyer.public_key
    k = 2**200  # alpha has about bits(n)/2 bits, so alpha*k stays below n: no wrap
    forged = PublicKey(real.n, 1 + k * real.n)
    # The forgery works as the attack says: the low 200 bits of a plaintext in the clear.
    secret = 2**150 + 123456789
    c = int(EncryptedVector.encrypt_ints(forged, [secret], 0).ciphertexts[0])
    assert ((c - 1) // forged.n) % k == secret
    assert key_fingerprint(forged) != key_fingerprint(real)

    ids = owner_ids(3)
    owners = [
        DataOwner(oid, s.X, s.y, committed_key=key_fingerprint(real))
        for oid, s in zip(ids, _shares(), strict=True)
    ]
    recorder = RecordingTransport(InMemoryTransport([buyer, *owners]))
    aggregator = Aggregator(recorder, "buyer", ids)
    initial = EncryptedVector.encrypt(forged, np.zeros(11), SPEC.base_exponent)
    with pytest.raises(ProtocolError, match="not the request's committed key"):
        aggregator.train(SPEC, forged, initial, 10, True)
    replies = recorder.received_by("aggregator")
    assert not [v for v in _vectors_in(replies) if v.public_key == forged]
