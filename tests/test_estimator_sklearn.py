"""The buyer's model in a data scientist's hands: scikit-learn and ONNX.

The models here come out of the encrypted protocol (a short in-process run with
small keys), so what is checked is the deliverable itself.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from deltaml.errors import DeltaMLValueError
from deltaml.estimator import TrainedModel
from deltaml.learning.data import load_dataset
from deltaml.simulation import SimulationConfig, run_simulation


@cache
def _trained(dataset: str) -> TrainedModel:
    config = SimulationConfig(
        dataset=dataset,
        rounds=4,
        eval_every=4,
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        verify=False,
        contributions=False,
    )
    return run_simulation(config).trained_model()


def _frame(dataset: str) -> tuple[pd.DataFrame, np.ndarray]:
    ds = load_dataset(dataset)
    y = ds.y if ds.classes is None else np.asarray(ds.classes, dtype=object)[ds.y.astype(int)]
    return pd.DataFrame(ds.X, columns=list(ds.feature_names)), y


@pytest.mark.parametrize(
    ("dataset", "kind"), [("diabetes", LinearRegression), ("breast_cancer", LogisticRegression)]
)
def test_to_sklearn_is_a_fitted_estimator_that_predicts_what_the_model_does(
    dataset: str, kind: type
) -> None:
    model = _trained(dataset)
    X, y = _frame(dataset)
    est: Any = model.to_sklearn()
    assert type(est) is kind
    check_is_fitted(est)
    assert est.n_features_in_ == X.shape[1]
    assert list(est.feature_names_in_) == list(X.columns) == list(model.features)
    if kind is LinearRegression:
        assert is_regressor(est)
        np.testing.assert_allclose(est.coef_, model.coef, rtol=0, atol=0)
        np.testing.assert_allclose(est.predict(X), model.predict(X), rtol=1e-9, atol=1e-9)
    else:
        assert is_classifier(est)
        # the original labels, in scikit-learn's (sorted) order
        assert list(est.classes_) == ["benign", "malignant"] == sorted(model.classes or ())
        assert est.coef_.shape == (1, X.shape[1]) and est.intercept_.shape == (1,)
        assert set(model.predict(X)) == {"benign", "malignant"}
        assert (est.predict(X) == model.predict(X)).all()
        proba = dict(zip(est.classes_, est.predict_proba(X).T, strict=True))
        ours = dict(zip(model.classes or (), model.predict_proba(X).T, strict=True))
        for label in est.classes_:
            np.testing.assert_allclose(proba[label], ours[label], rtol=1e-9, atol=1e-9)
        # the score of the label the model scores, whichever order scikit-learn keeps
        sign = 1.0 if est.classes_[1] == (model.classes or ())[1] else -1.0
        np.testing.assert_allclose(
            sign * est.decision_function(X), model.decision_function(X), rtol=1e-9, atol=1e-9
        )
    # It goes wherever scikit-learn takes an estimator.
    assert clone(est).get_params() == est.get_params()
    pipe = Pipeline([("model", est)])
    assert (pipe.predict(X) == est.predict(X)).all()
    refit = Pipeline([("scale", StandardScaler()), ("model", clone(est))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence or feature-name warning
        scores = cross_val_score(refit, X, y, cv=3)
        direct = cross_val_score(est, X, y, cv=3)  # the exported estimator itself
        importance = permutation_importance(est, X, y, n_repeats=2, random_state=0)
    assert np.all(np.isfinite(scores)) and scores.mean() > 0.4
    assert np.all(np.isfinite(direct)) and direct.mean() > 0.4
    assert importance.importances_mean.shape == (X.shape[1],)


@pytest.mark.parametrize("dataset", ["diabetes", "breast_cancer"])
def test_a_frame_with_reordered_columns_never_gives_other_numbers(dataset: str) -> None:
    model = _trained(dataset)
    X, _ = _frame(dataset)
    shuffled = X[list(reversed(X.columns))]
    # Our model reads a frame by column name: the same numbers.
    np.testing.assert_array_equal(model.decision_function(shuffled), model.decision_function(X))
    # scikit-learn's check, on the exported estimator: refused, as for its own.
    with pytest.raises(ValueError, match="feature names"):
        model.to_sklearn().predict(shuffled)
    with pytest.raises(DeltaMLValueError, match=repr(X.columns[0])):
        model.predict(X.drop(columns=[X.columns[0]]))


def test_the_class_labels_survive_the_model_file(tmp_path: Path) -> None:
    model = _trained("breast_cancer")
    assert model.classes == ("malignant", "benign")
    again = TrainedModel.load(model.save(tmp_path / "model.json"))
    assert again.classes == model.classes
    X, _ = _frame("breast_cancer")
    assert (again.predict(X) == model.predict(X)).all()
    # numeric labels come back as numbers, as a data scientist's y holds them
    zero_one = TrainedModel("logistic", ("a", "b"), "y", np.array([1.0, -1.0]), 0.0)
    assert zero_one.predict(np.array([[2.0, 0.0], [0.0, 2.0]])).tolist() == [1, 0]
    assert zero_one.to_sklearn().classes_.tolist() == [0, 1]


@pytest.mark.parametrize("dataset", ["diabetes", "breast_cancer"])
def test_onnx_export_predicts_what_the_model_does_in_onnxruntime(
    dataset: str, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")  # in the dev extra: runs in CI
    model = _trained(dataset)
    X, _ = _frame(dataset)
    path = model.save(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path))
    outputs = session.run(None, {"X": X.to_numpy(dtype=np.float64)})
    if model.model == "linear":
        np.testing.assert_allclose(outputs[0].ravel(), model.predict(X), rtol=1e-5, atol=1e-5)
    else:
        labels, proba = outputs
        assert (labels == model.predict(X)).all()
        est = model.to_sklearn()
        np.testing.assert_allclose(proba, est.predict_proba(X), rtol=1e-5, atol=1e-5)


def test_a_table_model_checks_its_table_and_a_plain_model_has_nothing_to_encode() -> None:
    table = {
        "features": ["age", "smoker"],
        "missing": ["age"],
        "categorical": {"smoker": ["no", "yes"]},
    }
    encoded = ("age", "age__missing", "smoker=yes")
    model = TrainedModel("linear", encoded, "y", [1.0, 2.0, 3.0], 0.5, table=table)
    rows = pd.DataFrame({"smoker": ["yes", "no", "maybe"], "age": [40.0, None, 30.0]})
    # age 40 → 40; empty → 0 and its indicator; "maybe" is not a named level: the first
    np.testing.assert_allclose(model.predict(rows), [40 + 3 + 0.5, 2 + 0.5, 30 + 0.5])
    with pytest.raises(DeltaMLValueError, match="not its table's encoded columns"):
        TrainedModel("linear", ("age", "smoker=yes"), "y", [1.0, 2.0], 0.5, table=table)
    plain = TrainedModel("linear", ("a",), "y", [1.0], 0.0)
    with pytest.raises(DeltaMLValueError, match="not trained on a mixed table"):
        plain.encode(rows)
