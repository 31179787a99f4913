"""Attack: the aggregator passes one owner's statistics off as the sum of two.

Issue 10, point 6: ``DecryptStats`` trusted the aggregator's count of contributors.
An aggregator that claimed two contributors but sent one owner's encrypted sums got
that owner's sums, means and scales decrypted and published. The buyer now decrypts
only the sum of one signed ``EncryptedSums`` per seat, each signed by that seat.
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_account import Account

from deltaml.crypto import EncryptedVector
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.learning.standardize import local_sums, sums_length
from deltaml.protocol import messages as m
from deltaml.roles import DataOwner, ModelBuyer
from deltaml.roles.aggregator import zero_sum_masks
from deltaml.roles.buyer import Seats
from deltaml.roles.evidence import sign_message

D = 3


@pytest.fixture(scope="module")
def market() -> tuple[ModelBuyer, dict[str, DataOwner], dict[str, m.EncryptedSums]]:
    buyer = ModelBuyer("buyer", m.TrainingSpec(model="linear", rounds=1), 512, allow_test_keys=True)
    rng = np.random.default_rng(3)
    committed = key_fingerprint(buyer.public_key)
    owners = {
        oid: DataOwner(oid, rng.normal(size=(30, D)), rng.normal(size=30), committed_key=committed)
        for oid in ("a", "b")
    }
    buyer.seats = Seats.of(["a"], ["b"], {oid: o.address for oid, o in owners.items()})
    masks = zero_sum_masks(2, sums_length(D, True), buyer.public_key)
    sums = {
        oid: o.handle(m.StatsRequest(True, buyer.public_key, 40, mask))
        for (oid, o), mask in zip(owners.items(), masks, strict=True)
    }
    assert all(isinstance(s, m.EncryptedSums) for s in sums.values())
    return buyer, owners, sums  # type: ignore[return-value]


def _ask(buyer: ModelBuyer, owners: list[str], sums: list[m.EncryptedSums]) -> m.Message:
    total: EncryptedVector = sum(s.sums for s in sums)  # type: ignore[assignment]
    return buyer.handle(
        m.DecryptStats(
            total,
            len(owners),
            D,
            True,
            tuple(owners),
            tuple(s.sums for s in sums),
            tuple(s.signature for s in sums),
        )
    )


def test_two_claimed_contributors_with_one_owners_stats_are_refused(market) -> None:  # type: ignore[no-untyped-def]
    buyer, _, sums = market
    one = sums["a"]
    # The aggregator's word alone, as the message used to be.
    with pytest.raises(ProtocolError):
        buyer.handle(m.DecryptStats(one.sums, 2, D, True))
    # One owner's signed sums, counted twice.
    with pytest.raises(ProtocolError):
        _ask(buyer, ["a", "a"], [one, one])
    # Its sums plus zeros the aggregator signs as the other seat.
    zeros = EncryptedVector.encrypt(buyer.public_key, np.zeros(sums_length(D, True)), 40)
    forged = sign_message(m.EncryptedSums(zeros), Account.create(), buyer.public_key)
    with pytest.raises(ProtocolError, match="does not carry its signature"):
        _ask(buyer, ["a", "b"], [one, forged])
    # ... or as a Sybil that holds no seat.
    with pytest.raises(ProtocolError):
        _ask(buyer, ["a", "sybil"], [one, forged])
    assert buyer.stats is None  # nothing was decrypted


def test_every_seats_signed_sums_are_decrypted(market) -> None:  # type: ignore[no-untyped-def]
    """The control: one signed sum from each seat is what an honest aggregator sends. The
    buyer receives each owner's signed sums to check them, but masked: it learns only
    their total."""
    buyer, owners, sums = market
    reply = _ask(buyer, ["a", "b"], [sums["a"], sums["b"]])
    assert isinstance(reply, m.PublicStats) and reply.count == 60
    for oid, owner in owners.items():
        own = local_sums(owner._x, owner._y, True)
        seen = sums[oid].sums.decrypt(buyer._private_key)  # what a curious buyer could read
        assert np.min(np.abs(seen - own)) > 2.0**100
