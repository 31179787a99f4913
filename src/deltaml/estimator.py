"""A trained model as the buyer downloads it, and its way into scikit-learn and ONNX.

The model file is JSON: the model type, the feature and target names, the
coefficients in the data's own units and, for a logistic model, the class
labels (``classes[1]`` is the class the model's score is for)::

    {"format": "deltaml-model/1", "model": "logistic", "features": [...],
     "target": "y", "classes": ["malignant", "benign"], "coef": [...],
     "intercept": 0.3, "rounds": 12}

>>> model = TrainedModel.load("model.json")       # doctest: +SKIP
>>> model.predict(df)                              # doctest: +SKIP
>>> est = model.to_sklearn()                       # a fitted LinearRegression / LogisticRegression
>>> model.to_onnx("model.onnx")                    # doctest: +SKIP  (pip install deltaml[onnx])

A logistic model of K > 2 classes is multinomial: ``coef`` is a K × d matrix and
``intercept`` a vector of K, row k the score of ``classes[k]``; it predicts the class of
the highest score, with the softmax of the K scores as probabilities, as scikit-learn's
multinomial ``LogisticRegression`` does (the scores come from linear discriminant
analysis: :mod:`deltaml.learning.lda`).

A :class:`pandas.DataFrame` (or anything with ``columns``) is read by column name,
so a frame whose columns come in another order gives the same predictions; a
missing column is an error naming it. The estimator :meth:`TrainedModel.to_sklearn`
returns is scikit-learn's own, with ``feature_names_in_`` set: scikit-learn then
refuses a frame whose columns are missing or reordered, as for any estimator it
fitted itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deltaml.errors import DeltaMLValueError

if TYPE_CHECKING:
    from sklearn.linear_model import LinearRegression, LogisticRegression

FORMAT = "deltaml-model/1"
MODEL_TYPES = ("linear", "logistic")
#: Class labels of a logistic model file without any (files written before they were kept).
DEFAULT_CLASSES = ("0", "1")


def class_values(classes: Sequence[str]) -> np.ndarray:
    """The labels as a data scientist's ``y`` holds them: numbers when every label is
    one (``"0"``/``"1"`` give ``array([0, 1])``), the texts otherwise."""
    try:
        numbers = [float(c) for c in classes]
    except ValueError:
        return np.array(list(classes), dtype=object)
    if all(math.isfinite(v) and v.is_integer() for v in numbers):
        return np.array([int(v) for v in numbers])
    return np.array(numbers, dtype=np.float64)


@dataclass(frozen=True)
class TrainedModel:
    """A linear or logistic model in the data's own units.

    ``predict`` gives values (linear) or class labels (logistic, the original
    labels of ``classes``); ``predict_proba`` the probabilities of
    ``classes[0]`` and ``classes[1]``; ``decision_function`` the score of
    ``classes[1]``.
    """

    model: str
    features: tuple[str, ...]
    target: str
    coef: np.ndarray
    #: A number; for a one-vs-rest model, one per class.
    intercept: Any
    rounds: int = 0
    #: Logistic only: ``(negative, positive)`` labels, or the K labels of a one-vs-rest
    #: model; ``None`` for a linear model.
    classes: tuple[str, ...] | None = None
    #: A mixed table's request: ``{"features": [raw columns], "missing": [...],
    #: "categorical": {column: [levels]}}``; ``features`` are then its encoded columns,
    #: and raw rows are encoded as the owners encoded theirs (:meth:`encode`).
    table: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_TYPES:
            raise DeltaMLValueError(f"model must be one of {MODEL_TYPES}, got {self.model!r}")
        classes = self.classes
        if self.model == "logistic":
            classes = tuple(str(c) for c in (classes or DEFAULT_CLASSES))
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise DeltaMLValueError("a logistic model needs distinct class labels")
        elif classes is not None:
            raise DeltaMLValueError("class labels only apply to a logistic model")
        d = len(self.features)
        if classes is not None and len(classes) > 2:
            coef = np.array(self.coef, dtype=np.float64)
            intercept: Any = np.array(self.intercept, dtype=np.float64).reshape(-1)
            if coef.shape != (len(classes), d) or intercept.shape != (len(classes),):
                raise DeltaMLValueError(
                    "a one-vs-rest model needs a row of coefficients and an intercept per class"
                )
            intercept.setflags(write=False)
        else:
            coef = np.array(self.coef, dtype=np.float64).reshape(-1)
            intercept = float(self.intercept)
            if len(coef) != d:
                raise DeltaMLValueError("a model needs one coefficient per feature")
        coef.setflags(write=False)
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        object.__setattr__(self, "intercept", intercept)
        object.__setattr__(self, "classes", classes)
        if self.table is not None:
            table: dict[str, Any] = {
                "features": [str(f) for f in self.table["features"]],
                "missing": [str(f) for f in self.table.get("missing") or ()],
                "categorical": {
                    str(k): [str(v) for v in levels]
                    for k, levels in dict(self.table.get("categorical") or {}).items()
                },
            }
            if self.table.get("missing_indicator", True) is False:
                # empty cells filled with the owners' federated means, one per column
                table["missing_indicator"] = False
                table["impute_means"] = [float(v) for v in self.table.get("impute_means") or ()]
                if len(table["impute_means"]) != len(self.features):
                    raise DeltaMLValueError("the model's table needs one mean per feature")
            if tuple(self._table_spec(table).feature_names) != self.features:
                raise DeltaMLValueError("the model's features are not its table's encoded columns")
            object.__setattr__(self, "table", table)

    def _table_spec(self, table: Mapping[str, Any]) -> Any:
        from deltaml.learning.tabular import TableSpec

        return TableSpec.from_requirements({"target": self.target, **table})

    def encode(self, X: Any) -> Any:
        """Raw rows of a mixed table (a :class:`pandas.DataFrame` with the request's raw
        columns) as the model's encoded columns, a frame for ``to_sklearn().predict``:
        an empty cell where the request allows it becomes 0 and its indicator 1 (or, with
        ``missing_indicator: false``, the column's federated mean), a categorical column
        its 0/1 columns, an unknown level the first (as at the owners)."""
        if self.table is None:
            raise DeltaMLValueError(
                "this model was not trained on a mixed table: nothing to encode"
            )
        from deltaml.learning.tabular import encode_features

        frame = encode_features(X, self._table_spec(self.table))
        means = self.table.get("impute_means")
        return frame.fillna(dict(zip(self.features, means, strict=True))) if means else frame

    @property
    def multiclass(self) -> bool:
        """More than two classes: a multinomial (softmax) model."""
        return self.classes is not None and len(self.classes) > 2

    # -- prediction -----------------------------------------------------------------
    def _matrix(self, X: Any) -> np.ndarray:
        """``X`` as a float matrix in the order of ``features`` (a frame by column name)."""
        columns = getattr(X, "columns", None)
        raw = columns is not None and not set(self.features) <= {str(c) for c in columns}
        if raw and self.table is not None:
            X, columns = self.encode(X), None  # raw rows of the table
        if columns is not None:
            names = [str(c) for c in columns]
            missing = [f for f in self.features if f not in names]
            if missing:
                raise DeltaMLValueError(
                    f"the data has no column(s) {', '.join(map(repr, missing))}; "
                    f"the model needs {', '.join(self.features)}"
                )
            X = X[list(self.features)]
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise DeltaMLValueError(
                f"expected rows of {len(self.features)} features "
                f"({', '.join(self.features)}), got shape {x.shape}"
            )
        return x

    def decision_function(self, X: Any) -> np.ndarray:
        """``X · coef + intercept``: the prediction (linear) or the log-odds of ``classes[1]``;
        one column per class for a multinomial model."""
        return np.asarray(self._matrix(X) @ self.coef.T + self.intercept)

    @property
    def classes_(self) -> np.ndarray:
        """The class labels in the model's order (``classes_[1]`` is the scored class)."""
        if self.classes is None:
            raise DeltaMLValueError("a linear model has no classes")
        return class_values(self.classes)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if self.multiclass:
            return self.classes_[np.argmax(scores, axis=1)]
        if self.model == "logistic":
            return self.classes_[(scores > 0).astype(np.intp)]
        return scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of ``classes[0]`` and ``classes[1]`` (one row per row of ``X``)."""
        if self.model != "logistic":
            raise DeltaMLValueError("predict_proba is for classification (logistic) models")
        scores = self.decision_function(X)
        if self.multiclass:  # the softmax, without overflow warnings
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))
        p = np.exp(-np.logaddexp(0.0, -scores))  # the sigmoid, without overflow warnings
        return np.column_stack([1.0 - p, p])

    # -- scikit-learn and ONNX ---------------------------------------------------------
    def to_sklearn(self) -> LinearRegression | LogisticRegression:
        """The model as a fitted scikit-learn estimator.

        A :class:`~sklearn.linear_model.LinearRegression` or a two-class
        :class:`~sklearn.linear_model.LogisticRegression` with ``coef_``,
        ``intercept_``, ``n_features_in_`` and ``feature_names_in_`` (the
        request's feature names) set; a logistic one has the original labels in
        ``classes_``, sorted as scikit-learn sorts them (the coefficients change
        sign when that swaps the two). It predicts what :meth:`predict` does and
        works wherever scikit-learn takes an estimator: ``clone``, ``Pipeline``,
        ``cross_val_score`` (which fits copies of it on the data it is given).

        A multinomial model becomes a ``LogisticRegression`` of ``K`` classes (rows of
        ``coef_`` in the order scikit-learn sorts the labels), which predicts and gives
        softmax probabilities as :meth:`predict` and :meth:`predict_proba` do.
        """
        from sklearn.linear_model import LinearRegression, LogisticRegression

        names = np.array(self.features, dtype=object)
        estimator: LinearRegression | LogisticRegression
        if self.model == "linear":
            estimator = LinearRegression()
            estimator.coef_ = self.coef.copy()
            estimator.intercept_ = np.float64(self.intercept)
            estimator.rank_ = len(self.features)
            estimator.singular_ = np.ones(len(self.features))
        elif self.multiclass:
            labels = self.classes_
            order = np.argsort(labels, kind="stable")
            estimator = LogisticRegression(max_iter=5000)
            estimator.classes_ = labels[order]
            estimator.coef_ = self.coef[order].copy()
            estimator.intercept_ = np.asarray(self.intercept, dtype=np.float64)[order].copy()
            estimator.n_iter_ = np.array([self.rounds], dtype=np.int32)
        else:
            labels = self.classes_
            order = np.argsort(labels, kind="stable")
            sign = -1.0 if order[0] == 1 else 1.0
            estimator = LogisticRegression(max_iter=5000)
            estimator.classes_ = labels[order]
            estimator.coef_ = sign * self.coef.reshape(1, -1).copy()
            estimator.intercept_ = np.array([sign * self.intercept])
            estimator.n_iter_ = np.array([self.rounds], dtype=np.int32)
        estimator.n_features_in_ = len(self.features)
        estimator.feature_names_in_ = names
        return estimator

    def to_onnx(self, path: str | Path | None = None) -> Any:
        """The model as an ONNX graph (input ``X``: double rows of ``features``, in order).

        Outputs: ``variable`` (the prediction) for a linear model; ``label`` and
        ``probabilities`` for a logistic one. Written to ``path`` when given; the
        ``onnx.ModelProto`` is returned either way. Needs the ``onnx`` extra
        (``pip install 'deltaml[onnx]'``: skl2onnx).
        """
        try:
            from skl2onnx import to_onnx
            from skl2onnx.common.data_types import DoubleTensorType
        except ImportError:
            raise DeltaMLValueError(
                "ONNX export needs skl2onnx: pip install 'deltaml[onnx]'"
            ) from None
        estimator = self.to_sklearn()
        options: dict[Any, Any] = {}
        if self.model == "logistic":
            labels = estimator.classes_
            if labels.dtype == object:
                estimator.classes_ = labels.astype(str)
            options = {id(estimator): {"zipmap": False}}
        onnx_model = to_onnx(
            estimator,
            initial_types=[("X", DoubleTensorType([None, len(self.features)]))],
            options=options,
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
        onnx_model.doc_string = f"deltaml {self.model} model of {self.target!r}"
        if path is not None:
            Path(path).write_bytes(onnx_model.SerializeToString())
        return onnx_model

    def to_onnx_bytes(self) -> bytes:
        """The serialized ONNX model (see :meth:`to_onnx`)."""
        return bytes(self.to_onnx().SerializeToString())

    # -- the file -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "model": self.model,
            "features": list(self.features),
            "target": self.target,
        }
        if self.classes is not None:
            out["classes"] = list(self.classes)
        out.update(
            coef=self.coef.tolist(),
            intercept=self.intercept.tolist() if self.multiclass else float(self.intercept),
            rounds=self.rounds,
        )
        if self.table is not None:
            out["table"] = dict(self.table)
        return out

    @classmethod
    def from_json(cls, data: Any) -> TrainedModel:
        try:
            if data.get("format") != FORMAT:
                raise DeltaMLValueError(f"not a {FORMAT} model file")
            features: Sequence[str] = data["features"]
            coef = np.array(data["coef"], dtype=np.float64)
            if coef.shape[-1:] != (len(features),):
                raise DeltaMLValueError("a model file needs one coefficient per feature")
            classes = data.get("classes")
            intercept = data["intercept"]
            return cls(
                str(data["model"]),
                tuple(str(f) for f in features),
                str(data["target"]),
                coef,
                [float(v) for v in intercept] if coef.ndim == 2 else float(intercept),
                int(data.get("rounds", 0)),
                None if classes is None else tuple(str(c) for c in classes),
                data.get("table"),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise DeltaMLValueError(f"malformed model file: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise DeltaMLValueError(f"cannot read model file {path}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write the model: ONNX when ``path`` ends in ``.onnx``, the JSON file otherwise."""
        target = Path(path)
        if target.suffix.lower() == ".onnx":
            self.to_onnx(target)
            return target
        target.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return target
