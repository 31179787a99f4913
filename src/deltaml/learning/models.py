r"""Model types: objectives whose gradient is linear in the weights.

Every model type here has a *quadratic* training objective over the standardized
design ``a = [(x − μ)/σ, 1]`` (features centred and scaled with global
statistics, then an intercept column):

.. math:: f(w) = \frac{1}{N} \sum_{rows} \ell(a^\top w, y) + \frac{λ}{2}\lVert w_{1..d}\rVert^2
         = \tfrac12 w^\top H w − g^\top w + c ,

so a party holding rows can reduce them to the plaintext ``(H_i, g_i, c_i)``
once, and the encrypted protocol only ever multiplies ciphertexts by small
plaintext matrices. The intercept is not penalized.

- :class:`LinearRegression`: ``ℓ = ½ (aᵀw − ỹ)²`` with the standardized target
  ``ỹ = (y − μ_y)/σ_y``.
- :class:`LogisticRegression`: the second-order Taylor expansion of the logistic
  loss at ``aᵀw = 0`` (Hardy et al. 2017; the thesis's proposal), with
  ``y± = 2y − 1 ∈ {−1, 1}``: ``ℓ = log 2 − ½ y± aᵀw + ⅛ (aᵀw)²``
  ``= ⅛ (aᵀw − 2y±)² + log 2 − ½``. Its gradient is linear in ``w``.

Both are least squares against a transformed target, up to a weight and a
constant; :meth:`ModelType.residual_target` and :attr:`ModelType.loss_weight`
say which, and the metric protocol uses the same pair.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from deltaml.errors import DeltaMLValueError


@dataclass(frozen=True)
class Standardization:
    """Global statistics, published by the buyer after the federated sums.

    ``target_mean``/``target_scale`` are 0/1 for classification.
    """

    count: int
    means: np.ndarray
    scales: np.ndarray
    target_mean: float = 0.0
    target_scale: float = 1.0
    #: More than two classes: each class's row count, and its mean of the
    #: standardized features (``classes × d``); see :mod:`deltaml.learning.lda`.
    class_counts: np.ndarray | None = None
    class_means: np.ndarray | None = None
    #: Empty cells imputed: each column's mean over the non-empty cells of all owners.
    impute_means: np.ndarray | None = None

    def design(self, x: np.ndarray) -> np.ndarray:
        """``[(x − μ)/σ, 1]``: standardized features and an intercept column."""
        x = np.asarray(x, dtype=np.float64)
        return np.hstack([(x - self.means) / self.scales, np.ones((x.shape[0], 1))])

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "count": self.count,
            "means": [float(v) for v in self.means],
            "scales": [float(v) for v in self.scales],
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
        }
        if self.class_counts is not None and self.class_means is not None:
            out["class_counts"] = [int(v) for v in self.class_counts]
            out["class_means"] = [[float(v) for v in row] for row in self.class_means]
        if self.impute_means is not None:
            out["impute_means"] = [float(v) for v in self.impute_means]
        return out

    @classmethod
    def published(
        cls,
        count: int,
        means: Sequence[float],
        scales: Sequence[float],
        target_mean: float,
        target_scale: float,
        class_counts: Sequence[int] = (),
        class_means: Sequence[float] = (),
        impute_means: Sequence[float] = (),
    ) -> Standardization:
        """The statistics as a ``PublicStats`` message or record carries them (class
        means flattened row by row; both empty for two classes or regression)."""
        return cls(
            int(count),
            np.array(means, dtype=np.float64),
            np.array(scales, dtype=np.float64),
            float(target_mean),
            float(target_scale),
            np.array(class_counts, dtype=np.float64) if class_counts else None,
            (
                np.array(class_means, dtype=np.float64).reshape(len(class_counts), -1)
                if class_counts
                else None
            ),
            np.array(impute_means, dtype=np.float64) if impute_means else None,
        )

    def extra_fields(self) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
        """The class counts, the flattened class means and the imputation means, as
        messages carry them (empty when absent)."""
        counts: tuple[int, ...] = ()
        means: tuple[float, ...] = ()
        if self.class_counts is not None and self.class_means is not None:
            counts = tuple(int(v) for v in self.class_counts)
            means = tuple(float(v) for v in self.class_means.ravel())
        impute = () if self.impute_means is None else tuple(float(v) for v in self.impute_means)
        return counts, means, impute

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardization:
        counts, means = data.get("class_counts"), data.get("class_means")
        impute = data.get("impute_means")
        return cls(
            int(data["count"]),
            np.array(data["means"], dtype=np.float64),
            np.array(data["scales"], dtype=np.float64),
            float(data["target_mean"]),
            float(data["target_scale"]),
            None if counts is None else np.array(counts, dtype=np.float64),
            None if means is None else np.array(means, dtype=np.float64),
            None if impute is None else np.array(impute, dtype=np.float64),
        )


@dataclass(frozen=True)
class QuadraticTerms:
    """``f_i(w) = ½ wᵀ H w − gᵀ w + c`` for one party's rows (already divided by ``N``)."""

    hessian: np.ndarray
    linear: np.ndarray
    constant: float

    def __add__(self, other: QuadraticTerms) -> QuadraticTerms:
        return QuadraticTerms(
            self.hessian + other.hessian, self.linear + other.linear, self.constant + other.constant
        )

    def value(self, w: np.ndarray) -> float:
        return float(0.5 * w @ self.hessian @ w - self.linear @ w + self.constant)

    def minimizer(self) -> np.ndarray:
        return np.linalg.solve(self.hessian, self.linear)


class ModelType(ABC):
    """One kind of model: what a party computes from its rows, and how to predict."""

    name: ClassVar[str]
    task: ClassVar[str]
    #: Name of the per-round validation metric (lower is better).
    metric_name: ClassVar[str]
    #: ``ℓ = loss_weight · (aᵀw − residual_target(y))² + loss_offset``.
    loss_weight: ClassVar[float]
    loss_offset: ClassVar[float]

    def __init__(self, l2: float | None = None) -> None:
        l2 = self.default_l2 if l2 is None else float(l2)
        if not (math.isfinite(l2) and l2 >= 0):
            raise DeltaMLValueError(f"l2 must be a non-negative number, got {l2!r}")
        self.l2 = l2

    default_l2: ClassVar[float] = 0.0

    @abstractmethod
    def residual_target(self, y: np.ndarray, stats: Standardization) -> np.ndarray:
        """The target the squared residual is taken against."""

    @abstractmethod
    def check_target(self, y: np.ndarray) -> None:
        """Refuse targets this model cannot fit (raise DeltaMLValueError)."""

    def local_terms(self, x: np.ndarray, y: np.ndarray, stats: Standardization) -> QuadraticTerms:
        """Reduce one party's rows to ``(H_i, g_i, c_i)``; summed over parties gives ``f``.

        The ridge term is shared in proportion to rows (``λ·n_i/N``), so the sum is exact.
        """
        a = stats.design(x)
        r = self.residual_target(np.asarray(y, dtype=np.float64), stats)
        n_total = stats.count
        two_w = 2.0 * self.loss_weight
        hessian = two_w * (a.T @ a) / n_total
        ridge = np.full(a.shape[1], self.l2 * len(a) / n_total)
        ridge[-1] = 0.0
        hessian = hessian + np.diag(ridge)
        linear = two_w * (a.T @ r) / n_total
        constant = (self.loss_weight * float(r @ r) + self.loss_offset * len(a)) / n_total
        return QuadraticTerms(hessian, linear, constant)

    def finish(self, solution: np.ndarray, stats: Standardization) -> np.ndarray:
        """The weights the buyer keeps from the exact solve's solution (itself, but for a
        model of several classes, which writes its intercepts in)."""
        return solution

    @abstractmethod
    def metric_from_sse(self, sse: float, rows: int, stats: Standardization) -> float:
        """Turn a sum of squared transformed residuals into the published metric."""

    @abstractmethod
    def decision_function(self, x: np.ndarray, w: np.ndarray, stats: Standardization) -> np.ndarray:
        """Raw-unit predictions (regression) or log-odds (classification)."""


class LinearRegression(ModelType):
    name = "linear"
    task = "regression"
    metric_name = "mse"
    loss_weight = 0.5
    loss_offset = 0.0

    def residual_target(self, y: np.ndarray, stats: Standardization) -> np.ndarray:
        return (y - stats.target_mean) / stats.target_scale

    def check_target(self, y: np.ndarray) -> None:
        if not np.all(np.isfinite(y)):
            raise DeltaMLValueError("the target has non-finite values")

    def metric_from_sse(self, sse: float, rows: int, stats: Standardization) -> float:
        """MSE in the target's own units."""
        return sse * stats.target_scale**2 / rows

    def decision_function(self, x: np.ndarray, w: np.ndarray, stats: Standardization) -> np.ndarray:
        return np.asarray(stats.design(x) @ w * stats.target_scale + stats.target_mean)


class LogisticRegression(ModelType):
    name = "logistic"
    task = "classification"
    metric_name = "taylor_loss"
    loss_weight = 0.125
    loss_offset = math.log(2.0) - 0.5
    default_l2 = 0.003

    def residual_target(self, y: np.ndarray, stats: Standardization) -> np.ndarray:
        return 2.0 * (2.0 * y - 1.0)

    def check_target(self, y: np.ndarray) -> None:
        if not np.all((y == 0) | (y == 1)):
            raise DeltaMLValueError("logistic regression needs a 0/1 target")

    def metric_from_sse(self, sse: float, rows: int, stats: Standardization) -> float:
        """Mean Taylor-approximated logistic loss."""
        return self.loss_weight * sse / rows + self.loss_offset

    def decision_function(self, x: np.ndarray, w: np.ndarray, stats: Standardization) -> np.ndarray:
        return np.asarray(stats.design(x) @ w)


MODEL_TYPES: dict[str, type[ModelType]] = {
    cls.name: cls for cls in (LinearRegression, LogisticRegression)
}


def model_type(name: str, l2: float | None = None, classes: int = 0) -> ModelType:
    """Look a model type up by name (``"linear"``, ``"logistic"``); a logistic model of
    ``classes`` ≥ 3 classes is the multinomial one (:class:`deltaml.learning.lda.Multinomial`)."""
    if name == "logistic" and classes >= 3:
        from deltaml.learning.lda import Multinomial  # lda builds on this module

        return Multinomial(classes, l2)
    try:
        return MODEL_TYPES[name](l2)
    except KeyError:
        raise DeltaMLValueError(
            f"unknown model type {name!r}; choose one of {', '.join(MODEL_TYPES)}"
        ) from None


def raw_coefficients(w: np.ndarray, stats: Standardization) -> tuple[np.ndarray, float]:
    """Coefficients and intercept in the data's own units (``ŷ = x·coef + intercept``)."""
    coef = w[:-1] / stats.scales * stats.target_scale
    intercept = float(w[-1] * stats.target_scale + stats.target_mean - coef @ stats.means)
    return coef, intercept
