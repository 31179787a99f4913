r"""Proofs of decryption and of re-randomization, and checking them in batches.

Proof of decryption
-------------------
The key holder opens a ciphertext ``c`` as its plaintext ``m ∈ [0, n)`` and the
``r ∈ Z_n*`` with ``c = (1 + m·n)·r^n mod n²`` (:meth:`PrivateKey.randomness_of`).
Anyone holding the public key checks the equation (:func:`check_decryption`). Since
``Z_{n²}* ≅ Z_n × Z_n*`` by ``(m, r) ↦ (1 + m·n)·r^n``, no other ``m`` satisfies it.

Proof of re-randomization
-------------------------
A re-randomized ciphertext is ``c' = c · h_s^α mod n²`` (:mod:`deltaml.crypto.paillier`);
publishing ``α`` lets anyone check that ``c'`` encrypts what ``c`` did.

Batch checking
--------------
One proof costs a full exponentiation modulo ``n²`` (16 ms for ``r^n`` at 2048 bits,
8.5 ms for ``h_s^α``). The checks below verify a whole vector of claims at once with
random odd 64-bit weights ``λ_i`` chosen by the checker after the claims are fixed
(the small-exponent test of Bellare, Garay and Rabin, 1998):

.. math::
   \prod_i \bigl(c_i (1 − m_i n)\bigr)^{λ_i} &= \Bigl(\prod_i r_i^{λ_i} \bmod n\Bigr)^n
   \pmod{n^2} \\
   \prod_i c_i'^{λ_i} &= \prod_i c_i^{λ_i} · h_s^{\sum_i λ_i α_i} \pmod{n^2}

— one full exponentiation per vector plus cheap 64-bit ones. Soundness for what
matters, the plaintexts: write each discrepancy as ``g^{k_i} y_i^n`` (unique, by the
isomorphism above); the batch passes only if ``Σ λ_i k_i ≡ 0 (mod n)``, and when some
``k_i ≢ 0`` at most one value of ``λ_i`` below ``2^64`` does that (``p, q > 2^255``):
a wrong plaintext passes with probability below ``2^{-62}``. A discrepancy in the
randomness alone (``k_i = 0``, for example ``r`` replaced by ``−r``) may pass; it
changes no plaintext. When a batch fails, every claim is checked on its own to name
the ones that fail.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2

from deltaml.crypto.multiexp import multi_exp
from deltaml.crypto.paillier import PrivateKey, PublicKey, check_decryption
from deltaml.crypto.vector import OPERATION_COUNTS
from deltaml.errors import DeltaMLValueError

#: Bits of the random batch weights (the lowest is forced to 1).
BATCH_WEIGHT_BITS = 64


def prove_decryption(
    private_key: PrivateKey, ciphertexts: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Decrypt ``ciphertexts`` to raw plaintexts in ``[0, n)`` with a proof for each.

    Returns ``(plaintexts, randomness)``; decode the plaintexts with
    :meth:`PrivateKey.decode_signed` and the vector's exponent.
    """
    OPERATION_COUNTS["decrypt"] += len(ciphertexts)
    openings = [private_key.decrypt_with_randomness(c) for c in ciphertexts]
    return [m for m, _ in openings], [r for _, r in openings]


def _weights(count: int) -> list[int]:
    return [secrets.randbits(BATCH_WEIGHT_BITS - 1) << 1 | 1 for _ in range(count)]


def failed_decryptions(
    public_key: PublicKey,
    ciphertexts: Sequence[int],
    plaintexts: Sequence[int],
    randomness: Sequence[int],
) -> list[int]:
    """Indices of the decryption proofs that do not check (empty: all hold).

    Raises :class:`DeltaMLValueError` when the three sequences differ in length.
    """
    if not len(ciphertexts) == len(plaintexts) == len(randomness):
        raise DeltaMLValueError("one plaintext and one randomness per ciphertext")
    n, n2 = public_key._n, public_key._nsquare
    in_range = [
        0 <= m < n and 0 < r < n and 0 < c < n2 and gmpy2.gcd(r, n) == 1
        for c, m, r in zip(ciphertexts, plaintexts, randomness, strict=True)
    ]
    if all(in_range) and ciphertexts:
        weights = _weights(len(ciphertexts))
        opened = [
            gmpy2.mpz(c) * ((1 - gmpy2.mpz(m) * n) % n2) % n2
            for c, m in zip(ciphertexts, plaintexts, strict=True)
        ]
        left = multi_exp(opened, [weights], n2)[0]
        roots = multi_exp([gmpy2.mpz(r) for r in randomness], [weights], n)[0]
        if left == gmpy2.powmod(roots, n, n2):
            return []
    return [
        i
        for i, (c, m, r) in enumerate(zip(ciphertexts, plaintexts, randomness, strict=True))
        if not (in_range[i] and check_decryption(public_key, c, m, r))
    ]


def check_rerandomization(public_key: PublicKey, before: int, after: int, exponent: int) -> bool:
    """``after == before · h_s^exponent mod n²`` (one claim, checked directly)."""
    n2 = public_key._nsquare
    if not (0 < before < n2 and 0 < after < n2 and exponent >= 0):
        return False
    return bool(gmpy2.mpz(before) * public_key.factor_of_exponent(exponent) % n2 == after)


def failed_rerandomizations(
    public_key: PublicKey,
    before: Sequence[int],
    after: Sequence[int],
    exponents: Sequence[int],
) -> list[int]:
    """Indices where ``after[i]`` is not ``before[i]`` re-randomized by ``h_s^exponents[i]``."""
    if not len(before) == len(after) == len(exponents):
        raise DeltaMLValueError("one exponent per re-randomized ciphertext")
    n, n2 = public_key._n, public_key._nsquare
    valid = [
        0 < b < n2 and 0 < a < n2 and e >= 0 and gmpy2.gcd(b, n) == 1
        for b, a, e in zip(before, after, exponents, strict=True)
    ]
    if all(valid) and before:
        weights = _weights(len(before))
        left = multi_exp([gmpy2.mpz(a) for a in after], [weights], n2)[0]
        right = multi_exp([gmpy2.mpz(b) for b in before], [weights], n2)[0]
        total = sum(w * e for w, e in zip(weights, exponents, strict=True))
        if left == right * public_key.factor_of_exponent(total) % n2:
            return []
    return [
        i
        for i, (b, a, e) in enumerate(zip(before, after, exponents, strict=True))
        if not (valid[i] and check_rerandomization(public_key, b, a, e))
    ]
