"""Masked bilinear forms of an encrypted Gram matrix, and the proof of added plaintexts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deltaml.crypto import PrivateKey, PublicKey
from deltaml.crypto.knowledge import check_added_plaintexts
from deltaml.crypto.quadform import (
    SUM,
    EncryptedGram,
    MaskShare,
    add_masks_with_proof,
    combine,
    first_products,
    first_share,
    mask_bits,
    open_masked,
    second_share,
)
from deltaml.errors import DeltaMLValueError

Keys = tuple[PublicKey, PrivateKey]
VALUE = 10**12
#: The packing exponent the key holder decrypts ``ũ`` at: its magnitude bound
#: (``2^(e+48)``) is above two masks of ``mask_bits(VALUE)``.
PACKING = 76


def _enc(pk: PublicKey, values: list[int]) -> list:
    return [pk.raw_encrypt(pk.encode_signed(v)) for v in values]


def _gram(seed: int, size: int, rows: int = 30) -> list[list[int]]:
    r = np.random.default_rng(seed).integers(-1000, 1000, (rows, size))
    return [[int(v) for v in row] for row in (r.T @ r)]


def _run(pk: PublicKey, sk: PrivateKey, grams, vectors, pairs):
    """Every party's step in order; returns the decrypted forms and the key holder's view."""
    gram = EncryptedGram.total([EncryptedGram.encrypt(pk, g) for g in grams])
    enc = [_enc(pk, u) for u in vectors]
    bits = mask_bits(VALUE)
    first = MaskShare.draw(len(vectors), len(vectors[0]), bits)
    second = MaskShare.draw(len(vectors), len(vectors[0]), bits)
    masked, _ = add_masks_with_proof(pk, b"first", enc, first)
    remasked, proof = add_masks_with_proof(pk, b"test", masked, second)
    assert check_added_plaintexts(
        pk, b"test", [c for v in masked for c in v], [c for v in remasked for c in v], proof
    )
    second_products = gram.times(second.masks)
    _, opened = open_masked(sk, remasked, PACKING)
    v, products = first_products(gram, first, opened)
    mine = first_share(pk, v, products, second_products, pairs)
    theirs = second_share(pk, second, second_products, pairs)
    out = combine(pk, mine, theirs)
    return [sk.decrypt_signed(c) for c in out], opened, gram, (first, second)


def _expected(grams, vectors, pairs) -> list[int]:
    h = sum(np.array(g, dtype=object) for g in grams)
    us = [np.array(u, dtype=object) for u in vectors]
    ext = [*us, sum(us)]
    return [int(ext[k] @ h @ ext[t]) for k, t in pairs]


def test_every_pair_is_the_exact_bilinear_form_of_the_summed_grams(keys512: Keys) -> None:
    pk, sk = keys512
    rng = np.random.default_rng(1)
    vectors = [[int(v) for v in rng.integers(-VALUE, VALUE, 5)] for _ in range(4)]
    grams = [_gram(s, 5) for s in range(3)]
    pairs = [(k, k) for k in range(4)] + [(k, SUM) for k in range(4)] + [(SUM, SUM), (0, 2)]
    values, _, _, _ = _run(pk, sk, grams, vectors, pairs)
    assert values == _expected(grams, vectors, pairs)


def test_the_key_holder_sees_only_masked_values(keys512: Keys) -> None:
    pk, sk = keys512
    vectors = [[1, -2, 3], [0, 0, 0]]
    values, opened, _, shares = _run(pk, sk, [_gram(0, 3)], vectors, [(0, 0), (1, SUM)])
    first, second = shares
    for u, seen, a1, a2 in zip(vectors, opened, first.masks, second.masks, strict=True):
        assert seen == [x + b + c for x, b, c in zip(u, a1, a2, strict=True)]
        assert all(v.bit_length() >= 60 for v in seen)  # nothing near the small values
    assert values == _expected([_gram(0, 3)], vectors, [(0, 0), (1, SUM)])


def test_a_substituted_ciphertext_breaks_the_proof_of_added_plaintexts(keys512: Keys) -> None:
    """A second holder that passes on a ciphertext of its choosing (to have it decrypted)
    cannot prove it knows what it added to its input."""
    pk, _ = keys512
    enc = [_enc(pk, [5, 6, 7])]
    share = MaskShare.draw(1, 3, mask_bits(VALUE))
    out, proof = add_masks_with_proof(pk, b"ctx", enc, share)
    before, after = enc[0], out[0]
    assert check_added_plaintexts(pk, b"ctx", before, after, proof)
    chosen = list(after)
    chosen[1] = pk.raw_encrypt(42)  # someone else's ciphertext, say
    assert not check_added_plaintexts(pk, b"ctx", before, chosen, proof)
    assert not check_added_plaintexts(pk, b"other", before, after, proof)
    bent = dataclasses.replace(proof, z=proof.z + 1)
    assert not check_added_plaintexts(pk, b"ctx", before, after, bent)


def test_shapes_and_overflows_are_refused(keys512: Keys) -> None:
    pk, _ = keys512
    with pytest.raises(DeltaMLValueError, match="symmetric"):
        EncryptedGram.encrypt(pk, [[1, 2], [3, 4]])
    with pytest.raises(DeltaMLValueError, match="square"):
        EncryptedGram.encrypt(pk, [[1, 2]])
    with pytest.raises(DeltaMLValueError, match="overflow"):
        EncryptedGram.encrypt(pk, [[pk.max_int + 1]])
    gram = EncryptedGram.encrypt(pk, [[1, 0], [0, 1]])
    share = MaskShare.draw(1, 2, 8)
    with pytest.raises(DeltaMLValueError, match="names no vector"):
        second_share(pk, share, [_enc(pk, [1, 2])], [(0, 1)])
    with pytest.raises(DeltaMLValueError, match="one opened vector"):
        first_products(gram, share, [])
    with pytest.raises(DeltaMLValueError, match="one product"):
        first_share(pk, [[1, 2]], [], [_enc(pk, [1, 2])], [(0, 0)])
    with pytest.raises(DeltaMLValueError, match="2 values"):
        gram.times([[1, 2, 3]])
