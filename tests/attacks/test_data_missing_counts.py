"""An owner lies about its count of non-missing cells to pull the public mean.

μ_j = S1_j / C_j: an owner that adds to its C_j (without adding values) shrinks every
owner's imputed value toward 0. Counts are only seen in the total, so the defence is on
the total: no column can have more non-missing cells than there are rows, and a count is
a whole number. (A lie that keeps the total within [0, N] is not detectable from the
totals; it is bounded by the owner's share of the rows.)
"""

from __future__ import annotations

import numpy as np
import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.learning.standardize import imputed_stats_from_sums, local_sums_missing


def _honest_parts() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    parts = []
    for rows in (30, 30):
        x = rng.normal(5.0, 1.0, size=(rows, 2))
        x[rng.random(x.shape) < 0.1] = np.nan
        parts.append(x)
    return parts


def test_a_count_larger_than_the_rows_is_refused() -> None:
    parts = _honest_parts()
    liar = local_sums_missing(parts[1])
    liar[1 + 2 * 2 + 0] += 1000.0  # column 0: 1000 extra "present" cells, no extra values
    total = local_sums_missing(parts[0]) + liar
    with pytest.raises(DeltaMLValueError, match=r"column\(s\) 0: the count of non-missing"):
        imputed_stats_from_sums(total, 2)


def test_a_fractional_count_is_refused() -> None:
    parts = _honest_parts()
    liar = local_sums_missing(parts[1])
    liar[1 + 2 * 2 + 1] -= 0.5
    total = local_sums_missing(parts[0]) + liar
    with pytest.raises(DeltaMLValueError, match=r"column\(s\) 1: the count of non-missing"):
        imputed_stats_from_sums(total, 2)
