"""Keys, raw encryption, fast randomness, proofs of decryption, pickling."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterator

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deltaml.crypto import (
    EncryptedVector,
    PrivateKey,
    PublicKey,
    check_decryption,
    generate_keypair,
)
from deltaml.crypto import paillier as paillier_module
from deltaml.crypto.paillier import TEST_KEYS_ENV, WeakKeyError
from deltaml.errors import DeltaMLValueError, PrecisionBudgetError

FAST = settings(max_examples=40, deadline=None)
Keys = tuple[PublicKey, PrivateKey]


# -- key generation and handling ---------------------------------------------------------
@pytest.mark.parametrize("bits", [512, 768, 1024])
def test_test_key_sizes_need_the_flag(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_KEYS_ENV, raising=False)
    with pytest.raises(WeakKeyError, match="unsupported key size"):
        generate_keypair(bits)
    pk, sk = generate_keypair(bits, allow_test_keys=True)
    assert pk.key_bits == bits
    assert sk.p * sk.q == pk.n


@pytest.mark.parametrize("bits", [256, 1000, 1536, 4096])
def test_unsupported_sizes_are_refused_even_for_tests(bits: int) -> None:
    with pytest.raises(DeltaMLValueError):
        generate_keypair(bits, allow_test_keys=True)


def test_key_properties(keys512: Keys) -> None:
    pk, _ = keys512
    assert pk.nsquare == pk.n**2
    assert pk.max_int == pk.n // 3
    assert pk.ciphertext_bytes == 128
    assert len(pk.fingerprint) == 16
    assert int(pk.fingerprint, 16) >= 0
    assert pk == PublicKey(pk.n, pk.hs)
    assert hash(pk) == hash(PublicKey(pk.n, pk.hs))
    assert pk != PublicKey(pk.n, pk.hs + 1)
    assert gmpy2.gcd(pk.hs, pk.n) == 1


def test_private_key_repr_never_shows_the_factors(keys512: Keys) -> None:
    _, sk = keys512
    for text in (repr(sk), str(sk), f"{sk}", repr([sk])):
        for factor in (sk.p, sk.q):
            assert str(factor) not in text
            assert format(factor, "x") not in text
            assert format(factor, "X") not in text
    assert sk.public_key.fingerprint in repr(sk)


def test_keys_round_trip_through_dicts(keys512: Keys) -> None:
    pk, sk = keys512
    pk2 = PublicKey.from_dict(json.loads(json.dumps(pk.to_dict())))
    assert pk2 is pk  # one object per key (PublicKey.of)
    sk2 = PrivateKey.from_dict(json.loads(json.dumps(sk.to_dict())))
    assert (sk2.p, sk2.q) == (sk.p, sk.q)
    assert sk2.public_key == pk
    c = pk.raw_encrypt(pk.encode_signed(-42))
    assert sk2.decrypt_signed(c) == -42


def _bad_public_dicts(pk: PublicKey) -> Iterator[object]:
    n, hs = format(pk.n, "x"), format(pk.hs, "x")
    yield None
    yield []
    yield "n"
    yield {}
    yield {"n": n}
    yield {"hs": hs}
    yield {"n": pk.n, "hs": pk.hs}  # ints, not hex strings
    yield {"n": "zz", "hs": hs}
    yield {"n": n, "hs": "not hex"}
    yield {"n": format(pk.n + 1, "x"), "hs": hs}  # even
    yield {"n": "ff", "hs": "2"}  # far too small
    yield {"n": n, "hs": "1"}
    yield {"n": n, "hs": format(pk.nsquare, "x")}


def test_malformed_public_key_dicts_are_refused(keys512: Keys) -> None:
    for bad in _bad_public_dicts(keys512[0]):
        with pytest.raises(DeltaMLValueError):
            PublicKey.from_dict(bad)  # type: ignore[arg-type]


def _bad_private_dicts(sk: PrivateKey) -> Iterator[object]:
    good = sk.to_dict()
    n = sk.public_key.n
    yield None
    yield {}
    yield {**good, "public_key": "x"}
    yield {**good, "public_key": {"n": "ff"}}
    yield {k: v for k, v in good.items() if k != "q"}
    yield {**good, "p": "zz"}
    yield {**good, "p": format(sk.p + 2, "x")}  # does not multiply to n
    yield {**good, "p": "1", "q": format(n, "x")}  # trivial factorization
    yield {**good, "p": format(n, "x"), "q": "1"}


def test_malformed_private_key_dicts_are_refused(keys512: Keys) -> None:
    for bad in _bad_private_dicts(keys512[1]):
        with pytest.raises(DeltaMLValueError):
            PrivateKey.from_dict(bad)  # type: ignore[arg-type]


def test_factors_must_be_two_distinct_primes(keys512: Keys) -> None:
    # Three primes: p · (q·r) multiplies to n but q·r is no prime.
    p = int(gmpy2.next_prime(2**100))
    q = int(gmpy2.next_prime(2**110))
    r = int(gmpy2.next_prime(2**120))
    pk = PublicKey(p * q * r, 4)
    with pytest.raises(DeltaMLValueError):
        PrivateKey(pk, p, q * r)
    # Two primes, but 3 divides q − 1: n has no inverse modulo φ(n).
    q = int(gmpy2.next_prime(2**300))
    while q % 3 != 1:
        q = int(gmpy2.next_prime(q))
    with pytest.raises(DeltaMLValueError):
        PrivateKey(PublicKey(3 * q, 4), 3, q)


def test_public_key_refuses_bad_parameters() -> None:
    with pytest.raises(DeltaMLValueError):
        PublicKey(2**300, 4)  # even
    with pytest.raises(DeltaMLValueError):
        PublicKey(2**200 + 1, 4)  # too small
    with pytest.raises(DeltaMLValueError):
        PublicKey(2**300 + 1, 1)


# -- pickling --------------------------------------------------------------------------------
def test_public_key_pickles_without_its_window_table(keys512: Keys) -> None:
    pk, sk = keys512
    for _ in range(paillier_module._TABLE_AFTER_USES + 1):
        pk.random_factor()
    assert pk._table is not None
    table_size = len(pickle.dumps(pk._table))
    data = pickle.dumps(pk)
    assert len(data) < 600 < table_size
    pk2 = pickle.loads(data)
    assert pk2 == pk
    assert pk2._table is None and pk2._uses == 0
    assert (pk2.nsquare, pk2.max_int, pk2._n, pk2._nsquare, pk2._hs, pk2._alpha_bits) == (
        pk.nsquare,
        pk.max_int,
        pk._n,
        pk._nsquare,
        pk._hs,
        pk._alpha_bits,
    )
    assert sk.decrypt_signed(pk2.raw_encrypt(pk2.encode_signed(-7))) == -7
    assert pk._table is not None  # pickling did not touch the original
    pk3 = copy.deepcopy(pk)
    assert pk3 == pk and pk3._table is None


def test_private_key_pickles_and_still_decrypts(keys512: Keys) -> None:
    pk, sk = keys512
    data = pickle.dumps(sk)
    assert len(data) < 1000
    sk2 = pickle.loads(data)
    assert repr(sk2) == repr(sk)
    v = EncryptedVector.encrypt_ints(pk, [5, -6, 0], 0)
    assert v.decrypt_ints(sk2) == [5, -6, 0]
    assert sk2.randomness_of(v.ciphertexts[0], 5) == sk.randomness_of(v.ciphertexts[0], 5)


def test_encrypted_vectors_pickle_compactly(keys512: Keys) -> None:
    pk, sk = keys512
    for _ in range(paillier_module._TABLE_AFTER_USES + 1):
        pk.random_factor()
    v = EncryptedVector.encrypt_ints(pk, [1, 2, 3], 4)
    data = pickle.dumps(v)
    assert len(data) < 1500
    assert pickle.loads(data).decrypt_ints(sk) == [1, 2, 3]


# -- raw encryption and the signed convention -----------------------------------------
@FAST
@given(st.data())
def test_signed_round_trip(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    m = data.draw(st.integers(-pk.max_int, pk.max_int))
    assert sk.decrypt_signed(pk.raw_encrypt(pk.encode_signed(m))) == m


def test_signed_boundaries(keys512: Keys) -> None:
    pk, sk = keys512
    assert sk.decrypt_signed(pk.raw_encrypt(pk.max_int)) == pk.max_int
    assert sk.decrypt_signed(pk.raw_encrypt(pk.n - pk.max_int)) == -pk.max_int
    with pytest.raises(PrecisionBudgetError):
        pk.encode_signed(pk.max_int + 1)
    with pytest.raises(PrecisionBudgetError):
        pk.encode_signed(-pk.max_int - 1)
    for bad in (-1, pk.n):
        with pytest.raises(DeltaMLValueError):
            pk.raw_encrypt(bad)


@FAST
@given(st.data())
def test_decrypt_signed_refuses_the_overflow_band(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    m = data.draw(
        st.one_of(
            st.just(pk.max_int + 1),
            st.just(pk.n - pk.max_int - 1),
            st.integers(pk.max_int + 1, pk.n - pk.max_int - 1),
        )
    )
    c = pk.raw_encrypt(m)
    assert sk.raw_decrypt(c) == m
    with pytest.raises(PrecisionBudgetError):
        sk.decrypt_signed(c)
    with pytest.raises(PrecisionBudgetError):
        EncryptedVector(pk, [c], 0, 0).decrypt_ints(sk)


# -- randomness -------------------------------------------------------------------------------
def test_encryption_is_randomized(keys512: Keys) -> None:
    pk, sk = keys512
    cts = {int(pk.raw_encrypt(7)) for _ in range(20)}
    assert len(cts) == 20
    assert {sk.raw_decrypt(c) for c in cts} == {7}


def test_random_factor_with_and_without_the_window_table(
    keys512: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk0, sk = keys512
    pk = PublicKey(pk0.n, pk0.hs)  # fresh: no table yet
    alphas = iter(range(10**70, 10**70 + 1000, 7))
    used: list[int] = []

    def fake_randbits(bits: int) -> int:
        assert bits == pk._alpha_bits
        used.append(next(alphas))
        return used[-1]

    class NoPool:  # the background pool draws randomness too; keep this test serial
        def __init__(self, *args: object) -> None:
            pass

        def take(self) -> None:
            return None

        def close(self) -> None:
            pass

    monkeypatch.setattr(paillier_module, "_RandomizerPool", NoPool)
    monkeypatch.setattr(paillier_module.secrets, "randbits", fake_randbits)
    limit = paillier_module._TABLE_AFTER_USES
    factors = []
    for i in range(limit + 5):
        assert (pk._table is None) == (i <= limit)
        factors.append(pk.random_factor())
    assert pk._table is not None
    for f, alpha in zip(factors, used, strict=True):
        assert f == gmpy2.powmod(pk.hs, alpha, pk.nsquare)  # both paths compute h_s^α
    monkeypatch.undo()
    # real randomness, after the table: n-th residues, i.e. encryptions of 0
    fresh = [pk.random_factor() for _ in range(10)]
    assert len({int(f) for f in fresh}) == 10
    for f in fresh:
        assert sk.raw_decrypt(f) == 0
        c = pk.raw_encrypt(123) * f % pk.nsquare
        assert sk.raw_decrypt(c) == 123


def test_rerandomize_changes_ciphertexts_not_plaintexts(keys512: Keys) -> None:
    pk, sk = keys512
    v = EncryptedVector.encrypt_ints(pk, [3, -1, 0, 2**100], 10)
    w = v.rerandomize()
    assert all(a != b for a, b in zip(v.ciphertexts, w.ciphertexts, strict=True))
    assert w.decrypt_ints(sk) == v.decrypt_ints(sk) == [3, -1, 0, 2**100]
    assert (w.exponent, w.bound) == (v.exponent, v.bound)


# -- proofs of decryption ----------------------------------------------------------------------
@FAST
@given(st.data())
def test_honest_proofs_are_accepted(keys512: Keys, data: st.DataObject) -> None:
    pk, sk = keys512
    m = data.draw(st.integers(0, pk.n - 1))
    c = pk.raw_encrypt(m)
    r = sk.randomness_of(c, m)
    assert 0 < r < pk.n
    assert check_decryption(pk, c, m, r)
    assert check_decryption(pk, int(c), m, int(r))


def test_proofs_hold_for_computed_ciphertexts(keys512: Keys) -> None:
    pk, sk = keys512
    v = EncryptedVector.encrypt_ints(pk, [5, -3], 0)
    w = (v + v).mul_int(-7).rerandomize()
    for c in w.ciphertexts:
        m = sk.raw_decrypt(c)
        assert check_decryption(pk, c, m, sk.randomness_of(c, m))
    assert w.decrypt_ints(sk) == [-70, 42]


def test_dishonest_proofs_are_rejected(keys512: Keys, keys768: Keys) -> None:
    pk, sk = keys512
    m = 1234567
    c = pk.raw_encrypt(m)
    r = sk.randomness_of(c, m)
    n, n2 = pk.n, pk.nsquare
    assert check_decryption(pk, c, m, r)
    assert not check_decryption(pk, c, m + 1, r)  # wrong plaintext
    assert not check_decryption(pk, c, m - 1, r)
    assert not check_decryption(pk, c, m, r + 1)  # wrong randomness
    assert not check_decryption(pk, c, m, n - r)
    assert not check_decryption(pk, c * (1 + n) % n2, m, r)  # tampered: adds 1
    assert not check_decryption(pk, c * pk.random_factor() % n2, m, r)  # re-randomized
    assert not check_decryption(pk, c + 1, m, r)
    for args in ((c, -1, r), (c, n, r), (c, m + n, r), (c, m, 0), (c, m, n), (c, m, r + n)):
        assert not check_decryption(pk, *args)
    for bad_c in (0, n2, c + n2, -c):
        assert not check_decryption(pk, bad_c, m, r)
    assert not check_decryption(keys768[0], c, m, r)  # another key


def test_the_background_pool_serves_valid_randomizers(keys512: Keys) -> None:
    import time

    pk0, sk = keys512
    pk = PublicKey(pk0.n, pk0.hs)
    for _ in range(paillier_module._TABLE_AFTER_USES + 1):
        pk.random_factor()
    assert pk._pool is not None
    deadline = time.monotonic() + 10
    item = None
    while item is None and time.monotonic() < deadline:
        item = pk._pool.take()
        time.sleep(0.01)
    assert item is not None, "the pool produced nothing in 10 s"
    factor, alpha = item
    assert factor == gmpy2.powmod(pk.hs, alpha, pk.nsquare)
    # A re-randomized ciphertext still decrypts to the same plaintext.
    c = pk.raw_encrypt(12345)
    assert sk.raw_decrypt(int(c * pk.random_factor() % pk.nsquare)) == 12345
