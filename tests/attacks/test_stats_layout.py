"""Attack: the aggregator asks for statistics laid out for another request — class sums
the request did not publish or leaves out, sums over non-empty cells where the request
does not fill them in (or the reverse).

A request of more than two classes publishes each class's row count and feature means
over all owners (learning/lda.py); a two-class or regression request publishes only the
global means and scales. Owners answer a ``StatsRequest`` before they receive the spec,
so an aggregator could ask a two-class request's owners for class sums — K·(d + 1) more
aggregate numbers — and have the buyer decrypt them. The buyer decrypts only the
statistics its own request names: the class sums of exactly ``n_classes`` classes, or
none; the sums and counts of non-empty cells exactly when its request ``impute``s (an
owner with empty cells refuses plain sums itself).
"""

from __future__ import annotations

import numpy as np
import pytest

from deltaml.crypto import EncryptedVector
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ProtocolError
from deltaml.learning.standardize import sums_length
from deltaml.protocol import messages as m
from deltaml.roles import DataOwner, ModelBuyer
from deltaml.roles.aggregator import zero_sum_masks
from deltaml.roles.buyer import Seats

D = 3


def _run(spec: m.TrainingSpec, classes: int, impute: bool = False) -> m.Message:
    """The statistics round with ``classes`` class sums (and ``impute``) asked of two
    owners; their rows have empty cells when the request fills them in."""
    buyer = ModelBuyer("buyer", spec, 512, allow_test_keys=True)
    rng = np.random.default_rng(5)
    committed = key_fingerprint(buyer.public_key)
    x = {oid: rng.normal(size=(30, D)) for oid in ("a", "b")}
    if spec.impute:
        x["a"][::7, 1] = np.nan
    owners = {
        oid: DataOwner(oid, x[oid], rng.integers(0, 3, size=30), committed_key=committed)
        for oid in ("a", "b")
    }
    buyer.seats = Seats.of(["a"], ["b"], {oid: o.address for oid, o in owners.items()})
    masks = zero_sum_masks(2, sums_length(D, False, classes, impute), buyer.public_key)
    sums = [
        o.handle(m.StatsRequest(False, buyer.public_key, 40, mask, classes, impute))
        for o, mask in zip(owners.values(), masks, strict=True)
    ]
    total: EncryptedVector = sum(s.sums for s in sums)  # type: ignore[assignment,union-attr]
    request = m.DecryptStats(
        total, 2, D, False, ("a", "b"),
        tuple(s.sums for s in sums),  # type: ignore[union-attr]
        tuple(s.signature for s in sums),  # type: ignore[union-attr]
        classes,
        impute,
    )  # fmt: skip
    return buyer.handle(request)


TWO_CLASSES = m.TrainingSpec(model="logistic", rounds=1)
THREE_CLASSES = m.TrainingSpec(
    model="logistic", rounds=1, solver="exact", contributions=False, n_classes=3
)


def test_class_sums_a_two_class_request_did_not_publish_are_not_decrypted() -> None:
    with pytest.raises(ProtocolError, match="statistics of 3 classes"):
        _run(TWO_CLASSES, 3)


def test_a_request_of_three_classes_gets_its_class_sums_or_nothing() -> None:
    with pytest.raises(ProtocolError, match="statistics of 0 classes"):
        _run(THREE_CLASSES, 0)
    with pytest.raises(ProtocolError, match="statistics of 4 classes"):
        _run(THREE_CLASSES, 4)


def test_the_control_the_class_sums_the_request_names_are_decrypted() -> None:
    stats = _run(THREE_CLASSES, 3)
    assert isinstance(stats, m.PublicStats)
    assert len(stats.class_counts) == 3 and sum(stats.class_counts) == 60
    assert len(stats.class_means) == 3 * D
    plain = _run(TWO_CLASSES, 0)
    assert isinstance(plain, m.PublicStats) and plain.class_counts == ()


FILLED = m.TrainingSpec(model="linear", rounds=1, impute=True)


def test_sums_over_non_empty_cells_only_when_the_request_fills_them_in() -> None:
    with pytest.raises(ProtocolError, match="laid out for another request"):
        _run(TWO_CLASSES, 0, impute=True)
    with pytest.raises(ProtocolError, match="empty cells the request does not fill in"):
        _run(FILLED, 0, impute=False)  # the owner with empty cells refuses plain sums
    stats = _run(FILLED, 0, impute=True)  # the control
    assert isinstance(stats, m.PublicStats) and len(stats.impute_means) == D
