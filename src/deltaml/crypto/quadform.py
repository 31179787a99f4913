r"""Bilinear forms ``u_kᵀ H u_t`` of encrypted vectors and an encrypted matrix.

Validation error without the validators in every evaluation
-----------------------------------------------------------
A validator's rows enter a model's squared error only through its Gram matrix
``H_v = R_vᵀR_v`` (``R_v`` its triangular factor of ``[X 1 y]``): ``SSE(w) = uᵀHu``
with ``u = [w; −1]`` and ``H = Σ_v H_v``. Each validator sends ``Enc(H_v)`` once per
request (:class:`EncryptedGram`) — to the aggregator and the mask holders, never to the
key holder; their sum is one ``D × D`` encrypted matrix whatever the number of
validators. What is left is a product of two encrypted
things, ``H`` and ``u``: the key holder helps, seeing only uniformly masked values.

The masked product, with two mask holders
-----------------------------------------
For vectors ``u_1 … u_K`` (encrypted, integers) and a list of index pairs ``(k, t)``
— an index may be :data:`SUM`, ``Σ_k u_k`` — the parties compute every
``B(k, t) = u_kᵀHu_t``. Two **mask holders** (two validators a public rule names; the
aggregator is the first when there is only one) each draw a uniform mask per vector,
:data:`~deltaml.crypto.vector.MASK_STATISTICAL_BITS` wider than the values. The key
holder never receives ``Enc(H)`` or anything computed from it but the finished forms:
it could decrypt them.

1. The first holder adds ``a¹_k`` (:func:`add_masks_with_proof`); the second adds
   ``a²_k``. Each re-randomizes and proves it knows what it added
   (:mod:`deltaml.crypto.knowledge`); the second computes ``Q_k = Enc(H a²_k)``.
2. The key holder decrypts ``ũ_k = u_k + a¹_k + a²_k`` — statistically nothing without
   both masks — and publishes it with its proof (:func:`open_masked`).
3. The first holder knows ``v_k = ũ_k − a¹_k = u_k + a²_k`` and computes
   ``V_k = Enc(H v_k)``. Since ``u = v − a²``,
   ``B(k, t) = v_kᵀHv_t − v_tᵀHa²_k − v_kᵀHa²_t + a²_kᵀHa²_t``: the first holder's share
   is the first three terms (from ``V`` and ``Q``), the second's the last (from ``Q``)
   (:func:`first_share`, :func:`second_share`). ``V`` and ``Q`` need nothing of each
   other: the two holders compute them at once (:func:`first_products`).
4. The second holder adds both shares, re-randomizes (:func:`combine`) and signs
   ``Enc(B(k, t))``; the key holder decrypts those and nothing else.

Cost: one ``Enc(H·x)`` per vector for each holder (``K·D²`` exponentiations with
exponents of the masks' width, sharing one window table per entry of ``Enc(H)``) and
``O(D)`` more per pair — independent of the validators; the key holder only decrypts.
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
#: A dot product to compute: ``(bases id, Enc(v), x)`` for ``Enc(xᵀv)``.
Job: TypeAlias = tuple[object, Sequence[Cipher], Sequence[int]]


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

    def times(self, columns: Sequence[Sequence[int]]) -> list[list[Cipher]]:
        """``Enc(H·x)`` for every integer vector ``x`` in ``columns``; each entry's window
        table is shared by every column."""
        if any(len(x) != self.size for x in columns):
            raise DeltaMLValueError(f"every vector needs {self.size} values")
        rows = [list(x) for x in columns]
        out: list[list[Cipher]] = [[] for _ in columns]
        n2 = self.public_key._nsquare
        for row in self.rows():
            for k, value in enumerate(multi_exp(row, rows, n2)):
                out[k].append(value)
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
    """A holder's :func:`add_masks`, with the proof that it knows what it added."""
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


def open_masked(
    private_key: PrivateKey, masked: Sequence[Sequence[Cipher]], packing_exponent: int
) -> tuple[PackedOpening, list[list[int]]]:
    """The key holder's step: ``ũ`` decrypted packed at ``packing_exponent``, with its
    proof (:mod:`deltaml.crypto.packing`: a value beyond that exponent's magnitude bound
    raises :class:`PackingError`)."""
    opening = prove_packed_decryption(
        private_key, [([c for v in masked for c in v], packing_exponent)]
    )
    size = len(masked[0])
    values = opening.values[0]
    return opening, [values[i * size : (i + 1) * size] for i in range(len(masked))]


def _dots(jobs: Sequence[Job], n2: gmpy2.mpz) -> list[Cipher]:
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


def _sums(groups: Sequence[Sequence[Job]], n2: gmpy2.mpz) -> list[Cipher]:
    """Per group of jobs, the sum of their dots (:func:`_dots`, all at once)."""
    values = iter(_dots([job for group in groups for job in group], n2))
    out = []
    for group in groups:
        acc = gmpy2.mpz(1)
        for _ in group:
            acc = acc * next(values) % n2
        out.append(acc)
    return out


def second_share(
    key: PublicKey, share: MaskShare, products: Sequence[Sequence[Cipher]], pairs: Sequence[Pair]
) -> list[Cipher]:
    """The second holder's share of every pair, ``a²_kᵀQ_t`` with ``Q = Enc(H a²)``
    (``products``, :meth:`EncryptedGram.times` of its masks)."""
    check_pairs(pairs, len(share.masks))
    n2 = key._nsquare
    masks, q = _ints_with_sum(share.masks), _with_sum(products, n2)
    return _dots([(t, q[t], masks[k]) for k, t in pairs], n2)


def first_products(
    gram: EncryptedGram, share: MaskShare, opened: Sequence[Sequence[int]]
) -> tuple[list[list[int]], list[list[Cipher]]]:
    """The first holder's ``v = ũ − a¹`` (``opened`` is ``ũ``) and ``V = Enc(Hv)``: its one
    ``Enc(H·x)`` per vector, which needs nothing of the second holder's."""
    if len(opened) != len(share.masks):
        raise DeltaMLValueError("one opened vector per mask")
    v = [
        [x - a for x, a in zip(u, m, strict=True)] for u, m in zip(opened, share.masks, strict=True)
    ]
    return v, gram.times(v)


def first_share(
    key: PublicKey,
    v: Sequence[Sequence[int]],
    products: Sequence[Sequence[Cipher]],
    second_products: Sequence[Sequence[Cipher]],
    pairs: Sequence[Pair],
) -> list[Cipher]:
    """The first holder's share of every pair, ``v_kᵀV_t − v_tᵀQ_k − v_kᵀQ_t`` with ``v``
    and ``V = Enc(Hv)`` from :func:`first_products` and ``Q`` the second holder's
    ``Enc(H a²)``. A pair ``(k, k)`` is one product ``v_kᵀ(V_k − 2Q_k)``; the pairs that
    share ``t`` (every ``(k, Σ)``) share one multi-exponentiation."""
    check_pairs(pairs, len(v))
    if len(products) != len(v) or len(second_products) != len(v):
        raise DeltaMLValueError("one product of each holder's per vector")
    n2 = key._nsquare
    ints = _ints_with_sum(v)
    big_v, q = _with_sum(products, n2), _with_sum(second_products, n2)
    cache: dict[tuple[int, int], list[Cipher]] = {}

    def minus_q(i: int, times: int) -> list[Cipher]:
        """``Enc(V_i − times·Q_i)``."""
        if (i, times) not in cache:
            cache[i, times] = [
                a * gmpy2.powmod(b, -times, n2) % n2 for a, b in zip(big_v[i], q[i], strict=True)
            ]
        return cache[i, times]

    groups: list[list[Job]] = [
        [(("vq2", k), minus_q(k, 2), ints[k])]
        if k == t
        else [(("vq1", t), minus_q(t, 1), ints[k]), (("q", k), q[k], [-x for x in ints[t]])]
        for k, t in pairs
    ]
    return _sums(groups, n2)


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
