"""Fixed-point encoding: a real ``x`` at exponent ``e`` is the integer ``round(x · 2^e)``.

Encoding is exact for every finite float (no intermediate overflow, correct
rounding at any exponent) and decoding is a correctly rounded integer division,
so the only error is the one rounding at encoding time: ``|x − decode(encode(x))| ≤ 2^-(e+1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from deltaml.errors import DeltaMLValueError


def encode_float(x: float, exponent: int) -> int:
    """``round(x · 2^exponent)`` computed exactly (ties to even)."""
    if not math.isfinite(x):
        raise DeltaMLValueError("cannot encode a non-finite number")
    if x == 0:
        return 0
    mantissa, exp2 = math.frexp(x)  # x = mantissa · 2^exp2, 0.5 <= |mantissa| < 1
    m = int(mantissa * (1 << 53))  # exact: 53-bit integer
    shift = exp2 - 53 + exponent
    if shift >= 0:
        return m << shift
    return _round_shift(m, -shift)


def _round_shift(value: int, shift: int) -> int:
    """``round(value / 2^shift)`` with ties to even, exactly, for integers."""
    if shift <= 0:
        return value << -shift
    q, r = divmod(value, 1 << shift)
    half = 1 << (shift - 1)
    if r > half or (r == half and q & 1):
        q += 1
    return q


def rescale(value: int, from_exponent: int, to_exponent: int) -> int:
    """Re-express an encoded integer at another exponent (rounding when going down)."""
    return _round_shift(value, from_exponent - to_exponent)


def decode_int(value: int, exponent: int) -> float:
    """The float nearest to ``value / 2^exponent``."""
    if exponent >= 0:
        return value / (1 << exponent)
    return float(value << -exponent)


def encode_array(values: Iterable[float], exponent: int) -> list[int]:
    return [encode_float(float(v), exponent) for v in values]


def decode_array(values: Sequence[int], exponent: int) -> np.ndarray:
    return np.array([decode_int(v, exponent) for v in values], dtype=np.float64)


@dataclass(frozen=True)
class PlainMatrix:
    """A plaintext matrix encoded at a fixed-point ``exponent``, ready to act on ciphertexts.

    ``entries[i][j] = round(A[i, j] · 2^exponent)`` (signed Python ints).
    """

    entries: tuple[tuple[int, ...], ...]
    exponent: int

    @classmethod
    def encode(cls, matrix: np.ndarray, exponent: int) -> PlainMatrix:
        a = np.asarray(matrix, dtype=np.float64)
        if a.ndim != 2:
            raise DeltaMLValueError(f"expected a 2-d matrix, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise DeltaMLValueError("matrix has non-finite entries")
        rows = tuple(tuple(encode_float(float(v), exponent) for v in row) for row in a)
        return cls(rows, exponent)

    @classmethod
    def from_ints(cls, rows: Sequence[Sequence[int]], exponent: int = 0) -> PlainMatrix:
        return cls(tuple(tuple(int(v) for v in row) for row in rows), exponent)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.entries), len(self.entries[0]) if self.entries else 0)

    def max_abs_row_sum(self) -> int:
        """``max_i Σ_j |a_ij|``: multiplies a vector's bound (infinity norm)."""
        return max((sum(abs(v) for v in row) for row in self.entries), default=0)

    def decode(self) -> np.ndarray:
        return np.array([[decode_int(v, self.exponent) for v in row] for row in self.entries])
