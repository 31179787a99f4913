"""Federated standardization: global means and scales from encrypted per-owner sums.

Each owner encrypts ``[n, Σx_1..Σx_d, Σx_1²..Σx_d², Σy, Σy²]`` (the target sums
only for regression; for more than two classes, each class's count and feature sums
after them: :mod:`deltaml.learning.lda`); the aggregator adds the vectors without
reading them and the buyer decrypts only the total, from which it publishes
``μ_j = Σx_j / N`` and ``σ_j = sqrt(Σx_j²/N − μ_j²)``. Nobody sees one owner's sums.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deltaml.errors import DeltaMLValueError
from deltaml.learning.lda import class_stats, raw_class_sums
from deltaml.learning.models import Standardization


def local_sums(
    x: np.ndarray, y: np.ndarray, include_target: bool, classes: int = 0, impute: bool = False
) -> np.ndarray:
    """One owner's statistics vector: ``[n, Σx, Σx²]`` (``impute``: over its non-empty
    cells, then each column's count of them), then ``[Σy, Σy²]`` for a regression and
    the class sums for more than two classes."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if impute:
        parts = [local_sums_missing(x)]
    else:
        parts = [np.array([float(len(x))]), x.sum(axis=0), (x * x).sum(axis=0)]
    if include_target:
        parts.append(np.array([y.sum(), (y * y).sum()]))
    if classes:
        parts.append(raw_class_sums(x, y, classes))
    return np.concatenate(parts)


def sums_length(
    n_features: int, include_target: bool, classes: int = 0, impute: bool = False
) -> int:
    features = 3 * n_features if impute else 2 * n_features
    return 1 + features + (2 if include_target else 0) + classes * (n_features + 1)


def stats_from_sums(
    sums: np.ndarray,
    n_features: int,
    include_target: bool,
    classes: int = 0,
    impute: bool = False,
) -> Standardization:
    """Turn the decrypted total into published statistics; refuses constant columns."""
    sums = np.asarray(sums, dtype=np.float64)
    if len(sums) != sums_length(n_features, include_target, classes, impute):
        raise DeltaMLValueError("the statistics vector has the wrong length")
    if classes:
        split = sums_length(n_features, include_target, 0, impute)
        stats = stats_from_sums(sums[:split], n_features, include_target, 0, impute)
        return class_stats(sums[split:], classes, stats)
    if impute:
        split = missing_sums_length(n_features)
        mu, filled = _imputed_sums(sums[:split], n_features)
        plain = stats_from_sums(np.concatenate([filled, sums[split:]]), n_features, include_target)
        return dataclasses.replace(plain, impute_means=mu)
    count = round(sums[0])
    if count < 2:
        raise DeltaMLValueError("too few rows to standardize")
    means = sums[1 : 1 + n_features] / count
    var = sums[1 + n_features : 1 + 2 * n_features] / count - means**2
    scales = np.sqrt(np.maximum(var, 0.0))
    tiny = scales <= 1e-12 * np.maximum(1.0, np.abs(means))
    if np.any(tiny):
        cols = ", ".join(str(i) for i in np.flatnonzero(tiny))
        raise DeltaMLValueError(f"feature column(s) {cols} are constant across all owners")
    if not include_target:
        return Standardization(count, means, scales)
    y_mean = sums[-2] / count
    y_var = sums[-1] / count - y_mean**2
    if y_var <= 1e-24 * max(1.0, y_mean**2):
        raise DeltaMLValueError("the target is constant across all owners")
    return Standardization(count, means, scales, float(y_mean), float(np.sqrt(y_var)))


# Missing values imputed with federated means (a request's ``missing_indicator: false``;
# ``local_sums(..., impute=True)``). Each owner encrypts, per feature column, the
# sums over its NON-missing cells and the count of those cells:
# ``[n, S1_1..S1_d, S2_1..S2_d, C_1..C_d]``. From the totals, μ_j = S1_j / C_j, and
# after every owner fills its gaps with μ_j the imputed column's totals are N·μ_j and
# S2_j + (N − C_j)·μ_j², so one encrypted round still standardizes the imputed data.


def local_sums_missing(x: np.ndarray) -> np.ndarray:
    """An owner's ``[n, S1, S2, C]`` over its non-missing cells (NaN marks a gap)."""
    x = np.asarray(x, dtype=np.float64)
    present = ~np.isnan(x)
    filled = np.where(present, x, 0.0)
    return np.concatenate(
        [
            np.array([float(len(x))]),
            filled.sum(axis=0),
            (filled * filled).sum(axis=0),
            present.sum(axis=0).astype(np.float64),
        ]
    )


def missing_sums_length(n_features: int) -> int:
    return 1 + 3 * n_features


def _checked_counts(total: np.ndarray, n_features: int) -> tuple[int, np.ndarray]:
    """The total rows N and the per-column counts C_j; refuses counts no honest owners give."""
    rows = total[0]
    counts = total[1 + 2 * n_features :]
    if rows != round(rows) or rows < 2:
        raise DeltaMLValueError("too few rows to standardize")
    bad = (counts != np.round(counts)) | (counts < 0) | (counts > rows)
    if np.any(bad):
        cols = ", ".join(str(i) for i in np.flatnonzero(bad))
        raise DeltaMLValueError(
            f"feature column(s) {cols}: the count of non-missing cells is not a whole "
            "number between 0 and the number of rows (an owner's sums are wrong)"
        )
    empty = counts < 1
    if np.any(empty):
        cols = ", ".join(str(i) for i in np.flatnonzero(empty))
        raise DeltaMLValueError(f"feature column(s) {cols} have no value at any owner")
    return round(rows), counts


def _imputed_sums(total: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The column means μ of the non-empty cells, and ``[N, Σx, Σx²]`` of the columns
    after every owner fills its empty cells with μ."""
    rows, counts = _checked_counts(total, n_features)
    s1 = total[1 : 1 + n_features]
    s2 = total[1 + n_features : 1 + 2 * n_features]
    mu = s1 / counts
    return mu, np.concatenate([[float(rows)], rows * mu, s2 + (rows - counts) * mu**2])


def imputed_stats_from_sums(
    sums: np.ndarray, n_features: int
) -> tuple[np.ndarray, Standardization]:
    """The public column means μ (to fill gaps) and the standardization of the imputed
    data (:func:`stats_from_sums` with ``impute``, no target)."""
    stats = stats_from_sums(sums, n_features, include_target=False, impute=True)
    assert stats.impute_means is not None
    return stats.impute_means, stats


def impute_with(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """An owner's features with each gap filled by the public column mean."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isnan(x), np.asarray(means, dtype=np.float64)[None, :], x)
