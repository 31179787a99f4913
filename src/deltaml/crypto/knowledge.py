r"""A proof that a party knows what it added to ciphertexts, without showing it.

Where a mask holder turns ciphertexts ``c_i`` into ``c_i' = c_i · (1 + a_i n) · h_s^{α_i}``
(it adds a secret plaintext ``a_i`` and re-randomizes), the next party must know that
``c_i'`` is *its input plus something the holder knows* — not a ciphertext the holder
picked elsewhere to have it decrypted (another owner's statistic, a model). Writing
``D_i = c_i' / c_i``, the holder proves knowledge of every ``(a_i, α_i)`` with
``D_i = (1 + a_i n) h_s^{α_i} mod n²`` by one batched Σ-protocol made non-interactive
with Fiat–Shamir:

- commitment ``T = (1 + x n) h_s^y`` for fresh ``x``, ``y`` wider than any response term
  by :data:`HIDING_BITS` (so the responses hide the ``a_i`` and ``α_i`` statistically);
- challenges ``e_i`` (:data:`CHALLENGE_BITS` each) hashed from the context, the key, every
  ``c_i``, ``c_i'`` and ``T``;
- responses ``z = x + Σ e_i a_i`` and ``w = y + Σ e_i α_i`` (integers).

The check is ``(1 + z n) · h_s^w · ∏ c_i^{e_i} = T · ∏ c_i'^{e_i} mod n²`` — one
full exponentiation and two multi-exponentiations with short exponents, however many
ciphertexts. Answers to ``N + 1`` independent challenge vectors would give every
``(a_i, α_i)`` by linear algebra, so a holder that does not know what it added to one
``c_i`` (because it replaced ``c_i'`` by a ciphertext of its choosing) cannot answer
but with negligible probability.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2

from deltaml.crypto.multiexp import multi_exp
from deltaml.crypto.paillier import PublicKey
from deltaml.errors import DeltaMLValueError

#: Bits of each Fiat–Shamir challenge.
CHALLENGE_BITS = 128
#: Statistical hiding of the responses.
HIDING_BITS = 80


@dataclass(frozen=True)
class AddedPlaintextProof:
    """``T``, ``z`` and ``w`` of the batched Σ-protocol (see the module's docstring)."""

    commitment: int
    z: int
    w: int


def _challenges(
    key: PublicKey, context: bytes, before: Sequence[int], after: Sequence[int], commitment: int
) -> list[int]:
    h = hashlib.sha256()
    h.update(b"deltaml/added-plaintexts/v1\x00" + context + b"\x00")
    for value in (key.n, key.hs, commitment, *before, *after):
        h.update(f"{int(value):x},".encode())
    seed = h.digest()
    out = []
    for i in range(len(before)):
        digest = hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        out.append(int.from_bytes(digest[: CHALLENGE_BITS // 8], "big"))
    return out


def prove_added_plaintexts(
    key: PublicKey,
    context: bytes,
    before: Sequence[int],
    after: Sequence[int],
    added: Sequence[int],
    alphas: Sequence[int],
) -> AddedPlaintextProof:
    """Prove knowledge of ``added[i]`` (non-negative) and ``alphas[i]`` with
    ``after[i] = before[i] · (1 + added[i]·n) · h_s^{alphas[i]}``."""
    if not len(before) == len(after) == len(added) == len(alphas) or not before:
        raise DeltaMLValueError("one added plaintext and one exponent per ciphertext")
    if any(a < 0 for a in added) or any(al < 0 for al in alphas):
        raise DeltaMLValueError("added plaintexts and exponents must be non-negative")
    width = CHALLENGE_BITS + len(before).bit_length() + HIDING_BITS
    x = secrets.randbits(max(a.bit_length() for a in added) + width)
    y = secrets.randbits(max(al.bit_length() for al in alphas) + width)
    n, n2 = key._n, key._nsquare
    commitment = int((1 + x * n) % n2 * key.factor_of_exponent(y) % n2)
    e = _challenges(key, context, before, after, commitment)
    z = x + sum(ei * a for ei, a in zip(e, added, strict=True))
    w = y + sum(ei * al for ei, al in zip(e, alphas, strict=True))
    return AddedPlaintextProof(commitment, z, w)


def check_added_plaintexts(
    key: PublicKey,
    context: bytes,
    before: Sequence[int],
    after: Sequence[int],
    proof: AddedPlaintextProof,
) -> bool:
    """Whether ``proof`` shows that whoever made ``after`` knew what it added to ``before``."""
    n, n2 = key._n, key._nsquare
    if len(before) != len(after) or not before:
        return False
    if not (0 < proof.commitment < n2 and proof.z >= 0 and proof.w >= 0):
        return False
    if not all(0 < c < n2 and gmpy2.gcd(c, n) == 1 for c in (*before, *after)):
        return False
    e = _challenges(key, context, before, after, proof.commitment)
    left = (1 + proof.z * n) % n2 * key.factor_of_exponent(proof.w) % n2
    left = left * multi_exp([gmpy2.mpz(c) for c in before], [e], n2)[0] % n2
    right = proof.commitment * multi_exp([gmpy2.mpz(c) for c in after], [e], n2)[0] % n2
    return bool(left == right)
