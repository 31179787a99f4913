r"""One-shot exact training: solve ``H w = g`` once over ℤₙ with the key holder's help.

The training objective is quadratic (:class:`~deltaml.learning.models.QuadraticTerms`),
so its optimum solves ``H w = g`` with ``H = Σ_i H_i`` and ``g = Σ_i g_i``. Following
Giacomelli, Jha, Joye, Page and Yoon (*Privacy-preserving ridge regression with only
linearly-homomorphic encryption*, ACNS 2018), see ``docs/exactness.md``:

1. the aggregator draws a secret ``L`` uniform in ``GL_d(ℤₙ)``, a diagonal ``D`` of
   uniform units, a check vector ``c`` and zero-sum shares ``z_i``, and sends each trainer its
   :class:`TrainerMask` (never the buyer);
2. each trainer encrypts its ``H_i``, ``g_i`` as integers at precision ``2^-p``
   (:func:`encrypt_system`, kept for the check) and its masked vector
   ``[L H_i D; L g_i; H_i c; cᵀg_i] + z_i`` (:func:`trainer_masked_system`); the
   aggregator sums both (:func:`sum_systems`, :func:`sum_ciphertexts`);
3. the buyer decrypts only the summed solve part ``LHD``, ``Lg`` (see :class:`Mask`: it
   tells nothing about ``H``, ``g`` or ``w``), solves it mod n and returns ``Enc(u)``
   (:meth:`ExactBuyer.solve_masked`), ``u = D⁻¹H⁻¹g``;
4. the aggregator unmasks ``Enc(w_j) = Enc(u_j)^{D_j}`` (:func:`unmask`), ``w = H⁻¹g mod n``;
5. the buyer decrypts ``w``, checks ``(Hc)ᵀw = cᵀg`` with the check part it kept and
   recovers the rational ``H⁻¹g`` by rational reconstruction
   (:meth:`ExactBuyer.final_weights`).

Anyone holding the summed ciphertexts and ``w`` checks the result by its defining
property: ``Enc(H)·w − Enc(g)`` (:func:`residual`) must decrypt to 0.
:func:`mask_system` is the aggregator-side variant (the aggregator masks ``Enc(H)``
itself with full-size exponents: no trainer sees the mask, ~6× slower).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import gmpy2
import numpy as np

from deltaml.crypto.multiexp import multi_exp
from deltaml.crypto.paillier import PrivateKey, PublicKey
from deltaml.errors import DeltaMLValueError
from deltaml.learning.models import QuadraticTerms
from deltaml.learning.ring import det_mod, rational_reconstruction, solve_mod

if TYPE_CHECKING:
    from deltaml.learning.exact_parts import TrainerParts

#: Bits kept for ``log₂ max|w|`` and the sign when sizing the precision.
WEIGHT_MARGIN_BITS = 80
#: 2⁻²⁸ leaves an objective gap ≤ 10⁻¹⁴ (diabetes, the 20,000 × 30 split; docs/exactness.md),
#: far below the 10⁻⁶ target, and keeps the trainers' exponents short.
MAX_PRECISION_BITS = 28
#: Window of the full-size multi-exponentiation (unmasking): 8 bits beat the
#: row-count default by a third for 2048-bit exponents (measured, d = 11).
FULL_SIZE_WINDOW_BITS = 8
#: Threads that decrypt the masked system (the buyer's machine has cores too).
DECRYPT_THREADS = 2


def precision_for(key_bits: int, d: int) -> int:
    """The encoding precision ``p`` such that reconstruction is unique.

    ``det H ≤ 1`` for standardized features (Hadamard's bound on a PSD matrix with
    diagonal ≤ 1), so ``det(H_int) ≤ 2^{pd}`` and every numerator ``≤ max|w|·2^{pd}``;
    rational reconstruction needs ``2·num·den < n``.
    """
    p = min(MAX_PRECISION_BITS, (key_bits - 2 - WEIGHT_MARGIN_BITS) // (2 * d))
    if p < 12:
        raise DeltaMLValueError(
            f"{d} weights are too many for an exact solve with {key_bits}-bit keys "
            "(use a larger key or the iterative solver)"
        )
    return p


@dataclass(frozen=True)
class EncryptedSystem:
    """``Enc(H)`` (``d × d``) and ``Enc(G)`` as raw ciphertexts, at precision ``2^-p``.

    ``G`` has one column per model solved together (``H W = G``; one for a regression,
    ``K`` for a ``K``-class model), row-major in ``linear``.
    """

    hessian: tuple[tuple[int, ...], ...]
    linear: tuple[int, ...]
    precision_bits: int

    @property
    def size(self) -> int:
        return len(self.hessian)

    @property
    def columns(self) -> int:
        return len(self.linear) // max(len(self.hessian), 1)


def _encode(x: float, p: int) -> int:
    return round(x * (1 << p))


def columns_of(terms: QuadraticTerms) -> int:
    """How many models ``terms`` solves together: the columns of its ``linear`` part
    (a vector: one; a ``d × K`` matrix: ``K``)."""
    linear = np.asarray(terms.linear)
    return 1 if linear.ndim == 1 else int(linear.shape[1])


def system_integers(
    terms: QuadraticTerms, precision_bits: int
) -> tuple[list[list[int]], list[list[int]]]:
    """``H_i`` and ``G_i`` (``d × K``) as integers at precision ``2^-p`` (what a trainer
    encrypts)."""
    d = len(terms.hessian)
    h = [[_encode(terms.hessian[i, k], precision_bits) for k in range(d)] for i in range(d)]
    rhs = np.asarray(terms.linear, dtype=np.float64).reshape(d, -1)
    return h, [[_encode(v, precision_bits) for v in row] for row in rhs]


def draw_factors(public_key: PublicKey, count: int) -> list[gmpy2.mpz]:
    """``count`` fresh ``r^n mod n²``: data-independent, so a party draws them in advance
    (while the request is being accepted), and encrypting is then one product each."""
    return [public_key.random_factor() for _ in range(count)]


def _encrypt_with(public_key: PublicKey, value: int, factor: gmpy2.mpz) -> int:
    nsq = public_key.nsquare
    return int((1 + public_key.encode_signed(value) * public_key.n) % nsq * factor % nsq)


def system_factor_count(d: int, columns: int = 1) -> int:
    """Randomizers a trainer draws in advance: ``Enc(H_i)`` (upper triangle) and ``Enc(G_i)``."""
    return d * (d + 1) // 2 + d * columns


def encrypt_system(
    terms: QuadraticTerms,
    public_key: PublicKey,
    precision_bits: int,
    factors: Sequence[gmpy2.mpz] | None = None,
) -> EncryptedSystem:
    """A trainer's ``Enc(H_i)``, ``Enc(g_i)``: the upper triangle, mirrored (H is symmetric).

    ``factors`` (:func:`system_factor_count` of them, from :func:`draw_factors`) are the
    randomizers drawn in advance; without them fresh ones are drawn here.
    """
    h, g = system_integers(terms, precision_bits)
    d, k = len(g), len(g[0])
    pool = iter(
        factors if factors is not None else draw_factors(public_key, system_factor_count(d, k))
    )
    upper = {
        (i, j): _encrypt_with(public_key, h[i][j], next(pool))
        for i in range(d)
        for j in range(i, d)
    }
    hessian = tuple(tuple(upper[min(i, j), max(i, j)] for j in range(d)) for i in range(d))
    linear = tuple(_encrypt_with(public_key, v, next(pool)) for row in g for v in row)
    return EncryptedSystem(hessian, linear, precision_bits)


def sum_systems(systems: Sequence[EncryptedSystem], public_key: PublicKey) -> EncryptedSystem:
    """The aggregator's sum (recomputable by anyone from the trainers' signed ciphertexts)."""
    if not systems or len({s.precision_bits for s in systems}) != 1:
        raise DeltaMLValueError("systems to sum must share one precision")
    nsq = public_key.nsquare
    d = systems[0].size
    hessian = tuple(
        tuple(int(math.prod(s.hessian[i][j] for s in systems) % nsq) for j in range(d))
        for i in range(d)
    )
    linear = tuple(
        int(math.prod(column) % nsq) for column in zip(*(s.linear for s in systems), strict=True)
    )
    return EncryptedSystem(hessian, linear, systems[0].precision_bits)


@dataclass(frozen=True)
class Mask:
    """The aggregator's secret: ``L ∈ GL_d(ℤₙ)`` and the diagonal ``D`` (units of ℤₙ).

    The buyer sees ``M = L·H·D`` — uniform over ``GL_d(ℤₙ)`` whatever ``H`` is (``L``
    uniform, ``H·D`` invertible) — and ``b = L·g = M·u`` with ``u = D⁻¹w``: each
    ``u_j = w_j / D_j`` is a uniform unit, independent of the others, for ``w_j ≠ 0``.
    So the masked system tells the buyer nothing about ``H``, ``g`` or the model but
    which weights are exactly 0; unmasking is ``d`` exponentiations (``w_j = D_j·u_j``).
    """

    matrix: tuple[tuple[int, ...], ...] = field(repr=False)
    scale: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class MaskedSystem:
    """``Enc(L·H·D)`` and ``Enc(L·g)``: what the buyer may decrypt."""

    matrix: tuple[tuple[int, ...], ...]
    vector: tuple[int, ...]


def random_mask(public_key: PublicKey, d: int) -> Mask:
    """Uniform ``L`` (invertible mod n with overwhelming probability; checked) and ``D``."""
    n = public_key.n
    while True:
        left = tuple(tuple(secrets.randbelow(n) for _ in range(d)) for _ in range(d))
        if solve_mod([list(row) for row in left], [0] * d, n) is not None:
            break
    scale: list[int] = []
    while len(scale) < d:
        v = secrets.randbelow(n)
        if math.gcd(v, n) == 1:
            scale.append(v)
    return Mask(left, tuple(scale))


def _rerandomize(c: gmpy2.mpz, public_key: PublicKey) -> int:
    return int(c * public_key.random_factor() % public_key.nsquare)


def mask_system(
    system: EncryptedSystem, public_key: PublicKey, mask: Mask | None = None
) -> tuple[MaskedSystem, Mask]:
    """The aggregator-side variant: it masks the summed ``Enc(H)`` itself (``d³ + d²``
    full-size exponents, so no trainer sees the mask)."""
    d = system.size
    mask = mask or random_mask(public_key, d)
    n, nsq = public_key.n, gmpy2.mpz(public_key.nsquare)
    left, scale = mask.matrix, mask.scale
    columns = []
    for j in range(d):
        rows = [[left[i][k] * scale[j] % n for k in range(d)] for i in range(d)]
        bases = [gmpy2.mpz(system.hessian[k][j]) for k in range(d)]
        columns.append(multi_exp(bases, rows, nsq, FULL_SIZE_WINDOW_BITS))
    lg = multi_exp([gmpy2.mpz(c) for c in system.linear], [list(r) for r in left], nsq)
    matrix = tuple(
        tuple(_rerandomize(columns[j][i], public_key) for j in range(d)) for i in range(d)
    )
    return MaskedSystem(matrix, tuple(_rerandomize(c, public_key) for c in lg)), mask


@dataclass(frozen=True)
class TrainerMask:
    """What the aggregator sends one trainer (never the buyer): ``L``, ``D``, the check
    vector ``c`` and the trainer's zero-sum share ``z_i`` of the masked vector.

    The trainer learns nothing from them (random, independent of every party's data);
    the shares of all trainers add up to 0 mod n, so each trainer's masked vector is
    uniform on its own and only their sum carries ``LHD``, ``Lg``, ``Hc``, ``cᵀg``.
    """

    mask: Mask = field(repr=False)
    check: tuple[int, ...] = field(repr=False)
    share: tuple[int, ...] = field(repr=False)
    #: The extra right-hand sides of each trainer's part of the model and their check
    #: column (``contributions``; :mod:`deltaml.learning.exact_parts`), or None.
    parts: TrainerParts | None = field(default=None, repr=False)


def masked_length(d: int, columns: int = 1, extra: int = 0) -> int:
    """``LHD`` (d², row-major), ``L[G | E]`` (``d × (K + extra)``: the models' right-hand
    sides and the parts' extra ones), then the check part ``Hc`` (d) and ``cᵀG`` (``K``)."""
    return d * d + d * (columns + extra) + d + columns


def random_check(public_key: PublicKey, d: int) -> tuple[int, ...]:
    return tuple(secrets.randbelow(public_key.n) for _ in range(d))


def zero_sum_shares(public_key: PublicKey, trainers: int, length: int) -> list[tuple[int, ...]]:
    """``trainers`` uniform vectors mod n that add up to zero."""
    n = public_key.n
    shares = [[secrets.randbelow(n) for _ in range(length)] for _ in range(trainers - 1)]
    last = [(-sum(column)) % n for column in zip(*shares, strict=True)] if shares else [0] * length
    return [tuple(v) for v in shares] + [tuple(last)]


def masked_residues(h: list[list[int]], g: list[list[int]], tm: TrainerMask, n: int) -> list[int]:
    """A trainer's masked vector in the clear (it knows ``H_i``, ``g_i`` and the mask):
    ``[L H_i D; L [g_i | e_i]; H_i c; cᵀg_i] + z_i mod n`` — integer products, no
    ciphertexts (``e_i``: the parts' extra right-hand sides, when asked for)."""
    d, cols = len(g), range(len(g[0]))
    left, scale, c = tm.mask.matrix, tm.mask.scale, tm.check
    lh = [[sum(left[i][k] * h[k][j] for k in range(d)) for j in range(d)] for i in range(d)]
    lhd = [lh[i][j] * scale[j] for i in range(d) for j in range(d)]
    rhs = g
    if tm.parts is not None:
        extra = tm.parts.columns(h, g, scale, n)
        rhs = [[*row, *more] for row, more in zip(g, extra, strict=True)]
    width = range(len(rhs[0]))
    lg = [sum(left[i][k] * rhs[k][col] for k in range(d)) for i in range(d) for col in width]
    checked = [sum(h[i][k] * c[k] for k in range(d)) for i in range(d)]
    cg = [sum(c[i] * g[i][col] for i in range(d)) for col in cols]
    values = [*lhd, *lg, *checked, *cg]
    return [(v + z) % n for v, z in zip(values, tm.share, strict=True)]


def encrypt_residues(
    public_key: PublicKey, values: Sequence[int], factors: Sequence[gmpy2.mpz] | None = None
) -> tuple[int, ...]:
    """Encrypt residues mod n, with randomizers drawn in advance when given."""
    nsq, n = public_key.nsquare, public_key.n
    pool = iter(factors if factors is not None else draw_factors(public_key, len(values)))
    return tuple(int((1 + v * n) % nsq * next(pool) % nsq) for v in values)


def trainer_masked_system(
    terms: QuadraticTerms,
    public_key: PublicKey,
    precision_bits: int,
    tm: TrainerMask,
    factors: Sequence[gmpy2.mpz] | None = None,
) -> tuple[int, ...]:
    """A trainer's encrypted masked vector (:func:`masked_residues`, freshly encrypted:
    its randomness is the trainer's own, so a decryption of it tells nothing of ``R``)."""
    h, g = system_integers(terms, precision_bits)
    return encrypt_residues(public_key, masked_residues(h, g, tm, public_key.n), factors)


def split_masked(
    flat: Sequence[int], d: int, columns: int = 1, extra: int = 0
) -> tuple[MaskedSystem, tuple[int, ...]]:
    """The solve part (``LHD``, ``L[G | E]``) and the check part (``Hc``, ``cᵀG``)."""
    matrix = tuple(tuple(flat[i * d : (i + 1) * d]) for i in range(d))
    end = d * d + d * (columns + extra)
    return MaskedSystem(matrix, tuple(flat[d * d : end])), tuple(flat[end:])


def sum_ciphertexts(vectors: Sequence[Sequence[int]], public_key: PublicKey) -> tuple[int, ...]:
    """Entry-wise product mod n² (the encrypted sum): deterministic, anyone recomputes it."""
    nsq = public_key.nsquare
    return tuple(int(math.prod(column) % nsq) for column in zip(*vectors, strict=True))


def unmask(
    encrypted_u: Sequence[int],
    mask: Mask,
    public_key: PublicKey,
    factors: Sequence[gmpy2.mpz] | None = None,
) -> tuple[int, ...]:
    """``Enc(w_j) = Enc(u_j)^{D_j}``, re-randomized (so its randomness, which the buyer
    can read when it decrypts, says nothing about ``D``): ``d`` exponentiations."""
    nsq = gmpy2.mpz(public_key.nsquare)
    pool = iter(factors if factors is not None else draw_factors(public_key, len(encrypted_u)))
    columns = len(encrypted_u) // len(mask.scale)  # row j of U is scaled by D_j
    scales = [s for s in mask.scale for _ in range(columns)]
    return tuple(
        int(gmpy2.powmod(gmpy2.mpz(c), k, nsq) * next(pool) % nsq)
        for c, k in zip(encrypted_u, scales, strict=True)
    )


def residual(
    system: EncryptedSystem, w_mod_n: Sequence[int], public_key: PublicKey
) -> tuple[int, ...]:
    """``Enc(H·W − G)`` (row-major): deterministic from public data; the buyer proves it
    decrypts to 0."""
    nsq = gmpy2.mpz(public_key.nsquare)
    d, k = system.size, system.columns
    exponents = [[w_mod_n[j * k + col] for j in range(d)] for col in range(k)]
    out = []
    for i, row in enumerate(system.hessian):
        products = multi_exp([gmpy2.mpz(c) for c in row], exponents, nsq, 6)
        for col, hw in enumerate(products):
            g = gmpy2.mpz(system.linear[i * k + col])
            out.append(int(hw * gmpy2.invert(g, nsq) % nsq))
    return tuple(out)


def mask_determinant(mask: Mask, n: int) -> int:
    """``det(L)·det(D) mod n``: what the buyer needs, with ``det(M)`` of the masked system
    it decrypts, to have ``det(H)`` — a multiple of the model's denominator, so it can
    evaluate the model before receiving it (one scalar; ``L`` and ``D`` stay hidden)."""
    return det_mod(mask.matrix, n) * math.prod(mask.scale) % n


def release_gil() -> None:
    gmpy2.set_context(gmpy2.context(gmpy2.get_context(), allow_release_gil=True))


def decrypt_many(private_key: PrivateKey, ciphertexts: Sequence[int]) -> list[int]:
    """Decrypt on both cores: CRT decryption is two ``powmod`` calls, which release the GIL
    in a thread whose gmpy2 context allows it."""
    if len(ciphertexts) < 16:
        return [private_key.raw_decrypt(c) for c in ciphertexts]
    with ThreadPoolExecutor(DECRYPT_THREADS, initializer=release_gil) as pool:
        return list(pool.map(private_key.raw_decrypt, ciphertexts, chunksize=8))


class ExactBuyer:
    """The key holder's part. ``decrypted`` records every plaintext it sees (for tests)."""

    def __init__(self, public_key: PublicKey, private_key: PrivateKey) -> None:
        self.public_key = public_key
        self._private_key = private_key
        self.decrypted: list[tuple[str, tuple[int, ...]]] = []
        self.masked_det = 0

    def solve_masked(self, masked: MaskedSystem) -> tuple[int, ...]:
        n, d = self.public_key.n, len(masked.matrix)
        flat = decrypt_many(
            self._private_key, [c for row in masked.matrix for c in row] + list(masked.vector)
        )
        a = [flat[i * d : (i + 1) * d] for i in range(d)]
        b = flat[d * d :]
        for row in a:
            self.decrypted.append(("masked_matrix", tuple(row)))
        self.decrypted.append(("masked_vector", tuple(b)))
        #: ``det(M)`` mod n (with the aggregator's ``det(L)·det(D)``, ``det(H)``).
        self.masked_det = det_mod(a, n)
        u = solve_mod(a, b, n, len(b) // d)
        if u is None:
            raise DeltaMLValueError(
                "the masked system is singular: the trainers' data is degenerate"
            )
        return tuple(int(self.public_key.raw_encrypt(v)) for v in u)

    def final_weights(
        self, encrypted_w: Sequence[int], check: Sequence[int] | None = None, columns: int = 1
    ) -> tuple[np.ndarray, tuple[int, ...]]:
        """The exact model as floats (``d × columns`` for several models), and its
        representative mod n (for the check), row-major.

        ``check`` is the summed check part ``Enc(Hc)``, ``Enc(cᵀG)`` (kept unopened since
        the masked sum arrived): the model is accepted only if ``(Hc)ᵀw_k = cᵀg_k`` mod n
        for every column, which a model that does not solve ``HW = G`` passes with
        probability ~1/p.
        """
        n = self.public_key.n
        w_mod = tuple(self._private_key.raw_decrypt(c) for c in encrypted_w)
        self.decrypted.append(("final_model", w_mod))
        if check is not None:
            opened = decrypt_many(self._private_key, check)
            self.decrypted.append(("check", tuple(opened)))
            d = len(w_mod) // columns
            hc, cg = opened[:d], opened[d:]
            for col in range(columns):
                hw = sum(hc[j] * w_mod[j * columns + col] for j in range(d))
                if hw % n != cg[col]:
                    raise DeltaMLValueError(
                        "the exact model fails its check: it does not solve the trainers' system"
                    )
        fractions = [rational_reconstruction(v, n) for v in w_mod]
        weights = np.array([float(f) for f in fractions])
        return (weights if columns == 1 else weights.reshape(-1, columns)), w_mod


def exact_solve(
    terms: Sequence[QuadraticTerms],
    public_key: PublicKey,
    buyer: ExactBuyer,
    precision_bits: int | None = None,
    mask: Mask | None = None,
) -> tuple[np.ndarray, EncryptedSystem, tuple[int, ...]]:
    """The whole protocol in one process: the model, the summed system and ``w mod n``.

    The aggregator draws the mask and sends it encrypted; each trainer sends its signed
    ``Enc(H_i)``, ``Enc(g_i)`` (for the check) and its masked ``Enc(H_i R)``,
    ``Enc(g_i + H_i s)``; the aggregator sums both; the buyer solves the masked sum;
    the aggregator unmasks. (:func:`mask_system` is the variant where the aggregator
    masks the summed system itself: the same result, with full-size exponents.) The
    phases one by one: :mod:`deltaml.learning.exact_run`.
    """
    from deltaml.learning.exact_run import prepare, train

    d, columns = len(terms[0].hessian), columns_of(terms[0])
    prep = prepare(public_key, d, len(terms), precision_bits, mask, columns)
    out = train(terms, public_key, buyer, prep)
    return out.weights, out.total, out.w_mod
