"""A trained model as the buyer downloads it, usable like a scikit-learn estimator.

The model file is JSON: the model type, the feature and target names and the
coefficients in the data's own units::

    {"format": "deltaml-model/1", "model": "linear", "features": [...],
     "target": "y", "coef": [...], "intercept": 152.1, "rounds": 12}

>>> model = TrainedModel.load("model.json")       # doctest: +SKIP
>>> model.predict(X)                               # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deltaml.errors import DeltaMLValueError

FORMAT = "deltaml-model/1"


@dataclass(frozen=True)
class TrainedModel:
    """``predict`` (values, or classes 0/1), ``predict_proba`` and ``decision_function``."""

    model: str
    features: tuple[str, ...]
    target: str
    coef: np.ndarray
    intercept: float
    rounds: int = 0

    def decision_function(self, X: Any) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise DeltaMLValueError(
                f"expected rows of {len(self.features)} features "
                f"({', '.join(self.features)}), got shape {x.shape}"
            )
        return np.asarray(x @ self.coef + self.intercept)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if self.model == "logistic":
            return (scores > 0).astype(np.float64)
        return scores

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.model != "logistic":
            raise DeltaMLValueError("predict_proba is for classification (logistic) models")
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "features": list(self.features),
            "target": self.target,
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "rounds": self.rounds,
        }

    @classmethod
    def from_json(cls, data: Any) -> TrainedModel:
        try:
            if data.get("format") != FORMAT:
                raise DeltaMLValueError(f"not a {FORMAT} model file")
            features: Sequence[str] = data["features"]
            coef = np.array(data["coef"], dtype=np.float64)
            if len(coef) != len(features):
                raise DeltaMLValueError("a model file needs one coefficient per feature")
            return cls(
                str(data["model"]),
                tuple(str(f) for f in features),
                str(data["target"]),
                coef,
                float(data["intercept"]),
                int(data.get("rounds", 0)),
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
        target = Path(path)
        target.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return target
