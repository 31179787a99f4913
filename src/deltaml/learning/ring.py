"""Arithmetic over ℤₙ for the exact solve (:mod:`deltaml.learning.exact_solve`):
Gaussian elimination, the determinant, and rational reconstruction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from deltaml.errors import DeltaMLValueError

__all__ = ["det_mod", "rational_reconstruction", "solve_mod"]


def solve_mod(a: list[list[int]], b: list[int], n: int, columns: int = 1) -> list[int] | None:
    """Gaussian elimination over ℤₙ for ``columns`` right-hand sides (``b`` row-major,
    ``d × columns``; the solution likewise); ``None`` when no pivot is invertible."""
    d = len(a)
    m = [[*row, *b[i * columns : (i + 1) * columns]] for i, row in enumerate(a)]
    for col in range(d):
        pivot = next((r for r in range(col, d) if math.gcd(m[r][col], n) == 1), None)
        if pivot is None:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        inv = pow(m[col][col], -1, n)
        m[col] = [v * inv % n for v in m[col]]
        for r in range(d):
            if r != col and m[r][col]:
                f = m[r][col]
                m[r] = [(v - f * pv) % n for v, pv in zip(m[r], m[col], strict=True)]
    return [v for row in m for v in row[d:]]


def det_mod(a: Sequence[Sequence[int]], n: int) -> int:
    """``det(a) mod n`` by Gaussian elimination over ℤₙ (0 if no invertible pivot is
    found: for a uniform ``a`` mod an RSA modulus, only if it is singular)."""
    m = [[v % n for v in row] for row in a]
    d, det = len(m), 1
    for col in range(d):
        pivot = next((r for r in range(col, d) if math.gcd(m[r][col], n) == 1), None)
        if pivot is None:
            return 0
        if pivot != col:
            m[col], m[pivot] = m[pivot], m[col]
            det = -det
        det = det * m[col][col] % n
        inv = pow(m[col][col], -1, n)
        for r in range(col + 1, d):
            if m[r][col]:
                f = m[r][col] * inv % n
                m[r] = [(v - f * pv) % n for v, pv in zip(m[r], m[col], strict=True)]
    return det % n


def rational_reconstruction(value: int, n: int) -> Fraction:
    """The fraction ``a/b ≡ value (mod n)`` with ``|a|, b < √(n/2)`` (extended Euclid)."""
    bound = math.isqrt(n // 2)
    r0, r1, t0, t1 = n, value % n, 0, 1
    while r1 > bound:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
    if t1 == 0 or abs(t1) > bound or math.gcd(r1, abs(t1)) != 1:
        raise DeltaMLValueError("the exact solution cannot be reconstructed: key too small")
    return Fraction(r1, t1)
