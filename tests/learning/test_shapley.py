"""Exact Shapley values in closed form equal brute-force enumeration, at every size."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.learning.contributions import (
    coalition_values,
    shapley,
    shapley_exact,
    shapley_from_totals,
)


def _random_gram(m: int, seed: int) -> tuple[np.ndarray, float]:
    """A Gram matrix of ``[y₁ … y_m, y₀]`` (correlated columns, uneven scales) and ``B``."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(30, 1))
    y = base + rng.normal(size=(30, m + 1)) * rng.uniform(0.1, 3.0, size=m + 1)
    b = float(np.sum(y[:, -1] ** 2)) * rng.uniform(0.5, 2.0)
    return y.T @ y, b


def _enumerated_exactly(gram: np.ndarray, base: float) -> list[Fraction]:
    """Shapley values by enumeration in exact rational arithmetic (the float Gram as given)."""
    m = gram.shape[0] - 1
    g = [[Fraction(float(v)) for v in row] for row in gram]
    b = Fraction(base)

    def sse(s: tuple[int, ...]) -> Fraction:
        if not s:
            return b
        c = {i: Fraction(1, len(s)) for i in s}
        c[m] = Fraction(-1)
        return sum((c[i] * g[i][j] * c[j] for i in c for j in c), Fraction(0))

    phi = [Fraction(0)] * m
    for size in range(m):
        weight = Fraction(math.factorial(size) * math.factorial(m - size - 1), math.factorial(m))
        for s in itertools.combinations(range(m), size):
            before = sse(s)
            for k in range(m):
                if k not in s:
                    phi[k] += weight * (before - sse(tuple(sorted((*s, k)))))
    return phi


@pytest.mark.parametrize("m", range(1, 10))
def test_closed_form_equals_enumeration(m: int) -> None:
    for seed in range(3):
        gram, base = _random_gram(m, 100 * m + seed)
        phi = shapley(gram, base)
        brute = shapley_exact(coalition_values(gram, base), m)
        scale = float(np.max(np.abs(brute)))
        assert np.max(np.abs(phi - brute)) <= 1e-12 * scale


@pytest.mark.parametrize("m", [1, 2, 3, 5, 7])
def test_closed_form_equals_exact_rational_enumeration(m: int) -> None:
    gram, base = _random_gram(m, 7 + m)
    exact = _enumerated_exactly(gram, base)
    phi = shapley(gram, base)
    scale = max(abs(float(v)) for v in exact)
    assert max(abs(float(Fraction(float(p)) - e)) for p, e in zip(phi, exact, strict=True)) <= (
        1e-12 * scale
    )


def test_closed_form_is_efficient_and_symmetric_at_many_trainers() -> None:
    """300 trainers (far beyond enumeration): the values sum to v(N), twins earn the same."""
    m = 300
    rng = np.random.default_rng(5)
    y = rng.normal(size=(50, m + 1)) + rng.normal(size=(50, 1))
    y[:, 17] = y[:, 4]
    gram = y.T @ y
    base = 2.0 * float(y[:, -1] @ y[:, -1])
    phi = shapley(gram, base)
    everyone = coalition_values(gram, base)(frozenset(range(m)))
    assert abs(phi.sum() - everyone) <= 1e-10 * max(abs(everyone), float(np.abs(phi).max()))
    assert phi[4] == pytest.approx(phi[17], rel=1e-12)
    assert phi[4] != pytest.approx(phi[5], rel=1e-3)


def test_from_totals_matches_the_gram_path() -> None:
    """The 2m + 1 numbers ‖r_k‖², r_kᵀr_tot, ‖r_tot‖² give the same values as G."""
    m = 6
    rng = np.random.default_rng(8)
    y = rng.normal(size=(20, m + 1))
    r = y[:, :m] - y[:, [m]]
    total = r.sum(axis=1)
    base = 40.0
    phi = shapley_from_totals((r * r).sum(axis=0), r.T @ total, float(total @ total), base)
    np.testing.assert_allclose(phi, shapley(y.T @ y, base), rtol=1e-12, atol=0)


def test_shapley_rejects_a_malformed_gram() -> None:
    with pytest.raises(DeltaMLValueError):
        shapley(np.zeros((1, 1)), 1.0)
    with pytest.raises(DeltaMLValueError):
        shapley(np.zeros((3, 2)), 1.0)
    with pytest.raises(DeltaMLValueError):
        shapley_from_totals(np.zeros(2), np.zeros(3), 0.0, 1.0)
