r"""Bilinear forms ``u_kᵀ H u_t`` of encrypted vectors and an encrypted matrix.

Validation error without the validators in every evaluation
-----------------------------------------------------------
A validator's rows enter a model's squared error only through its Gram matrix
``H_v = R_vᵀR_v`` (``R_v`` its triangular factor of ``[X 1 y]``): ``SSE(w) = uᵀHu``
with ``u = [w; −1]`` and ``H = Σ_v H_v``. Each validator sends ``Enc(H_v)`` once per
request (:class:`EncryptedGram`); their sum is one ``D × D`` encrypted matrix
whatever the number of validators. What is left is a product of two encrypted
things, ``H`` and ``u``: the key holder helps, seeing only uniformly masked values.

The masked product, with two mask holders
-----------------------------------------
For vectors ``u_1 … u_K`` (encrypted, integers) and a list of index pairs ``(k, t)``
— an index may be :data:`SUM`, ``Σ_k u_k`` — the parties compute every
``B(k, t) = u_kᵀHu_t`` as follows. The **first holder** (the aggregator) and the
**second holder** (a validator named by a public rule) each draw a uniform mask per
vector, :data:`~deltaml.crypto.vector.MASK_STATISTICAL_BITS` wider than the values:
``a = a¹ + a²``.

1. The first holder adds ``a¹_k`` and re-randomizes (:func:`add_masks`); the second
   adds ``a²_k``, re-randomizes and proves it knows what it added
   (:mod:`deltaml.crypto.knowledge`), and sends ``Enc(H a²_k)``.
2. The key holder decrypts ``ũ_k = u_k + a_k`` — statistically nothing without both
   masks — and returns ``Enc(Hũ_k) = Enc(H)·ũ_k`` and ``Enc(ũ_kᵀHũ_t)``, computed from
   public ciphertexts and ``ũ`` alone (so, once it publishes ``ũ`` with decryption
   proofs, anyone can recompute them) (:func:`key_holder_products`).
3. Since ``u = ũ − a``,
   ``B(k, t) = ũ_kᵀHũ_t − a_kᵀ(Hũ_t) − a_tᵀ(Hũ_k) + a_kᵀHa_t``; the last term splits
   into ``a¹_kᵀHa¹_t + a¹_kᵀHa²_t + a¹_tᵀHa²_k + a²_kᵀHa²_t``. Each holder computes its
   share from ciphertexts and its own masks (:func:`correction`): the first takes the
   cross terms (it has ``Enc(Ha²)``), the second only its own.
4. The second holder adds the key holder's terms and both shares, re-randomizes and
   signs ``Enc(B(k, t))``; the key holder decrypts those and nothing else.

Cost: ``K·D²`` exponentiations with exponents of the masks' width for each holder
and for the key holder (``Enc(H·x)`` for ``K`` vectors, sharing one window table per
entry of ``Enc(H)``), ``O(D)`` more per pair — independent of the validators.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import gmpy2

from deltaml.crypto.knowledge import AddedPlaintextProof, prove_added_plaintexts
from deltaml.crypto.multiexp import multi_exp
from deltaml.crypto.packing import PackedOpening, prove_packed_decryption
from deltaml.crypto.paillier import PrivateKey, PublicKey
from deltaml.crypto.vector import MASK_STATISTICAL_BITS
from deltaml.errors import DeltaMLValueError

#: The index of ``Σ_k u_k`` in a pair.
SUM = -1

Pair = tuple[int, int]
Cipher: TypeAlias = gmpy2.mpz


@dataclass(frozen=True)
class EncryptedGram:
    """A symmetric ``D × D`` integer matrix, encrypted entry by entry (the upper
    triangle; the lower one mirrors it), with a bound on its entries."""

    public_key: PublicKey
    upper: tuple[Cipher, ...]
    size: int
    bound: int

    def __post_init__(self) -> None:
        if self.size < 1 or len(self.upper) != self.size * (self.size + 1) // 2:
            raise DeltaMLValueError("a Gram matrix needs D(D+1)/2 ciphertexts")
        if self.bound < 0 or self.bound > self.public_key.max_int:
            raise DeltaMLValueError("the Gram matrix's bound is out of range")

    @classmethod
    def encrypt(cls, key: PublicKey, matrix: Sequence[Sequence[int]]) -> EncryptedGram:
        size = len(matrix)
        if any(len(row) != size for row in matrix):
            raise DeltaMLValueError("a Gram matrix must be square")
        if any(matrix[i][j] != matrix[j][i] for i in range(size) for j in range(i)):
            raise DeltaMLValueError("a Gram matrix must be symmetric")
        upper = [int(matrix[i][j]) for i in range(size) for j in range(i, size)]
        bound = max((abs(v) for v in upper), default=0)
        if bound > key.max_int:
            raise DeltaMLValueError("the Gram matrix's entries overflow the key")
        cts = tuple(key.raw_encrypt(key.encode_signed(v)) for v in upper)
        return cls(key, cts, size, bound)

    def rows(self) -> list[list[Cipher]]:
        """The full matrix of ciphertexts, row by row."""
        out: list[list[Cipher]] = [[gmpy2.mpz(0)] * self.size for _ in range(self.size)]
        it = iter(self.upper)
        for i in range(self.size):
            for j in range(i, self.size):
                out[i][j] = out[j][i] = next(it)
        return out

    @staticmethod
    def total(grams: Sequence[EncryptedGram]) -> EncryptedGram:
        """``Enc(Σ H_v)``: one product per entry and validator."""
        if not grams:
            raise DeltaMLValueError("no Gram matrices to add")
        first = grams[0]
        if any(g.public_key != first.public_key or g.size != first.size for g in grams):
            raise DeltaMLValueError("the Gram matrices differ in key or size")
        bound = sum(g.bound for g in grams)
        if bound > first.public_key.max_int:
            raise DeltaMLValueError("the summed Gram matrix overflows the key")
        n2 = first.public_key._nsquare
        upper = list(first.upper)
        for g in grams[1:]:
            upper = [a * b % n2 for a, b in zip(upper, g.upper, strict=True)]
        return EncryptedGram(first.public_key, tuple(upper), first.size, bound)

    def times(
        self, columns: Sequence[Sequence[int]], private_key: PrivateKey | None = None
    ) -> list[list[Cipher]]:
        """``Enc(H·x)`` for every integer vector ``x`` in ``columns``; each entry's window
        table is shared by every column. With the ``private_key`` (the key holder) the
        same ciphertexts come out faster, computed modulo ``p²`` and ``q²`` and joined."""
        if any(len(x) != self.size for x in columns):
            raise DeltaMLValueError(f"every vector needs {self.size} values")
        rows = [list(x) for x in columns]
        out: list[list[Cipher]] = [[] for _ in columns]
        if private_key is None:
            n2 = self.public_key._nsquare
            for row in self.rows():
                for k, value in enumerate(multi_exp(row, rows, n2)):
                    out[k].append(value)
            return out
        p2, q2 = gmpy2.mpz(private_key.p) ** 2, gmpy2.mpz(private_key.q) ** 2
        join = gmpy2.invert(p2, q2)
        for row in self.rows():
            at_p = multi_exp([c % p2 for c in row], rows, p2)
            at_q = multi_exp([c % q2 for c in row], rows, q2)
            for k, (a, b) in enumerate(zip(at_p, at_q, strict=True)):
                out[k].append(a + p2 * ((b - a) * join % q2))
        return out


# -- small helpers on lists of ciphertexts ----------------------------------------------
def _with_sum(items: Sequence[Sequence[Cipher]], n2: gmpy2.mpz) -> list[list[Cipher]]:
    """``items`` and, last, their entrywise product (the plaintexts' sum), so that
    :data:`SUM` (``-1``) indexes it."""
    total = list(items[0])
    for item in items[1:]:
        total = [a * b % n2 for a, b in zip(total, item, strict=True)]
    return [*(list(i) for i in items), total]


def _ints_with_sum(items: Sequence[Sequence[int]]) -> list[list[int]]:
    return [*(list(i) for i in items), [sum(col) for col in zip(*items, strict=True)]]


def _dot(ciphertexts: Sequence[Cipher], ints: Sequence[int], n2: gmpy2.mpz) -> Cipher:
    """``Enc(Σ_i ints_i·x_i)`` from ``Enc(x_i)``."""
    return multi_exp(list(ciphertexts), [list(ints)], n2)[0]


def check_pairs(pairs: Sequence[Pair], count: int) -> None:
    """Refuse pairs that name no vector."""
    if not pairs:
        raise DeltaMLValueError("no pairs to evaluate")
    for k, t in pairs:
        if not all(i == SUM or 0 <= i < count for i in (k, t)):
            raise DeltaMLValueError(f"pair {(k, t)} names no vector of {count}")


# -- the parties' steps ---------------------------------------------------------------
def mask_bits(value_bound: int) -> int:
    """Width of the uniform masks that hide values of magnitude at most ``value_bound``."""
    return max(value_bound, 1).bit_length() + MASK_STATISTICAL_BITS


@dataclass(frozen=True)
class MaskShare:
    """One holder's secret masks, one uniform vector per encrypted vector."""

    masks: tuple[tuple[int, ...], ...]

    @classmethod
    def draw(cls, count: int, size: int, bits: int) -> MaskShare:
        if count < 1 or size < 1 or bits < 1:
            raise DeltaMLValueError("masks need a count, a size and a width")
        return cls(tuple(tuple(secrets.randbits(bits) for _ in range(size)) for _ in range(count)))


def add_masks(
    key: PublicKey, vectors: Sequence[Sequence[Cipher]], share: MaskShare
) -> tuple[list[list[Cipher]], list[list[int]]]:
    """``Enc(u_k + a_k)``, re-randomized; also returns each factor's exponent ``α``."""
    if len(vectors) != len(share.masks):
        raise DeltaMLValueError("one mask per vector")
    n, n2 = key._n, key._nsquare
    out, alphas = [], []
    for vector, mask in zip(vectors, share.masks, strict=True):
        if len(vector) != len(mask):
            raise DeltaMLValueError("one mask entry per ciphertext")
        row, row_alphas = [], []
        for c, a in zip(vector, mask, strict=True):
            factor, alpha = key.random_factor_with_exponent()
            row.append(c * ((1 + a * n) % n2) % n2 * factor % n2)
            row_alphas.append(alpha)
        out.append(row)
        alphas.append(row_alphas)
    return out, alphas


def add_masks_with_proof(
    key: PublicKey, context: bytes, vectors: Sequence[Sequence[Cipher]], share: MaskShare
) -> tuple[list[list[Cipher]], AddedPlaintextProof]:
    """The second holder's :func:`add_masks`, with the proof that it knows what it added."""
    out, alphas = add_masks(key, vectors, share)
    proof = prove_added_plaintexts(
        key,
        context,
        [c for v in vectors for c in v],
        [c for v in out for c in v],
        [a for m in share.masks for a in m],
        [al for row in alphas for al in row],
    )
    return out, proof


def key_holder_products(
    private_key: PrivateKey,
    gram: EncryptedGram,
    masked: Sequence[Sequence[Cipher]],
    pairs: Sequence[Pair],
    packing_exponent: int,
) -> tuple[PackedOpening, list[list[int]], list[list[Cipher]], list[Cipher]]:
    """The key holder's step: ``ũ`` decrypted packed at ``packing_exponent``, with its
    proof (:mod:`deltaml.crypto.packing`: a value beyond that exponent's magnitude bound
    raises :class:`PackingError`), then ``Enc(Hũ_k)`` for every ``k`` and
    ``Enc(ũ_kᵀHũ_t)`` per pair.

    The products are a deterministic function of ``gram`` and ``ũ``, so publishing the
    opening lets anyone recompute them (:func:`public_products`).
    """
    check_pairs(pairs, len(masked))
    opening = prove_packed_decryption(
        private_key, [([c for v in masked for c in v], packing_exponent)]
    )
    size = len(masked[0])
    values = opening.values[0]
    opened = [values[i * size : (i + 1) * size] for i in range(len(masked))]
    products, terms = public_products(gram, opened, pairs, private_key)
    return opening, opened, products, terms


def _dots(
    jobs: Sequence[tuple[object, Sequence[Cipher], Sequence[int]]], n2: gmpy2.mpz
) -> list[Cipher]:
    """``Enc(xᵀv)`` for every job ``(bases id, Enc(v), x)``, in order: the jobs that share
    their bases go through one multi-exponentiation (its window tables shared)."""
    groups: dict[object, list[int]] = {}
    for i, (ident, _, _) in enumerate(jobs):
        groups.setdefault(ident, []).append(i)
    out: list[Cipher] = [gmpy2.mpz(1)] * len(jobs)
    for members in groups.values():
        bases = list(jobs[members[0]][1])
        for i, value in zip(
            members, multi_exp(bases, [list(jobs[i][2]) for i in members], n2), strict=True
        ):
            out[i] = value
    return out


def public_products(
    gram: EncryptedGram,
    opened: Sequence[Sequence[int]],
    pairs: Sequence[Pair],
    private_key: PrivateKey | None = None,
) -> tuple[list[list[Cipher]], list[Cipher]]:
    """``Enc(Hũ_k)`` and ``Enc(ũ_kᵀHũ_t)`` from ``Enc(H)`` and the plaintexts ``ũ`` (the
    key holder passes its ``private_key`` for speed; the ciphertexts are the same)."""
    n2 = gram.public_key._nsquare
    products = gram.times(opened, private_key)
    ext, ints = _with_sum(products, n2), _ints_with_sum(opened)
    terms = _dots([(t, ext[t], ints[k]) for k, t in pairs], n2)
    return products, terms


def _quotient(
    numerators: Sequence[Sequence[Cipher]], denominator: Sequence[Cipher], n2: gmpy2.mpz
) -> list[Cipher]:
    """Entrywise ``Π numerators / denominator``: the plaintexts' sum minus one vector's."""
    out = [gmpy2.invert(c, n2) for c in denominator]
    for vector in numerators:
        out = [a * b % n2 for a, b in zip(out, vector, strict=True)]
    return out


def correction(
    key: PublicKey,
    gram: EncryptedGram,
    share: MaskShare,
    own_products: Sequence[Sequence[Cipher]],
    products: Sequence[Sequence[Cipher]],
    pairs: Sequence[Pair],
    other_products: Sequence[Sequence[Cipher]] | None,
) -> list[Cipher]:
    """One holder's share of every ``B(k, t)`` minus the key holder's term.

    ``own_products`` is ``Enc(H·a_k)`` for this holder's masks (``gram.times`` of them),
    ``products`` the key holder's ``Enc(Hũ_k)``; ``other_products`` is the second
    holder's ``Enc(H·a²_k)`` for the first holder (who takes the cross terms) and
    ``None`` for the second. The share is ``a_kᵀY_t + a_tᵀZ_k`` with
    ``Y = Enc(H(a + a²) − Hũ)`` and ``Z = Enc(Ha² − Hũ)`` for the first holder,
    ``Y = Enc(Ha − Hũ)`` and ``Z = Enc(−Hũ)`` for the second; a pair ``(k, k)`` is one
    product ``a_kᵀ(Y_k + Z_k)``, and the pairs that share ``Y_t`` (every ``(k, Σ)``) one
    multi-exponentiation.
    """
    n2 = key._nsquare
    masks = _ints_with_sum(share.masks)
    prod, own = _with_sum(products, n2), _with_sum(own_products, n2)
    other = [] if other_products is None else [_with_sum(other_products, n2)]
    cache: dict[tuple[str, int], list[Cipher]] = {}

    def y(t: int) -> list[Cipher]:
        if ("y", t) not in cache:
            cache["y", t] = _quotient([own[t], *(o[t] for o in other)], prod[t], n2)
        return cache["y", t]

    def z(k: int) -> list[Cipher]:
        if ("z", k) not in cache:
            cache["z", k] = _quotient([o[k] for o in other], prod[k], n2)
        return cache["z", k]

    jobs: list[tuple[object, Sequence[Cipher], Sequence[int]]] = []
    for k, t in pairs:
        if k == t:
            both = [a * b % n2 for a, b in zip(y(t), z(k), strict=True)]
            jobs += [(("yz", k), both, masks[k]), ("one", [gmpy2.mpz(1)], [0])]
        else:
            jobs += [(("y", t), y(t), masks[k]), (("z", k), z(k), masks[t])]
    values = _dots(jobs, n2)
    return [values[2 * i] * values[2 * i + 1] % n2 for i in range(len(pairs))]


def combine(key: PublicKey, *shares: Sequence[Cipher]) -> list[Cipher]:
    """The second holder's last step: every pair's terms added, re-randomized."""
    n2 = key._nsquare
    out = []
    for terms in zip(*shares, strict=True):
        value = gmpy2.mpz(1)
        for c in terms:
            value = value * c % n2
        out.append(value * key.random_factor() % n2)
    return out
