"""A multinomial target, one-vs-rest: one two-class protocol run per class (iris).

Measured (seed 0, 3 owners, 1024-bit test keys): accuracy 0.833 against 0.967 for
scikit-learn's multinomial LogisticRegression on the same rows — outside the issue's
0.03 target. The protocol's logistic loss is its second-order Taylor expansion at
w = 0, i.e. least squares on the class indicator, and least squares one-vs-rest masks
iris's middle class: scikit-learn's own least-squares one-vs-rest (RidgeClassifier)
scores 0.833 too. The test pins that equivalence and the export, not the target.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, SimulationResult, run_simulation


@cache
def _iris() -> SimulationResult:
    config = SimulationConfig(
        dataset="iris",
        owners=3,
        rounds=6,
        eval_every=6,
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
    )
    return run_simulation(config)


def test_iris_trains_one_vs_rest_as_well_as_least_squares_one_vs_rest() -> None:
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    result = _iris()
    assert result.classes == ("setosa", "versicolor", "virginica")
    assert len(result.per_class) == 3 and all(r.verified for r in result.per_class)
    assert result.coefficients.shape == (3, 4)
    t = result.test
    assert t["test_auc[setosa]"] == 1.0
    train, test = train_test_split(load_dataset("iris"), 0.2, 0)
    shares = split_owners(train, 3, seed=0)
    ids = ["owner-1", "owner-2", "owner-3"]
    rows = [shares[ids.index(oid)] for oid in result.trainers]
    x, y = np.concatenate([s.X for s in rows]), np.concatenate([s.y for s in rows])
    ridge = make_pipeline(StandardScaler(), RidgeClassifier(alpha=1e-6)).fit(x, y)
    assert abs(t["test_accuracy"] - ridge.score(test.X, test.y)) <= 0.034  # one test row
    assert t["sklearn_test_accuracy"] - t["test_accuracy"] < 0.2


def test_the_one_vs_rest_model_in_scikit_learn_and_onnx() -> None:
    model = _iris().trained_model()
    ds = load_dataset("iris")
    X = pd.DataFrame(ds.X, columns=list(ds.feature_names))
    est = model.to_sklearn()
    assert list(est.classes_) == ["setosa", "versicolor", "virginica"]
    assert list(est.feature_names_in_) == list(ds.feature_names) and est.n_features_in_ == 4
    assert (est.predict(X) == model.predict(X)).all()
    np.testing.assert_allclose(est.predict_proba(X), model.predict_proba(X), atol=1e-9)
    with pytest.raises(ValueError, match="feature names"):
        est.predict(X[list(reversed(X.columns))])
    again = type(model).from_json(model.to_json())
    np.testing.assert_array_equal(again.decision_function(X), model.decision_function(X))
    ort = pytest.importorskip("onnxruntime")
    labels, proba = ort.InferenceSession(model.to_onnx_bytes()).run(None, {"X": ds.X})
    assert (labels == model.predict(X)).all()
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-5)
