"""More than two classes through one protocol run (issue 13): the class sums in the
statistics round, one exact solve of every class (learning/lda.py), the buyer's
intercepts; the model in scikit-learn and ONNX; what a run needs, refused in one line."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pandas as pd
import pytest

from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import messages as m
from deltaml.simulation import SimulationConfig, SimulationResult, run_simulation
from deltaml.transport.in_memory import RecordingTransport

CONFIG = SimulationConfig(
    dataset="iris",
    owners=4,
    key_bits=1024,
    allow_test_keys=True,
    chain=False,
    contributions=False,
    solver="exact",
    disclose_model=True,
)


@cache
def _iris() -> tuple[SimulationResult, RecordingTransport]:
    recorded: list[RecordingTransport] = []

    def wrap(inner: object) -> RecordingTransport:
        recorded.append(RecordingTransport(inner))  # type: ignore[arg-type]
        return recorded[0]

    return run_simulation(CONFIG, transport_wrapper=wrap), recorded[0]


def _trainer_rows() -> tuple[np.ndarray, np.ndarray]:
    result, _ = _iris()
    train, _ = train_test_split(load_dataset("iris", multiclass=True), 0.2, CONFIG.seed)
    shares = split_owners(train, CONFIG.owners, seed=CONFIG.seed)
    ids = [f"owner-{i + 1}" for i in range(CONFIG.owners)]
    rows = [shares[ids.index(oid)] for oid in result.trainers]
    return np.concatenate([s.X for s in rows]), np.concatenate([s.y for s in rows])


def test_one_run_fits_every_class_to_the_optimum_and_verifies() -> None:
    result, transport = _iris()
    assert result.classes == ("setosa", "versicolor", "virginica")
    assert result.coefficients.shape == (3, 4) and result.intercept.shape == (3,)
    assert result.verified is True
    assert result.verification is not None
    assert result.verification.passed["exact residual"] == 1  # H·W = G, every column
    assert result.objective_gap <= 1e-6
    # one run: each owner was asked for its statistics once, with the class sums
    for oid in [*result.trainers, *result.validators]:
        asked = [msg for msg in transport.received_by(oid) if isinstance(msg, m.StatsRequest)]
        assert [msg.classes for msg in asked] == [3]


def test_iris_accuracy_within_003_of_scikit_learn_with_per_class_and_macro_metrics() -> None:
    t = _iris()[0].test
    assert t["test_accuracy"] >= t["sklearn_test_accuracy"] - 0.03
    for name in ("test_auc", "test_macro_f1", "sklearn_test_auc", "sklearn_lda_test_accuracy"):
        assert 0.0 <= t[name] <= 1.0
    for label in ("setosa", "versicolor", "virginica"):
        for what in ("auc", "precision", "recall", "f1"):
            assert 0.0 <= t[f"test_{what}[{label}]"] <= 1.0
    macro = np.mean([t[f"test_f1[{label}]"] for label in _iris()[0].classes or ()])
    assert t["test_macro_f1"] == pytest.approx(macro)


def test_the_scores_are_scikit_learns_lda_up_to_the_class_means() -> None:
    """Same family as scikit-learn's LDA on the trainers' rows: the covariance is the
    trainers' pooled one, the class means and priors every owner's (as the statistics),
    so the two agree on the test rows' classes."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y = _trainer_rows()
    model = _iris()[0].trained_model()
    reference = LinearDiscriminantAnalysis().fit(x, y)
    ds = load_dataset("iris", multiclass=True)
    agree = np.mean(np.argmax(model.decision_function(ds.X), axis=1) == reference.predict(ds.X))
    assert agree >= 0.97


def test_the_model_in_scikit_learn_and_onnx() -> None:
    model = _iris()[0].trained_model()
    ds = load_dataset("iris", multiclass=True)
    X = pd.DataFrame(ds.X, columns=list(ds.feature_names))
    est = model.to_sklearn()
    assert list(est.classes_) == ["setosa", "versicolor", "virginica"]
    assert est.coef_.shape == (3, 4)
    assert list(est.feature_names_in_) == list(ds.feature_names) and est.n_features_in_ == 4
    assert (est.predict(X) == model.predict(X)).all()
    np.testing.assert_allclose(est.predict_proba(X), model.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(X[list(reversed(X.columns))])
    again = type(model).from_json(model.to_json())
    np.testing.assert_array_equal(again.decision_function(X), model.decision_function(X))
    ort = pytest.importorskip("onnxruntime")
    labels, proba = ort.InferenceSession(model.to_onnx_bytes()).run(None, {"X": ds.X})
    assert (labels == model.predict(X)).all()
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"solver": "admm", "contributions": False}, "one exact solve: use --solver exact"),
        ({"chain": True}, "--no-chain"),
    ],
)
def test_what_a_run_of_several_classes_needs_is_said_in_one_line(
    change: dict[str, object], words: str
) -> None:
    with pytest.raises(DeltaMLValueError, match=words):
        run_simulation(dataclasses.replace(CONFIG, **change))  # type: ignore[arg-type]


def test_an_owner_refuses_class_sums_of_a_target_outside_the_classes() -> None:
    from deltaml.crypto.paillier import generate_keypair, key_fingerprint
    from deltaml.roles import DataOwner

    public, _ = generate_keypair(1024, allow_test_keys=True)
    owner = DataOwner(
        "owner-1",
        np.ones((4, 2)),
        np.array([0, 1, 2, 3]),
        committed_key=key_fingerprint(public),
        allow_test_keys=True,
    )
    with pytest.raises(ProtocolError, match="not a class number 0 to 2"):
        owner.handle(m.StatsRequest(False, public, 40, ("0",) * 17, 3))
