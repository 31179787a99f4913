"""Straus multi-exponentiation against the naive product of ``pow`` calls."""

from __future__ import annotations

import random

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaml.crypto import PrivateKey, PublicKey
from deltaml.crypto.multiexp import _window_bits, multi_exp

FAST = settings(max_examples=60, deadline=None)


def naive(bases: list[int], rows: list[list[int]], modulus: int) -> list[int]:
    out = []
    for row in rows:
        acc = 1
        for b, e in zip(bases, row, strict=True):
            acc = acc * pow(b, e, modulus) % modulus  # pow inverts for e < 0
        out.append(acc)
    return out


def units(modulus: int, count: int, rng: random.Random) -> list[int]:
    out = []
    while len(out) < count:
        b = rng.randrange(2, modulus)
        if gmpy2.gcd(b, modulus) == 1:
            out.append(b)
    return out


@pytest.fixture(scope="module")
def modulus(keys512: tuple[PublicKey, PrivateKey]) -> int:
    return keys512[0].nsquare


@FAST
@given(
    st.integers(1, 4).flatmap(
        lambda n_bases: st.tuples(
            st.lists(
                st.lists(
                    st.one_of(st.just(0), st.integers(-(2**70), 2**70)),
                    min_size=n_bases,
                    max_size=n_bases,
                ),
                min_size=1,
                max_size=5,
            ),
            st.randoms(use_true_random=False),
        )
    )
)
def test_matches_naive_products(modulus: int, case: tuple[list[list[int]], random.Random]) -> None:
    rows, rng = case
    bases = units(modulus, len(rows[0]), rng)
    got = multi_exp([gmpy2.mpz(b) for b in bases], rows, gmpy2.mpz(modulus))
    assert [int(x) for x in got] == naive(bases, rows, modulus)


def test_the_row_counts_below_cross_every_window_size() -> None:
    assert [_window_bits(r) for r in (1, 23, 24, 255, 256, 300)] == [4, 4, 5, 5, 6, 6]


@pytest.mark.parametrize("n_rows", [1, 23, 24, 255, 256, 300])
def test_many_rows(modulus: int, n_rows: int) -> None:
    rng = random.Random(n_rows)
    bases = units(modulus, 3, rng)
    rows = [[rng.randrange(-(2**60), 2**60) for _ in bases] for _ in range(n_rows)]
    rows[0][1] = 0
    got = multi_exp([gmpy2.mpz(b) for b in bases], rows, gmpy2.mpz(modulus))
    assert [int(x) for x in got] == naive(bases, rows, modulus)


def test_zero_exponents(modulus: int) -> None:
    bases = [gmpy2.mpz(b) for b in units(modulus, 3, random.Random(1))]
    m = gmpy2.mpz(modulus)
    assert multi_exp(bases, [[0, 0, 0], [0, 0, 0]], m) == [1, 1]
    got = multi_exp(bases, [[0, 0, 0], [0, 5, 0], [0, 0, -1]], m)
    assert [int(x) for x in got] == [
        1,
        pow(int(bases[1]), 5, modulus),
        pow(int(bases[2]), -1, modulus),
    ]
    assert multi_exp(bases, [], m) == []


def test_small_and_large_exponents(modulus: int) -> None:
    rng = random.Random(2)
    bases = units(modulus, 2, rng)
    m = gmpy2.mpz(modulus)
    mp = [gmpy2.mpz(b) for b in bases]
    for rows in ([[1, -1]], [[1, 1], [-1, 0]], [[2**2000 + 12345, -(2**1999)]], [[3, 2**64]]):
        assert [int(x) for x in multi_exp(mp, rows, m)] == naive(bases, rows, modulus)


def test_refuses_ragged_rows(modulus: int) -> None:
    with pytest.raises(ValueError):
        multi_exp([gmpy2.mpz(2), gmpy2.mpz(3)], [[1, 2], [1]], gmpy2.mpz(modulus))
