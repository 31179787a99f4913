"""Federated standardization: global means and scales from encrypted per-owner sums.

Each owner encrypts ``[n, Σx_1..Σx_d, Σx_1²..Σx_d², Σy, Σy²]`` (the target sums
only for regression); the aggregator adds the vectors without reading them and
the buyer decrypts only the total, from which it publishes
``μ_j = Σx_j / N`` and ``σ_j = sqrt(Σx_j²/N − μ_j²)``. Nobody sees one owner's sums.
"""

from __future__ import annotations

import numpy as np

from deltaml.errors import DeltaMLValueError
from deltaml.learning.models import Standardization


def local_sums(x: np.ndarray, y: np.ndarray, include_target: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    parts = [np.array([float(len(x))]), x.sum(axis=0), (x * x).sum(axis=0)]
    if include_target:
        parts.append(np.array([y.sum(), (y * y).sum()]))
    return np.concatenate(parts)


def sums_length(n_features: int, include_target: bool) -> int:
    return 1 + 2 * n_features + (2 if include_target else 0)


def stats_from_sums(sums: np.ndarray, n_features: int, include_target: bool) -> Standardization:
    """Turn the decrypted total into published statistics; refuses constant columns."""
    sums = np.asarray(sums, dtype=np.float64)
    if len(sums) != sums_length(n_features, include_target):
        raise DeltaMLValueError("the statistics vector has the wrong length")
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
