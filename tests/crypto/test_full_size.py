"""Real key sizes: one 2048-bit round of the training math, and 3072-bit keys working."""

from __future__ import annotations

import json

import numpy as np

from deltaml.crypto import (
    EncryptedVector,
    PlainMatrix,
    PrivateKey,
    check_decryption,
    generate_keypair,
    mask_for_refresh,
    needs_refresh,
    refresh_masked,
)
from deltaml.crypto.serialization import pack_vectors, unpack_vectors


def test_2048_bit_round_trip_matvec_and_refresh() -> None:
    pk, sk = generate_keypair(2048)
    assert pk.key_bits == 2048 and pk.ciphertext_bytes == 512
    rng = np.random.default_rng(11)
    base = 40
    w = rng.normal(size=11)
    a = rng.normal(size=(11, 11)) / 11
    b = rng.normal(size=11)

    ew = EncryptedVector.encrypt(pk, w, base)
    np.testing.assert_allclose(ew.decrypt(sk), w, atol=2.0**-41, rtol=0)

    # a trainer's round: A·w + b, re-randomized before it leaves, sent as a message
    matrix = PlainMatrix.encode(a, base)
    out = ew.matvec(matrix).add_plain(b).rerandomize()
    assert out.exponent == 2 * base
    message = json.dumps(pack_vectors([out], include_key=False))
    assert len(message) < 7_800  # the measured 7,670 of serialization.py's docstring
    assert len(json.dumps(pack_vectors([out]))) < 9_400  # measured 9,194
    (received,) = unpack_vectors(json.loads(message), known_keys=[pk])
    expected = matrix.decode() @ w + b
    np.testing.assert_allclose(received.decrypt(sk), expected, atol=1e-10, rtol=0)

    # refresh back to the base exponent without showing the key holder the values
    assert not needs_refresh(received, 80)
    masked, mask = mask_for_refresh(received, base)
    fresh = refresh_masked(masked, sk, base)
    refreshed = fresh.unmask(mask, received.bound, received.exponent)
    assert refreshed.exponent == base
    np.testing.assert_allclose(refreshed.decrypt(sk), expected, atol=2.0**-39, rtol=0)
    seen = masked.decrypt(sk)  # what the key holder saw: nothing like the values
    assert np.min(np.abs(seen - expected)) > 2.0**60

    # a proof of decryption of one value checks at full size
    c = refreshed.ciphertexts[0]
    m = sk.raw_decrypt(c)
    assert m == _phe_decrypt(sk, c) and (m, sk.randomness_of(c, m)) == (
        sk.decrypt_with_randomness(c)
    )
    assert check_decryption(pk, c, m, sk.randomness_of(c, m))
    assert not check_decryption(pk, c, (m + 1) % pk.n, sk.randomness_of(c, m))


def test_3072_bit_keys_work() -> None:
    pk, sk = generate_keypair(3072)
    assert pk.key_bits == 3072 and pk.ciphertext_bytes == 768
    x = np.array([1.5, -2.25, 1e-6, 123456.789])
    v = EncryptedVector.encrypt(pk, x, 40)
    np.testing.assert_allclose((v + v).decrypt(sk), 2 * x, atol=2.0**-40, rtol=0)
    (back,) = unpack_vectors(json.loads(json.dumps(pack_vectors([v]))))
    np.testing.assert_allclose(back.decrypt(sk), x, atol=2.0**-41, rtol=0)


def _phe_decrypt(sk: PrivateKey, c: int) -> int:
    """The reference decryption: python-paillier's, from the same factors."""
    from phe import paillier

    return int(
        paillier.PaillierPrivateKey(
            paillier.PaillierPublicKey(sk.public_key.n), sk.p, sk.q
        ).raw_decrypt(int(c))
    )
