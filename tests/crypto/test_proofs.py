"""Proofs of decryption and of re-randomization: CRT roots, batch checks that can fail."""

from __future__ import annotations

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaml.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    check_decryption,
    check_rerandomization,
    failed_decryptions,
    failed_rerandomizations,
    prove_decryption,
)
from deltaml.errors import DeltaMLValueError

FAST = settings(max_examples=40, deadline=None)
Keys = tuple[PublicKey, PrivateKey]


@FAST
@given(st.data())
def test_crt_roots_agree_with_the_direct_root(keys512: Keys, data: st.DataObject) -> None:
    """``randomness_of`` by CRT equals the reference ``(c mod n)^(n⁻¹ mod φ) mod n``."""
    pk, sk = keys512
    m = data.draw(st.integers(0, pk.n - 1))
    c = int(pk.raw_encrypt(m))
    if data.draw(st.booleans()):  # also ciphertexts that are products, not fresh encryptions
        c = c * int(pk.raw_encrypt(data.draw(st.integers(0, pk.n - 1)))) % pk.nsquare
        m = sk.raw_decrypt(c)
    r = sk.randomness_of(c, m)
    assert r == sk._randomness_of_direct(c)
    assert check_decryption(pk, c, m, r)


@FAST
@given(st.data())
def test_crt_roots_agree_on_the_larger_test_key(keys768: Keys, data: st.DataObject) -> None:
    pk, sk = keys768
    c = int(pk.raw_encrypt(data.draw(st.integers(0, pk.n - 1))))
    assert sk.randomness_of(c, 0) == sk._randomness_of_direct(c)


@FAST
@given(st.data())
def test_gmpy2_decryption_agrees_with_phe(keys512: Keys, data: st.DataObject) -> None:
    """Our CRT decryption and the fused opening equal phe's decryption and ``randomness_of``."""
    pk, sk = keys512
    value = data.draw(st.integers(-pk.max_int, pk.max_int))  # negatives wrap to n − |v|
    c = int(pk.raw_encrypt(pk.encode_signed(value)))
    m, r = sk.decrypt_with_randomness(c)
    assert m == sk.raw_decrypt(c) == _phe_decrypt(sk, c)
    assert sk.decode_signed(m) == value and r == sk.randomness_of(c, m)
    assert check_decryption(pk, c, m, r)
    other = data.draw(st.integers(1, pk.nsquare - 1))  # any element, not only encryptions
    assert sk.raw_decrypt(other) == _phe_decrypt(sk, other)
    assert sk.decrypt_with_randomness(other) == (sk.raw_decrypt(other), sk.randomness_of(other, 0))


def test_gmpy2_decryption_agrees_with_phe_on_the_larger_test_key(keys768: Keys) -> None:
    pk, sk = keys768
    for value in (0, 1, -1, pk.max_int, -pk.max_int, 2**300, -(2**300) + 7):
        c = int(pk.raw_encrypt(pk.encode_signed(value)))
        m, r = sk.decrypt_with_randomness(c)
        assert m == sk.raw_decrypt(c) == _phe_decrypt(sk, c)
        assert sk.decode_signed(m) == value and check_decryption(pk, c, m, r)


def test_prove_decryption_opens_a_vector(keys512: Keys) -> None:
    pk, sk = keys512
    v = EncryptedVector.encrypt_ints(pk, [3, -5, 0, 2**200], 7)
    plaintexts, randomness = prove_decryption(sk, v.ciphertexts)
    assert [sk.decode_signed(m) for m in plaintexts] == [3, -5, 0, 2**200]
    assert failed_decryptions(pk, v.ciphertexts, plaintexts, randomness) == []


def test_batch_check_names_every_bad_proof(keys512: Keys) -> None:
    pk, sk = keys512
    v = EncryptedVector.encrypt_ints(pk, list(range(-6, 6)), 0)
    ms, rs = prove_decryption(sk, v.ciphertexts)
    n = pk.n
    wrong_m = list(ms)
    wrong_m[2] = (wrong_m[2] + 1) % n
    wrong_m[9] = (wrong_m[9] - 1) % n
    assert failed_decryptions(pk, v.ciphertexts, wrong_m, rs) == [2, 9]
    wrong_r = list(rs)
    wrong_r[4] = wrong_r[4] * 2 % n
    assert failed_decryptions(pk, v.ciphertexts, ms, wrong_r) == [4]
    flipped = list(rs)
    flipped[0] = n - flipped[0]  # a factor of order 2: odd batch weights catch it
    assert failed_decryptions(pk, v.ciphertexts, ms, flipped) == [0]
    swapped = list(v.ciphertexts)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    assert failed_decryptions(pk, swapped, ms, rs) == [5, 6]
    out_of_range = list(rs)
    out_of_range[1] = 0
    assert failed_decryptions(pk, v.ciphertexts, ms, out_of_range) == [1]
    with pytest.raises(DeltaMLValueError):
        failed_decryptions(pk, v.ciphertexts, ms[:-1], rs)


@FAST
@given(st.data())
def test_a_single_wrong_plaintext_never_passes_the_batch(
    keys512: Keys, data: st.DataObject
) -> None:
    pk, sk = keys512
    values = data.draw(st.lists(st.integers(-(2**100), 2**100), min_size=1, max_size=6))
    v = EncryptedVector.encrypt_ints(pk, values, 0)
    ms, rs = prove_decryption(sk, v.ciphertexts)
    i = data.draw(st.integers(0, len(ms) - 1))
    delta = data.draw(st.integers(1, pk.n - 1))
    ms[i] = (ms[i] + delta) % pk.n
    assert failed_decryptions(pk, v.ciphertexts, ms, rs) == [i]


def test_rerandomize_with_exponents_is_checkable(keys512: Keys) -> None:
    pk, sk = keys512
    v = EncryptedVector.encrypt_ints(pk, [1, -2, 3], 5)
    w, exponents = v.rerandomize_with_exponents()
    assert w.decrypt_ints(sk) == [1, -2, 3] and (w.exponent, w.bound) == (5, v.bound)
    assert w.ciphertexts != v.ciphertexts
    assert all(0 <= a < 2 ** ((pk.key_bits + 1) // 2) for a in exponents)
    assert failed_rerandomizations(pk, v.ciphertexts, w.ciphertexts, exponents) == []
    for c, d, a in zip(v.ciphertexts, w.ciphertexts, exponents, strict=True):
        assert check_rerandomization(pk, c, d, a)
    assert failed_rerandomizations(pk, v.ciphertexts, w.ciphertexts, [a + 1 for a in exponents])


def test_a_changed_plaintext_is_not_a_rerandomization(keys512: Keys) -> None:
    pk, _ = keys512
    v = EncryptedVector.encrypt_ints(pk, [1, 2, 3, 4], 0)
    w, exponents = v.rerandomize_with_exponents()
    n2 = pk.nsquare
    tampered = list(w.ciphertexts)
    tampered[2] = tampered[2] * (1 + pk.n) % n2  # adds 1 to the plaintext
    assert failed_rerandomizations(pk, v.ciphertexts, tampered, exponents) == [2]
    other = v.add_ints([0, 0, 0, 1]).ciphertexts  # the same but for the last value
    assert failed_rerandomizations(pk, other, w.ciphertexts, exponents) == [3]
    inverse = [gmpy2.invert(c, n2) for c in w.ciphertexts]
    assert failed_rerandomizations(pk, v.ciphertexts, inverse, exponents) == [0, 1, 2, 3]
    with pytest.raises(DeltaMLValueError):
        failed_rerandomizations(pk, v.ciphertexts, w.ciphertexts, exponents[:2])


def _phe_decrypt(sk: PrivateKey, c: int) -> int:
    """The reference decryption: python-paillier's, from the same factors."""
    from phe import paillier

    return int(
        paillier.PaillierPrivateKey(
            paillier.PaillierPublicKey(sk.public_key.n), sk.p, sk.q
        ).raw_decrypt(int(c))
    )
