r"""Encrypted vectors: one public key, one fixed-point exponent, one precision bound.

An :class:`EncryptedVector` holds ciphertexts of integers ``v_i`` that stand for
the reals ``v_i / 2^exponent``, and an exact integer ``bound`` with
``|v_i| ≤ bound`` for every ``i``. Every operation derives the bound of its
result from the bounds of its inputs (``|Σ a_ij v_j| ≤ max_i Σ_j |a_ij| · bound``)
and refuses, with :class:`~deltaml.errors.PrecisionBudgetError`, any result
whose bound would reach the key's ``max_int = n/3``. So no value can overflow
silently: it is either refreshed in time (:func:`mask_for_refresh`,
:func:`refresh_masked`, :meth:`EncryptedVector.unmask`) or refused.

Products with plaintext scalars are deterministic; :meth:`EncryptedVector.rerandomize`
must be called on anything that leaves its party.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
import numpy as np

from deltaml.crypto.encoding import PlainMatrix, decode_array, encode_array, rescale
from deltaml.crypto.multiexp import multi_exp
from deltaml.crypto.paillier import PrivateKey, PublicKey
from deltaml.errors import (
    DeltaMLTypeError,
    DeltaMLValueError,
    KeyMismatchError,
    PrecisionBudgetError,
)

#: Ciphertext operations done in this process, by kind (for benchmarks and reports):
#: ``scalar_mul`` counts ciphertext × plaintext-integer products (a matrix–vector
#: product of ``r × c`` non-zero entries counts ``r·c``), ``encrypt``, ``decrypt`` and
#: ``rerandomize`` count values.
OPERATION_COUNTS: Counter[str] = Counter()

#: Statistical hiding of refresh masks, in bits (the masked value reveals < 2^-80).
MASK_STATISTICAL_BITS = 80


def _check_bound(public_key: PublicKey, bound: int, what: str) -> None:
    if bound >= public_key.max_int:
        raise PrecisionBudgetError(
            f"{what} needs {bound.bit_length()} bits but the key's budget is "
            f"{public_key.max_int.bit_length() - 1}: refresh the vector first"
        )


@dataclass(eq=False)
class EncryptedVector:
    """Ciphertexts of ``round(x_i · 2^exponent)`` under one public key, with a bound."""

    public_key: PublicKey
    ciphertexts: list[gmpy2.mpz]
    exponent: int
    bound: int

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, PublicKey):
            raise DeltaMLTypeError("public_key must be a PublicKey")
        if self.bound < 0:
            raise DeltaMLValueError("bound must be non-negative")
        _check_bound(self.public_key, self.bound, "this vector")

    def __len__(self) -> int:
        return len(self.ciphertexts)

    @property
    def headroom_bits(self) -> int:
        """Bits left before the bound reaches the key's budget."""
        return self.public_key.max_int.bit_length() - 1 - max(self.bound, 1).bit_length()

    # -- construction --------------------------------------------------------------
    @classmethod
    def encrypt(
        cls, public_key: PublicKey, values: Sequence[float] | np.ndarray, exponent: int
    ) -> EncryptedVector:
        ints = encode_array(np.asarray(values, dtype=np.float64).ravel(), exponent)
        return cls.encrypt_ints(public_key, ints, exponent)

    @classmethod
    def encrypt_ints(
        cls, public_key: PublicKey, ints: Sequence[int], exponent: int
    ) -> EncryptedVector:
        bound = max((abs(v) for v in ints), default=0)
        _check_bound(public_key, bound, "the plaintext")
        cts = [public_key.raw_encrypt(public_key.encode_signed(v)) for v in ints]
        OPERATION_COUNTS["encrypt"] += len(cts)
        return cls(public_key, cts, exponent, bound)

    @classmethod
    def concat(cls, vectors: Sequence[EncryptedVector]) -> EncryptedVector:
        """Join vectors of one key, aligned to the largest exponent."""
        if not vectors:
            raise DeltaMLValueError("nothing to concatenate")
        key = vectors[0].public_key
        exponent = max(v.exponent for v in vectors)
        for v in vectors:  # refuse before aligning anything
            v._check_key(key)
            _check_bound(key, v.bound << (exponent - v.exponent), "aligning the exponent")
        aligned = [v.align(exponent) for v in vectors]
        return cls(
            key,
            [c for v in aligned for c in v.ciphertexts],
            exponent,
            max(v.bound for v in aligned),
        )

    def split(self, sizes: Sequence[int]) -> list[EncryptedVector]:
        if any(size < 0 for size in sizes) or sum(sizes) != len(self):
            raise DeltaMLValueError("sizes do not add up to the vector's length")
        out, start = [], 0
        for size in sizes:
            out.append(
                EncryptedVector(
                    self.public_key,
                    self.ciphertexts[start : start + size],
                    self.exponent,
                    self.bound,
                )
            )
            start += size
        return out

    # -- arithmetic ------------------------------------------------------------------
    def _check_key(self, key: PublicKey) -> EncryptedVector:
        if self.public_key != key:
            raise KeyMismatchError("the vectors are encrypted under different keys")
        return self

    def align(self, exponent: int) -> EncryptedVector:
        """Raise the exponent (exact: multiplies every value by ``2^Δ``)."""
        delta = exponent - self.exponent
        if delta < 0:
            raise DeltaMLValueError("cannot lower an exponent without decrypting")
        if delta == 0:
            return self
        bound = self.bound << delta
        _check_bound(self.public_key, bound, "aligning the exponent")
        n2 = self.public_key._nsquare
        factor = 1 << delta
        cts = [gmpy2.powmod(c, factor, n2) for c in self.ciphertexts]
        return EncryptedVector(self.public_key, cts, exponent, bound)

    def _sum_shape(self, other: EncryptedVector) -> tuple[int, int]:
        """Exponent and bound of ``self ± other``, checked before any ciphertext is touched."""
        other._check_key(self.public_key)
        if len(other) != len(self):
            raise DeltaMLValueError(f"length mismatch: {len(self)} vs {len(other)}")
        exponent = max(self.exponent, other.exponent)
        bound = (self.bound << (exponent - self.exponent)) + (
            other.bound << (exponent - other.exponent)
        )
        _check_bound(self.public_key, bound, "the sum")
        return exponent, bound

    def __add__(self, other: EncryptedVector) -> EncryptedVector:
        if not isinstance(other, EncryptedVector):
            return NotImplemented
        exponent, bound = self._sum_shape(other)
        a, b = self.align(exponent), other.align(exponent)
        n2 = self.public_key._nsquare
        return EncryptedVector(
            self.public_key,
            [x * y % n2 for x, y in zip(a.ciphertexts, b.ciphertexts, strict=True)],
            exponent,
            bound,
        )

    def __radd__(self, other: object) -> EncryptedVector:
        if other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    def __neg__(self) -> EncryptedVector:
        n2 = self.public_key._nsquare
        return EncryptedVector(
            self.public_key,
            [gmpy2.invert(c, n2) for c in self.ciphertexts],
            self.exponent,
            self.bound,
        )

    def __sub__(self, other: EncryptedVector) -> EncryptedVector:
        if not isinstance(other, EncryptedVector):
            return NotImplemented
        self._sum_shape(other)  # refuse before negating
        return self + (-other)

    def add_ints(self, ints: Sequence[int]) -> EncryptedVector:
        """Add plaintext integers already encoded at this vector's exponent."""
        if len(ints) != len(self):
            raise DeltaMLValueError(f"length mismatch: {len(self)} vs {len(ints)}")
        bound = self.bound + max((abs(v) for v in ints), default=0)
        _check_bound(self.public_key, bound, "adding plaintexts")
        pk = self.public_key
        n, n2 = pk._n, pk._nsquare
        cts = [
            c * ((1 + pk.encode_signed(v) * n) % n2) % n2
            for c, v in zip(self.ciphertexts, ints, strict=True)
        ]
        return EncryptedVector(pk, cts, self.exponent, bound)

    def add_plain(self, values: Sequence[float] | np.ndarray) -> EncryptedVector:
        """Add plaintext reals, encoded at this vector's exponent."""
        return self.add_ints(
            encode_array(np.asarray(values, dtype=np.float64).ravel(), self.exponent)
        )

    def mul_int(self, k: int) -> EncryptedVector:
        """Multiply every value by the integer ``k`` (exact; the exponent does not change)."""
        bound = self.bound * abs(k)
        _check_bound(self.public_key, bound, "the integer product")
        n2 = self.public_key._nsquare
        OPERATION_COUNTS["scalar_mul"] += len(self)
        if k >= 0:
            cts = [gmpy2.powmod(c, k, n2) for c in self.ciphertexts]
        else:
            cts = [gmpy2.powmod(gmpy2.invert(c, n2), -k, n2) for c in self.ciphertexts]
        return EncryptedVector(self.public_key, cts, self.exponent, bound)

    def matvec(self, matrix: PlainMatrix) -> EncryptedVector:
        """``A · v`` for a plaintext matrix: the result's exponent is the sum of both."""
        cols = matrix.shape[1]
        if cols != len(self):
            raise DeltaMLValueError(
                f"matrix has {cols} columns but the vector has {len(self)} values"
            )
        bound = matrix.max_abs_row_sum() * self.bound
        _check_bound(self.public_key, bound, "the matrix product")
        cts = multi_exp(self.ciphertexts, matrix.entries, self.public_key._nsquare)
        OPERATION_COUNTS["scalar_mul"] += sum(1 for row in matrix.entries for v in row if v)
        return EncryptedVector(self.public_key, cts, self.exponent + matrix.exponent, bound)

    def rerandomize(self) -> EncryptedVector:
        """Multiply each ciphertext by a fresh ``r^n``: same plaintexts, unlinkable ciphertexts."""
        pk = self.public_key
        n2 = pk._nsquare
        OPERATION_COUNTS["rerandomize"] += len(self)
        return EncryptedVector(
            pk, [c * pk.random_factor() % n2 for c in self.ciphertexts], self.exponent, self.bound
        )

    def rerandomize_with_exponents(self) -> tuple[EncryptedVector, list[int]]:
        """:meth:`rerandomize`, also returning each factor's exponent ``α_i``.

        The result is ``c_i · h_s^{α_i}``; publishing the ``α_i`` later lets anyone check
        that the output encrypts what the input did
        (:func:`~deltaml.crypto.proofs.failed_rerandomizations`) and reveals no plaintext.
        """
        pk = self.public_key
        n2 = pk._nsquare
        OPERATION_COUNTS["rerandomize"] += len(self)
        out, exponents = [], []
        for c in self.ciphertexts:
            factor, alpha = pk.random_factor_with_exponent()
            out.append(c * factor % n2)
            exponents.append(alpha)
        return EncryptedVector(pk, out, self.exponent, self.bound), exponents

    # -- decryption ------------------------------------------------------------------
    def decrypt_ints(self, private_key: PrivateKey) -> list[int]:
        if private_key.public_key != self.public_key:
            raise KeyMismatchError("this private key does not belong to the vector's public key")
        OPERATION_COUNTS["decrypt"] += len(self)
        return [private_key.decrypt_signed(c) for c in self.ciphertexts]

    def decrypt(self, private_key: PrivateKey) -> np.ndarray:
        return decode_array(self.decrypt_ints(private_key), self.exponent)

    # -- refresh ---------------------------------------------------------------------
    def unmask(
        self, mask: Sequence[int], source_bound: int, source_exponent: int
    ) -> EncryptedVector:
        """Remove a refresh mask from a refreshed vector (see :func:`mask_for_refresh`).

        The bound is recomputed from the holder's own knowledge (the bound of the
        vector before masking), never taken from the refreshing party.
        """
        refreshed = self.add_ints([-m for m in mask])
        bound = rescale(source_bound, source_exponent, self.exponent) + 1
        return EncryptedVector(self.public_key, refreshed.ciphertexts, self.exponent, bound)


def refresh_mask_bits(vector: EncryptedVector, base_exponent: int) -> int:
    """Bits of the mask's high part: what hides ``vector`` rescaled to ``base_exponent``.

    The whole mask (:func:`mask_for_refresh`) has ``e − e₀`` more bits below these.
    """
    return (
        rescale(vector.bound, vector.exponent, base_exponent) + 1
    ).bit_length() + MASK_STATISTICAL_BITS


def needs_refresh(vector: EncryptedVector, next_growth_bits: int) -> bool:
    """True when, after ``next_growth_bits`` more of growth, the vector could no longer be masked.

    A refresh mask is ``MASK_STATISTICAL_BITS`` wider than the value it hides, so the
    vector must be refreshed while ``bound · 2^(growth + mask bits)`` still fits the key.
    """
    need = vector.bound.bit_length() + next_growth_bits + MASK_STATISTICAL_BITS + 3
    return need >= vector.public_key.max_int.bit_length() - 1


def mask_for_refresh(
    vector: EncryptedVector, base_exponent: int
) -> tuple[EncryptedVector, list[int]]:
    r"""Hide ``vector`` for the key holder: add ``u_i`` uniform over **every** bit.

    With ``s = e − e₀`` and ``M`` = :func:`refresh_mask_bits`, each ``u_i`` is uniform
    in ``[0, 2^{M+s})``: ``M + s ≥ bits(bound) + 80``, so the key holder's decryption
    ``v_i + u_i`` is within statistical distance ``2·bound / 2^{M+s} < 2^{-79}`` of a
    value independent of ``v_i`` — low bits included. (The mask used to be
    ``μ_i·2^s``: then ``v_i mod 2^s`` showed through exactly.)

    Write ``u_i = h_i·2^s + l_i`` with ``0 ≤ l_i < 2^s``. The key holder re-encrypts
    ``⌊(v_i + u_i) / 2^s⌋ = h_i + ⌊(v_i + l_i) / 2^s⌋`` (:func:`refresh_masked`) and
    the holder removes ``h_i``, the mask this function returns
    (:meth:`EncryptedVector.unmask`). What remains, ``⌊v_i/2^s + l_i/2^s⌋``, is
    ``v_i`` *stochastically rounded* to ``e₀``: ``⌊v_i / 2^s⌋`` plus one with
    probability exactly ``(v_i mod 2^s) / 2^s``. So a refresh is unbiased
    (``E = v_i / 2^s``) and off by less than one unit at ``e₀`` (``2^{-e₀}``);
    round-to-nearest (off by half a unit) cannot be had without showing the key
    holder the bits that decide it. The refreshed value is never the holder's or
    the key holder's choice: it is a function of ``v_i`` and the secret ``l_i``.

    The precision budget is unchanged: ``|v_i + u_i| < bound + 2^{M+s}``, the same
    width the shifted mask had, and :func:`needs_refresh` keeps room for it.
    Returns the masked vector (re-randomized, ready to send) and the high parts
    ``h`` (kept secret).
    """
    shift = vector.exponent - base_exponent
    if shift < 0:
        raise DeltaMLValueError("base exponent above the vector's exponent")
    bits = refresh_mask_bits(vector, base_exponent) + shift
    offsets = [secrets.randbits(bits) for _ in range(len(vector))]
    masked = vector.add_ints(offsets)
    return masked.rerandomize(), [u >> shift for u in offsets]


def refresh_masked(
    masked: EncryptedVector, private_key: PrivateKey, base_exponent: int
) -> EncryptedVector:
    """The key holder's half of a refresh: decrypt, floor to ``base_exponent``, re-encrypt.

    The floor (not the nearest) is what makes a refresh an unbiased stochastic
    rounding under a mask uniform over every bit (see :func:`mask_for_refresh`).
    """
    shift = masked.exponent - base_exponent
    if shift < 0:
        raise DeltaMLValueError("base exponent above the vector's exponent")
    floored = [v >> shift for v in masked.decrypt_ints(private_key)]
    return EncryptedVector.encrypt_ints(masked.public_key, floored, base_exponent)
