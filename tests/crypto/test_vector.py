"""Encrypted vectors: homomorphic identities, precision budgets, refresh."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaml.crypto import (
    MASK_STATISTICAL_BITS,
    EncryptedVector,
    PlainMatrix,
    PrivateKey,
    PublicKey,
    encode_float,
    mask_for_refresh,
    needs_refresh,
    refresh_masked,
    rescale,
)
from deltaml.crypto import vector as vector_module
from deltaml.crypto.vector import refresh_mask_bits
from deltaml.errors import (
    DeltaMLTypeError,
    DeltaMLValueError,
    KeyMismatchError,
    PrecisionBudgetError,
)

FAST = settings(max_examples=30, deadline=None)
Keys = tuple[PublicKey, PrivateKey]

values = st.integers(-(2**120), 2**120)
vectors = st.lists(values, min_size=1, max_size=5)
small_k = st.integers(-(2**64), 2**64)


def enc(pk: PublicKey, ints: list[int], exponent: int = 0) -> EncryptedVector:
    return EncryptedVector.encrypt_ints(pk, ints, exponent)


# -- homomorphic identities -----------------------------------------------------------------
@FAST
@given(st.data())
def test_add_and_subtract(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    a = data.draw(vectors)
    b = data.draw(st.lists(values, min_size=len(a), max_size=len(a)))
    ea, eb = enc(pk, a), enc(pk, b)
    total, diff = ea + eb, ea - eb
    assert total.decrypt_ints(sk) == [x + y for x, y in zip(a, b, strict=True)]
    assert diff.decrypt_ints(sk) == [x - y for x, y in zip(a, b, strict=True)]
    assert (-ea).decrypt_ints(sk) == [-x for x in a]
    assert total.bound >= max(abs(x + y) for x, y in zip(a, b, strict=True))


@FAST
@given(st.data())
def test_mul_int(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    a = data.draw(vectors)
    k = data.draw(st.one_of(st.sampled_from([0, 1, -1]), small_k))
    out = enc(pk, a, 7).mul_int(k)
    assert out.decrypt_ints(sk) == [k * x for x in a]
    assert out.exponent == 7
    assert out.bound == max(abs(x) for x in a) * abs(k)


@st.composite
def matvec_cases(draw: st.DrawFn) -> tuple[list[list[int]], list[int], int]:
    rows = draw(st.integers(1, 5))
    cols = draw(st.integers(1, 5))
    bits = draw(st.integers(1, 60))
    entry = st.one_of(st.just(0), st.integers(-(2**bits), 2**bits))
    matrix = draw(
        st.lists(st.lists(entry, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
    )
    v = draw(st.lists(values, min_size=cols, max_size=cols))
    return matrix, v, bits


@FAST
@given(st.data())
def test_matvec_is_exact_on_integers(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    matrix, v, bits = data.draw(matvec_cases())
    a = PlainMatrix.from_ints(matrix, exponent=bits)
    out = enc(pk, v, 3).matvec(a)
    expected = [sum(x * y for x, y in zip(row, v, strict=True)) for row in matrix]
    assert out.decrypt_ints(sk) == expected
    assert out.exponent == 3 + bits
    assert out.bound >= max(abs(x) for x in expected)
    assert len(out) == len(matrix)


def test_matvec_with_zero_rows_and_columns(keys512: Keys) -> None:
    pk, sk = keys512
    v = [5, -7, 11]
    matrix = [[0, 0, 0], [1, 0, -2], [0, 0, 3], [-(2**59), 0, 0]]
    out = enc(pk, v).matvec(PlainMatrix.from_ints(matrix))
    assert out.decrypt_ints(sk) == [0, 5 - 22, 33, -(2**59) * 5]
    with pytest.raises(DeltaMLValueError):
        enc(pk, v).matvec(PlainMatrix.from_ints([[1, 2]]))


def test_matvec_on_reals(keys512: Keys) -> None:
    pk, sk = keys512
    rng = np.random.default_rng(3)
    a, x = rng.normal(size=(4, 6)), rng.normal(size=6)
    out = EncryptedVector.encrypt(pk, x, 40).matvec(PlainMatrix.encode(a, 40))
    assert out.exponent == 80
    np.testing.assert_allclose(out.decrypt(sk), a @ x, atol=1e-10, rtol=0)


@FAST
@given(st.data())
def test_add_ints_and_add_plain(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    a = data.draw(vectors)
    b = data.draw(st.lists(values, min_size=len(a), max_size=len(a)))
    assert enc(pk, a).add_ints(b).decrypt_ints(sk) == [x + y for x, y in zip(a, b, strict=True)]
    reals = data.draw(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=len(a), max_size=len(a))
    )
    out = enc(pk, a, 30).add_plain(reals)
    expected = [x + encode_float(y, 30) for x, y in zip(a, reals, strict=True)]
    assert out.decrypt_ints(sk) == expected
    with pytest.raises(DeltaMLValueError):
        enc(pk, a).add_ints([*b, 1])


def test_concat_split_align(keys512: Keys) -> None:
    pk, sk = keys512
    a, b, c = enc(pk, [1, -2], 5), enc(pk, [3], 8), enc(pk, [-4, 5, 6], 8)
    joined = EncryptedVector.concat([a, b, c])
    assert joined.exponent == 8
    assert joined.decrypt_ints(sk) == [8, -16, 3, -4, 5, 6]
    assert joined.bound >= 16
    parts = joined.split([2, 0, 4])
    assert [p.decrypt_ints(sk) for p in parts] == [[8, -16], [], [3, -4, 5, 6]]
    aligned = a.align(12)
    assert (aligned.exponent, aligned.bound) == (12, 2 << 7)
    assert aligned.decrypt_ints(sk) == [1 << 7, -2 << 7]
    assert a.align(5) is a
    with pytest.raises(DeltaMLValueError):
        a.align(4)
    for sizes in ([2, 3], [6, 1], [7, -1], [-1, 7]):
        with pytest.raises(DeltaMLValueError):
            joined.split(sizes)
    with pytest.raises(DeltaMLValueError):
        EncryptedVector.concat([])


def test_add_aligns_exponents(keys512: Keys) -> None:
    pk, sk = keys512
    x = EncryptedVector.encrypt(pk, [0.5, -1.25], 10)
    y = EncryptedVector.encrypt(pk, [0.25, 2.0], 20)
    out = x + y
    assert out.exponent == 20
    np.testing.assert_array_equal(out.decrypt(sk), [0.75, 0.75])
    np.testing.assert_array_equal((y + x).decrypt(sk), [0.75, 0.75])


def test_sum_works(keys512: Keys) -> None:
    pk, sk = keys512
    parts = [enc(pk, [i, -i, 2 * i]) for i in range(1, 6)]
    assert sum(parts).decrypt_ints(sk) == [15, -15, 30]  # type: ignore[union-attr]
    assert sum(parts[:1]).decrypt_ints(sk) == [1, -1, 2]  # type: ignore[union-attr]


def test_mixing_keys_raises(keys512: Keys, keys768: Keys) -> None:
    (pk, sk), (pk2, sk2) = keys512, keys768
    a, b = enc(pk, [1, 2]), enc(pk2, [1, 2])
    with pytest.raises(KeyMismatchError):
        a + b
    with pytest.raises(KeyMismatchError):
        b - a
    with pytest.raises(KeyMismatchError):
        sum([a, b])
    with pytest.raises(KeyMismatchError):
        EncryptedVector.concat([a, b])
    with pytest.raises(KeyMismatchError):
        a.decrypt_ints(sk2)
    assert a.decrypt_ints(sk) == b.decrypt_ints(sk2) == [1, 2]


def test_type_and_length_errors(keys512: Keys) -> None:
    pk, _ = keys512
    with pytest.raises(DeltaMLTypeError):
        EncryptedVector("key", [], 0, 0)  # type: ignore[arg-type]
    with pytest.raises(DeltaMLValueError):
        EncryptedVector(pk, [], 0, -1)
    with pytest.raises(DeltaMLValueError):
        enc(pk, [1, 2]) + enc(pk, [1])
    with pytest.raises(TypeError):
        enc(pk, [1]) + 1  # type: ignore[operator]


# -- precision budget: refuse before computing -------------------------------------------------
class Poison:
    """A stand-in ciphertext: any arithmetic on it fails the test."""

    def _boom(self, *args: object) -> object:
        raise AssertionError("a ciphertext was touched before the budget was checked")

    __mul__ = __rmul__ = __pow__ = __rpow__ = __mod__ = __int__ = __index__ = _boom


def poisoned(pk: PublicKey, size: int, exponent: int, bound: int) -> EncryptedVector:
    return EncryptedVector(pk, [Poison() for _ in range(size)], exponent, bound)  # type: ignore[misc]


def test_every_operation_refuses_before_computing(
    keys512: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk, _ = keys512
    half = pk.max_int // 2 + 1  # two of these exceed the budget
    big = poisoned(pk, 2, 10, half)
    small = poisoned(pk, 2, 9, 1)
    monkeypatch.setattr(vector_module, "multi_exp", lambda *a: pytest.fail("multi_exp called"))
    monkeypatch.setattr(PublicKey, "raw_encrypt", lambda *a: pytest.fail("raw_encrypt called"))
    refusals = {
        "add": lambda: big + big,
        "sub": lambda: big - poisoned(pk, 2, 10, half),
        "add, other aligned first": lambda: small + poisoned(pk, 2, 10, pk.max_int - 1),
        "mul_int": lambda: big.mul_int(2),
        "mul_int negative": lambda: big.mul_int(-2),
        "matvec": lambda: big.matvec(PlainMatrix.from_ints([[1, 1], [0, 1]])),
        "matvec, large entry": lambda: poisoned(pk, 1, 0, 2**300).matvec(
            PlainMatrix.from_ints([[2**300]])
        ),
        "align": lambda: big.align(11),
        "concat": lambda: EncryptedVector.concat([small, big, poisoned(pk, 1, 11, 1)]),
        "add_ints": lambda: big.add_ints([0, half]),
        "add_plain": lambda: poisoned(pk, 1, 0, 1).add_plain([2.0 ** pk.max_int.bit_length()]),
        "encrypt_ints": lambda: EncryptedVector.encrypt_ints(pk, [0, pk.max_int], 0),
        "encrypt": lambda: EncryptedVector.encrypt(pk, [1e200], 0),
        "encrypt, exponent": lambda: EncryptedVector.encrypt(pk, [1.0], 600),
        "mask_for_refresh": lambda: mask_for_refresh(poisoned(pk, 1, 40, half >> 40), 0),
        "construct": lambda: poisoned(pk, 1, 0, pk.max_int),
    }
    for name, operation in refusals.items():
        with pytest.raises(PrecisionBudgetError):
            operation()
        print("refused:", name)


def test_the_budget_is_usable_up_to_its_edge(keys512: Keys) -> None:
    pk, sk = keys512
    edge = pk.max_int - 1
    v = enc(pk, [edge, -edge, 0])
    assert v.decrypt_ints(sk) == [edge, -edge, 0]
    assert (-v).decrypt_ints(sk) == [-edge, edge, 0]
    half = (pk.max_int - 1) // 2
    w = enc(pk, [half, -half])
    assert (w + w).decrypt_ints(sk) == [2 * half, -2 * half]
    assert w.mul_int(-2).decrypt_ints(sk) == [-2 * half, 2 * half]
    assert w.matvec(PlainMatrix.from_ints([[1, -1]])).decrypt_ints(sk) == [2 * half]
    assert enc(pk, [half], 3).align(4).decrypt_ints(sk) == [2 * half]
    assert w.add_ints([half, -half]).decrypt_ints(sk) == [2 * half, -2 * half]


@FAST
@given(st.data())
def test_results_are_exact_or_refused(keys512: Keys, data: st.DataObject) -> None:
    """Near the budget every operation either decrypts exactly or refuses."""
    pk, sk = keys512
    top = pk.max_int.bit_length()
    x = data.draw(st.integers(2 ** (top - 20), pk.max_int - 1))
    y = data.draw(st.integers(2 ** (top - 20), pk.max_int - 1))
    k = data.draw(st.integers(-(2**20), 2**20))
    vx, vy = enc(pk, [x, -x]), enc(pk, [y, y])
    cases = [
        (lambda: vx + vy, [x + y, y - x]),
        (lambda: vx - vy, [x - y, -x - y]),
        (lambda: vx.mul_int(k), [k * x, -k * x]),
        (lambda: vx.matvec(PlainMatrix.from_ints([[k, 0], [1, -1]])), [k * x, 2 * x]),
        (lambda: vx.add_ints([y, y]), [x + y, y - x]),
        (lambda: vx.align(1), [2 * x, -2 * x]),
    ]
    for operation, expected in cases:
        try:
            out = operation()
        except PrecisionBudgetError:
            assert max(abs(e) for e in expected) >= pk.max_int  # refused only past the budget
            continue
        assert out.decrypt_ints(sk) == expected
        assert out.bound < pk.max_int


def test_a_lied_bound_can_overflow_silently(keys512: Keys) -> None:
    """Documents the limit of the defence: the bound is the only guard.

    A vector built from raw ciphertexts with a bound that is a lie escapes the
    checks; the product then wraps modulo ``n``. Decryption catches a value in
    the overflow band (``2·max_int``) but not one that wraps back into the
    valid range (``3·max_int ≡ −(n mod 3)``): that is why every bound is derived
    by the holder itself and never taken from another party.
    """
    pk, sk = keys512
    liar = EncryptedVector(pk, [pk.raw_encrypt(pk.max_int)], 0, bound=1)
    with pytest.raises(PrecisionBudgetError):
        liar.mul_int(2).decrypt_ints(sk)
    wrapped = liar.mul_int(3).decrypt_ints(sk)
    assert wrapped == [-(pk.n - 3 * pk.max_int)] != [3 * pk.max_int]


# -- refresh ---------------------------------------------------------------------------------------
def refresh(
    vector: EncryptedVector, sk: PrivateKey, base: int
) -> tuple[EncryptedVector, EncryptedVector, list[int]]:
    masked, mask = mask_for_refresh(vector, base)  # holder
    fresh = refresh_masked(masked, sk, base)  # key holder
    return fresh.unmask(mask, vector.bound, vector.exponent), masked, mask  # holder


@FAST
@given(st.data())
def test_refresh_round_trip(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    base = data.draw(st.integers(0, 40))
    shift = data.draw(st.integers(0, 120))
    ints = data.draw(st.lists(st.integers(-(2**200), 2**200), min_size=1, max_size=6))
    v = enc(pk, ints, base + shift)
    out, _, _ = refresh(v, sk, base)
    assert out.exponent == base
    assert out.bound == rescale(v.bound, v.exponent, base) + 1
    got = out.decrypt_ints(sk)
    for g, x in zip(got, ints, strict=True):
        assert abs(g - rescale(x, base + shift, base)) <= 1
        assert abs(g) <= out.bound


def test_refresh_hides_the_value_from_the_key_holder(keys512: Keys) -> None:
    pk, sk = keys512
    base, shift = 20, 60
    ints = [2**150 + 12345, -(2**149), 0, 7, -1, 2**150, 3, -(2**100)]
    v = enc(pk, ints, base + shift)
    masked, mask = mask_for_refresh(v, base)
    bits = refresh_mask_bits(v, base)
    value_bits = rescale(v.bound, v.exponent, base).bit_length()
    assert bits >= value_bits + MASK_STATISTICAL_BITS
    seen = masked.decrypt_ints(sk)  # what the key holder decrypts
    offsets = [s - x for s, x in zip(seen, ints, strict=True)]
    for u, m in zip(offsets, mask, strict=True):
        assert 0 <= u < 2 ** (bits + shift)  # one mask over every bit, low ones included
        assert u >> shift == m  # the holder removes its high part after the refresh
    # uniform masks: all eight below 2^(bits+shift−10), or all eight with their low 20
    # bits zero, each has probability below 2^-80
    assert max(u.bit_length() for u in offsets) >= bits + shift - 10
    assert any(u % 2**20 for u in offsets)
    assert min(s.bit_length() for s in seen) > value_bits + shift + 40  # 2^-40 per value
    # the masked vector is re-randomized, not the deterministic sum
    plain_sum = v.add_ints(offsets)
    assert all(a != b for a, b in zip(masked.ciphertexts, plain_sum.ciphertexts, strict=True))


def test_refresh_is_an_unbiased_stochastic_rounding(keys512: Keys) -> None:
    """``v / 2^s`` refreshed is its floor, plus one with probability ``frac(v / 2^s)``."""
    pk, sk = keys512
    base, shift = 10, 8
    v = enc(pk, [3 * 2**shift + 64, -(5 * 2**shift) - 192], base + shift)  # +3.25 and −5.75
    ups = [0, 0]
    trials = 400
    for _ in range(trials):
        out, _, _ = refresh(v, sk, base)
        got = out.decrypt_ints(sk)
        assert got[0] in (3, 4) and got[1] in (-6, -5)
        ups[0] += got[0] == 4
        ups[1] += got[1] == -5
    # expected 100 and 100 (probability 1/4 each); 7 standard deviations of room
    assert abs(ups[0] - trials / 4) < 60 and abs(ups[1] - trials / 4) < 60


@FAST
@given(st.data())
def test_needs_refresh_triggers_while_a_refresh_is_still_possible(
    keys512: Keys, data: st.DataObject
) -> None:
    pk, _ = keys512
    top = pk.max_int.bit_length()
    bits = data.draw(st.integers(1, top - 2))
    growth = data.draw(st.integers(0, 200))
    shift = data.draw(st.integers(0, 60))
    v = enc(pk, [2**bits - 1, -(2**bits - 1)], 20 + shift)
    if needs_refresh(v, growth):
        return
    grown = v.mul_int(2**growth - 1) if growth else v  # grows the bound by `growth` bits
    masked, _ = mask_for_refresh(grown, 20)  # must not raise
    assert masked.bound < pk.max_int


def test_needs_refresh_fires_before_masking_becomes_impossible(keys512: Keys) -> None:
    pk, _ = keys512
    top = pk.max_int.bit_length()
    first = None
    for bits in range(top - 120, top - 1):
        v = enc(pk, [2**bits - 1], 30)
        if needs_refresh(v, 0):
            first = first or bits
            continue
        mask_for_refresh(v, 0)  # possible while no refresh is needed
    assert first is not None
    mask_for_refresh(enc(pk, [2**first - 1], 30), 0)  # still possible when it first fires
    with pytest.raises(PrecisionBudgetError):
        mask_for_refresh(enc(pk, [2 ** (top - 2)], 30), 0)


def test_long_chain_with_refreshes_tracks_the_float_reference(keys512: Keys) -> None:
    pk, sk = keys512
    base = 40
    rng = np.random.default_rng(7)
    a = rng.normal(size=(4, 4))
    a *= 0.95 / np.linalg.norm(a, 2)  # a contraction
    b = rng.normal(size=4)
    matrix = PlainMatrix.encode(a, base)
    a_used = matrix.decode()
    growth = matrix.max_abs_row_sum().bit_length()
    x_ref = rng.normal(size=4)
    x = EncryptedVector.encrypt(pk, x_ref, base)
    refreshes = 0
    for _ in range(100):
        if needs_refresh(x, growth):
            x, _, _ = refresh(x, sk, base)
            refreshes += 1
        x = x.matvec(matrix)
        x = x.add_plain(b)
        x_ref = a_used @ x_ref + b
        assert x.bound < pk.max_int
    assert refreshes >= 8  # about every 9 rounds at 512 bits
    np.testing.assert_allclose(x.decrypt(sk), x_ref, atol=1e-9, rtol=0)
