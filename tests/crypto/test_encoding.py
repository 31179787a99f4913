"""Fixed-point encoding: exact, correctly rounded, ties to even, at any exponent."""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deltaml.crypto import PlainMatrix, decode_int, encode_float, rescale
from deltaml.crypto.encoding import decode_array, encode_array
from deltaml.errors import DeltaMLValueError

FAST = settings(max_examples=300, deadline=None)
finite = st.floats(allow_nan=False, allow_infinity=False)
exponents = st.integers(-1100, 1100)


def exact_round(x: Fraction) -> int:
    """Reference: ``round`` on a Fraction rounds half to even, exactly."""
    return round(x)


@FAST
@given(finite, exponents)
def test_encode_is_the_exactly_rounded_product(x: float, e: int) -> None:
    assert encode_float(x, e) == exact_round(Fraction(x) * Fraction(2) ** e)


@FAST
@given(finite, exponents)
def test_decode_of_encode_is_within_half_a_unit(x: float, e: int) -> None:
    v = encode_float(x, e)
    assume(abs(Fraction(v) / Fraction(2) ** e) <= Fraction(sys.float_info.max))
    y = decode_int(v, e)
    assert abs(Fraction(x) - Fraction(y)) <= Fraction(2) ** -(e + 1)


@FAST
@given(st.integers(-(2**600), 2**600), exponents)
def test_decode_is_the_nearest_float(v: int, e: int) -> None:
    exact = Fraction(v) / Fraction(2) ** e
    assume(abs(exact) <= Fraction(sys.float_info.max))
    assert decode_int(v, e) == float(exact)  # Fraction -> float rounds correctly


@pytest.mark.parametrize(
    ("x", "e", "expected"),
    [
        (0.5, 0, 0),
        (1.5, 0, 2),
        (2.5, 0, 2),
        (3.5, 0, 4),
        (-0.5, 0, 0),
        (-1.5, 0, -2),
        (-2.5, 0, -2),
        (0.25, 1, 0),
        (0.75, 1, 2),
        (-0.75, 1, -2),
        (6.0, -2, 2),  # 1.5 -> 2
        (10.0, -2, 2),  # 2.5 -> 2
        (0.49999999999999994, 0, 0),
    ],
)
def test_ties_go_to_even(x: float, e: int, expected: int) -> None:
    assert encode_float(x, e) == expected


def test_huge_and_tiny_exponents() -> None:
    assert encode_float(1.0, 5000) == 1 << 5000
    assert encode_float(-3.0, 5000) == -3 << 5000
    assert encode_float(5e-324, 1074) == 1  # smallest subnormal, exactly
    assert encode_float(5e-324, 1073) == 0  # exactly one half: ties to even
    assert encode_float(3 * 5e-324, 1074) == 3
    assert encode_float(sys.float_info.max, 0) == int(sys.float_info.max)
    assert encode_float(sys.float_info.max, -1024) == 1  # 0.99999… rounds up
    assert encode_float(sys.float_info.max, -1100) == 0
    assert encode_float(1e-300, 2000) == round(Fraction(1e-300) * 2**2000)
    assert decode_int(1 << 5000, 5000) == 1.0
    assert decode_int(1, 1074) == 5e-324
    assert decode_int(1, 1080) == 0.0  # below the smallest subnormal
    assert decode_int(3, -1000) == 3 * 2.0**1000


def test_negative_numbers_are_symmetric() -> None:
    for x in (0.1, 1 / 3, 12345.678, 2.5, 1e-20):
        for e in (0, 10, 53, 200):
            assert encode_float(-x, e) == -encode_float(x, e)


@pytest.mark.parametrize("x", [math.inf, -math.inf, math.nan])
def test_non_finite_is_refused(x: float) -> None:
    with pytest.raises(DeltaMLValueError):
        encode_float(x, 10)
    with pytest.raises(DeltaMLValueError):
        encode_array([1.0, x], 10)


@FAST
@given(st.integers(-(2**300), 2**300), st.integers(-200, 200), st.integers(-200, 200))
def test_rescale_rounds_exactly(v: int, source: int, target: int) -> None:
    expected = exact_round(Fraction(v) * Fraction(2) ** (target - source))
    assert rescale(v, source, target) == expected


@FAST
@given(st.integers(-(2**300), 2**300), st.integers(-50, 50), st.integers(0, 300))
def test_rescale_up_is_exact_and_reversible(v: int, e: int, up: int) -> None:
    assert rescale(v, e, e + up) == v << up
    assert rescale(rescale(v, e, e + up), e + up, e) == v


def test_rescale_ties_go_to_even() -> None:
    assert rescale(0b101, 1, 0) == 2  # 2.5
    assert rescale(0b111, 1, 0) == 4  # 3.5
    assert rescale(-0b101, 1, 0) == -2
    assert rescale(0b1010, 2, 0) == 2  # 2.5


def test_arrays_round_trip() -> None:
    x = np.array([0.1, -2.75, 1e6, -1e-9, 0.0])
    ints = encode_array(x, 40)
    assert ints == [encode_float(v, 40) for v in x]
    np.testing.assert_allclose(decode_array(ints, 40), x, atol=2.0**-41, rtol=0)


def test_plain_matrix() -> None:
    a = np.array([[0.5, -1.25], [0.0, 3.0]])
    m = PlainMatrix.encode(a, 8)
    assert m.entries == ((128, -320), (0, 768))
    assert m.shape == (2, 2)
    assert m.max_abs_row_sum() == 768
    np.testing.assert_array_equal(m.decode(), a)
    assert PlainMatrix.from_ints([[1, -2]], 3).entries == ((1, -2),)
    with pytest.raises(DeltaMLValueError):
        PlainMatrix.encode(np.array([1.0, 2.0]), 8)
    with pytest.raises(DeltaMLValueError):
        PlainMatrix.encode(np.array([[1.0, math.nan]]), 8)
