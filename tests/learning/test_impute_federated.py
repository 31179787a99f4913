"""Federated mean imputation: per-owner sums give what scikit-learn gives on the union."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from deltaml.errors import DeltaMLValueError
from deltaml.learning.standardize import (
    impute_with,
    imputed_stats_from_sums,
    local_sums_missing,
)


def _owners_with_gaps(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = []
    for rows in (40, 25, 61):
        x = rng.normal(3.0, 2.0, size=(rows, 4))
        x[rng.random(x.shape) < 0.1] = np.nan
        parts.append(x)
    return parts


def test_federated_means_and_scales_equal_sklearn_on_the_union() -> None:
    parts = _owners_with_gaps(7)
    total = sum(local_sums_missing(p) for p in parts)
    mu, stats = imputed_stats_from_sums(total, 4)
    union = np.vstack(parts)
    imputer = SimpleImputer(strategy="mean").fit(union)
    np.testing.assert_allclose(mu, imputer.statistics_, rtol=1e-12)
    filled = np.vstack([impute_with(p, mu) for p in parts])
    assert not np.isnan(filled).any()
    scaler = StandardScaler().fit(imputer.transform(union))
    np.testing.assert_allclose(stats.means, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(stats.scales, scaler.scale_, rtol=1e-9)
    assert stats.count == len(union)


def test_a_column_with_no_value_anywhere_is_refused_by_index() -> None:
    parts = _owners_with_gaps(8)
    for p in parts:
        p[:, 2] = np.nan
    total = sum(local_sums_missing(p) for p in parts)
    with pytest.raises(DeltaMLValueError, match=r"column\(s\) 2 have no value"):
        imputed_stats_from_sums(total, 4)
