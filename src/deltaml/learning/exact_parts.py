r"""Each trainer's part of the exact model, so the exact route measures contributions.

The exact model is linear in the trainers' right-hand sides: ``w = H⁻¹g = Σ_i u_i``
with ``u_i = H⁻¹g_i`` — trainer ``i``'s labels read through everyone's features. The
contributions game of the iterative route (:mod:`deltaml.learning.contributions`)
takes each trainer's *member model* and values a coalition by the average of its
members'; here the member model is ``m·u_i``, so the coalition of everyone is the
exact model itself and a coalition ``S`` is ``(m/|S|)·Σ_{i∈S} u_i``: the exact model
if every trainer's labels related to the features as ``S``'s do on average. A part is
tied to what the trainer signed: a trainer that lies in its part lies in its ``g_i``,
which moves the model that is evaluated and paid for, as in the rounds.

The parts come out of the one masked solve, as extra columns (see
:mod:`deltaml.learning.exact_solve` for ``M = LHD`` and ``b = Lg``):

- **one column per trainer**, ``b_i = L g_i + M t_i``, with offsets ``t_i`` uniform mod n
  and known to the aggregator and the trainers only. The buyer solves
  ``x_i = D⁻¹u_i + t_i``: uniform, so it learns nothing of a part (without ``t_i`` the
  ratios ``x_ij / x_kj = u_ij / u_kj`` and, once it has ``w``, every part would show).
  Every trainer adds ``H_k D t_i`` for every column, so the trainers' work grows as
  ``m²·d`` (products mod n, no exponentiation); nothing else grows faster than ``m·d``.
  The aggregator unmasks ``Enc(m·u_i)_j = (Enc(x_ij)·Enc(−t_ij))^{m·D_j}``
  (:func:`unmask_parts`): deterministic, so anyone holding the sealed transcript (where
  ``D`` and the offsets are kept, never shown to the buyer) recomputes it, and every
  trainer signs a digest of the ``D`` and offsets it was sent (:func:`mask_digest`);
- **one check column**, ``b_c = λ₀b₀ + Σ_i λ_i b_i + M τ`` with ``λ`` (128-bit) and ``τ``
  (uniform mod n) the aggregator's secrets: ``b_c`` is uniform, so the buyer cannot tell
  it from the others or find the relation. After the buyer has signed its solution, the
  aggregator reveals ``λ``, ``τ`` and the buyer proves that
  ``Enc(x_c − λ₀x₀ − Σλ_i x_i − τ)`` (:func:`check_vector`, recomputable) decrypts to 0.
  A buyer that answers any column wrongly — to move money between trainers, or a wrong
  model — cannot: an error ``ε`` passes only if ``ε_c = λ₀ε₀ + Σλ_iε_i`` for ``λ`` it
  did not know (probability ≤ 2⁻¹²⁸, :data:`CHECK_WEIGHT_BITS`), and a wrong linear map
  ``A ≠ M⁻¹`` only if ``AMτ = τ`` for a uniform ``τ``.

Cost for ``d`` weights and ``m`` trainers: the trainers ``(m+1)·d`` more encryptions
each, the buyer ``(m+1)·d`` more decryptions and encryptions and ``(m+1)·d`` 128-bit
exponentiations (the check), the aggregator as many for the check and ``m·d`` full-size
ones to unmask (on both cores).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import gmpy2

from deltaml.crypto.multiexp import multi_exp
from deltaml.crypto.paillier import PublicKey
from deltaml.learning.exact_solve import DECRYPT_THREADS, release_gil


def extra_columns(trainers: int) -> int:
    """Right-hand sides the parts add to the masked system: one per trainer and the check."""
    return trainers + 1


@dataclass(frozen=True)
class TrainerParts:
    """What one trainer is sent to add its share of every extra column: the offsets
    ``t_1 … t_m``, ``σ = Σλ_i t_i + τ``, its check coefficient ``λ₀ + λ_i`` and its
    own column's index."""

    offsets: tuple[tuple[int, ...], ...] = field(repr=False)
    sigma: tuple[int, ...] = field(repr=False)
    coefficient: int = field(repr=False)
    index: int

    def columns(
        self, h: Sequence[Sequence[int]], g: Sequence[Sequence[int]], scale: Sequence[int], n: int
    ) -> list[list[int]]:
        """The trainer's extra right-hand sides (``d × (m+1)``, rows): column ``i`` is
        ``[i = own]·g + H D t_i``, the last ``(λ₀ + λ_own)·g + H D σ``."""
        d = len(h)
        own = [row[0] for row in g]
        shifts = [*self.offsets, self.sigma]
        out: list[list[int]] = [[] for _ in range(d)]
        for c, shift in enumerate(shifts):
            dt = [s * v % n for s, v in zip(scale, shift, strict=True)]
            weight = self.coefficient if c == len(self.offsets) else int(c == self.index)
            for i in range(d):
                out[i].append((sum(h[i][k] * dt[k] for k in range(d)) + weight * own[i]) % n)
        return out


@dataclass(frozen=True)
class PartsSecret:
    """The aggregator's secrets for the parts: offsets ``t_i``, check weights
    ``λ₀ … λ_m`` (``λ₀`` for the model's column) and the check shift ``τ``."""

    offsets: tuple[tuple[int, ...], ...] = field(repr=False)
    weights: tuple[int, ...] = field(repr=False)
    shift: tuple[int, ...] = field(repr=False)

    def sigma(self, n: int) -> tuple[int, ...]:
        pairs = list(zip(self.weights[1:], self.offsets, strict=True))
        return tuple(
            (tau + sum(lam * t[j] for lam, t in pairs)) % n for j, tau in enumerate(self.shift)
        )

    def for_trainer(self, index: int, n: int) -> TrainerParts:
        coefficient = (self.weights[0] + self.weights[index + 1]) % n
        return TrainerParts(self.offsets, self.sigma(n), coefficient, index)


#: Bits of the check weights ``λ``: a wrong solve passes with probability ≤ 2⁻¹²⁸ (for
#: errors ``ε`` fixed before ``λ`` is drawn, ``λ₀ε₀ + Σλ_iε_i ≡ ε_c`` holds mod the prime
#: ``p | n`` for at most one value of a ``λ_j`` whose ``ε_j ≢ 0 (mod p)``, and the range
#: is smaller than ``p``); short weights keep the check's exponentiations short.
CHECK_WEIGHT_BITS = 128


def draw_parts(public_key: PublicKey, d: int, trainers: int) -> PartsSecret:
    n = public_key.n
    return PartsSecret(
        tuple(tuple(secrets.randbelow(n) for _ in range(d)) for _ in range(trainers)),
        tuple(1 + secrets.randbelow(2**CHECK_WEIGHT_BITS) for _ in range(trainers + 1)),
        tuple(secrets.randbelow(n) for _ in range(d)),
    )


def mask_digest(scale: Sequence[int], offsets: Sequence[Sequence[int]]) -> str:
    """What each trainer signs of the mask it was sent: ``D`` and the offsets (the values
    the unmasking uses), so a verifier holding them checks the aggregator used those."""
    text = ",".join(f"{v:x}" for v in [*scale, *(v for t in offsets for v in t)])
    return hashlib.sha256(b"deltaml-exact-parts/1\x00" + text.encode()).hexdigest()


def model_columns(flat: Sequence[int], k: int, extra: int) -> tuple[int, ...]:
    """The models' ``k`` columns of a row-major ``d × (k + extra)`` matrix (a solution or
    a right-hand side), without the parts' (what a disclosure or a residual uses)."""
    return tuple(c for i, c in enumerate(flat) if i % (k + extra) < k)


def _column(solution: Sequence[int], width: int, col: int) -> list[int]:
    return [solution[j * width + col] for j in range(len(solution) // width)]


def check_vector(
    solution: Sequence[int], weights: Sequence[int], shift: Sequence[int], public_key: PublicKey
) -> list[int]:
    """``Enc(x_c − λ₀x₀ − Σλ_i x_i − τ)`` from the buyer's solution (row-major
    ``d × (m+2)``: the model's column, the parts', the check): 0 for a right solve.
    Deterministic, so a verifier recomputes it."""
    n, nsq = public_key.n, gmpy2.mpz(public_key.nsquare)
    width = len(weights) + 1
    minus = [[-lam for lam in weights]]  # short negative exponents: the bases are units
    out = []
    for j, tau in enumerate(shift):
        row = solution[j * width : (j + 1) * width]
        (combined,) = multi_exp([gmpy2.mpz(c) for c in row[:-1]], minus, nsq)
        out.append(int(combined * row[-1] % nsq * ((1 - tau * n) % nsq) % nsq))
    return out


def unmask_parts(
    solution: Sequence[int],
    secret_offsets: Sequence[Sequence[int]],
    scale: Sequence[int],
    multiplier: int,
    public_key: PublicKey,
) -> list[tuple[int, ...]]:
    """``Enc(m·u_i)_j = (Enc(x_ij)·Enc(−t_ij))^{m·D_j}`` for every trainer ``i``: the
    members' models of the contributions game. Deterministic (no re-randomization: the
    contributions request re-randomizes them, recorded, before they leave)."""
    n, nsq = public_key.n, gmpy2.mpz(public_key.nsquare)
    width = len(secret_offsets) + 2
    jobs = [
        (gmpy2.mpz(c) * ((1 - t * n) % nsq) % nsq, multiplier * s % n)
        for i, offsets in enumerate(secret_offsets)
        for c, t, s in zip(_column(solution, width, 1 + i), offsets, scale, strict=True)
    ]
    # full-size exponents: on both cores (gmpy2 releases the GIL in these threads)
    with ThreadPoolExecutor(DECRYPT_THREADS, initializer=release_gil) as pool:
        powers = [int(v) for v in pool.map(lambda job: gmpy2.powmod(*job, nsq), jobs)]
    d = len(scale)
    return [tuple(powers[i * d : (i + 1) * d]) for i in range(len(secret_offsets))]
