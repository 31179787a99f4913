r"""Fair contributions: Shapley values over coalition models, from one Gram matrix.

Coalition models
----------------
In its first round every trainer solves its local problem exactly from the
public initial model ``z₀``: ``x_i = P_i z₀ + q_i`` (its own ridge-regularized
model, see :mod:`deltaml.learning.admm`). Its first update is
``s_i = α x_i + (1 − α) z₀``, so these local models can be rebuilt from the
encrypted round-one updates the aggregator already holds. The model of a
coalition ``S`` is their average, ``x_S = mean_{i∈S} x_i``, and its value is the
improvement of the validation error over ``z₀``:
``v(S) = SSE(z₀) − SSE(x_S)``, ``v(∅) = 0``. (On diabetes, Shapley values of
this game track those of the coalitions' exact optima within a few percent.)

One Gram matrix for every coalition
-----------------------------------
With a validator's factor ``R = [R_w | r]`` (see :mod:`deltaml.learning.metrics`),
the residual of ``x_S`` is ``mean_{i∈S} y_i − y₀`` with ``y_i = R_w s_i / α`` and
``y₀ = r + (1 − α)/α · R_w z₀``. Every validator applies one fresh Haar rotation
to all ``m + 1`` columns ``[y₁ … y_m, y₀]``; the aggregator stacks the
validators' blocks and rotates every column with one fresh Haar rotation of the
full height; one of them (the only one, if need be), the **remixer** named by
a public rule (:func:`contribution_remixer`: the first validator), rotates every
column again with its own fresh Haar rotation (:func:`remix_columns`); the buyer
decrypts the columns ``Y`` and keeps only ``G = YᵀY = Σ_v Y_vᵀ Y_v``, an
``(m+1) × (m+1)`` matrix from which ``SSE(x_S) = cᵀ G c`` with
``c = [1_S / |S|; −1]`` for every non-empty coalition. The buyer never
sees a coalition model, and the validators' blocks are mixed exactly as for a
metric (see :mod:`deltaml.learning.metrics`, "Two independent mixers"): neither
the aggregator, who knows its own rotation, nor the remixer, who knows its own,
can undo the mixing on the published columns and read one validator's Gram block
``Y_vᵀ Y_v``; the two together could, and are assumed not to collude. With a
single validator there is nothing to hide and no remix. ``SSE(z₀)``, the value
of the empty coalition, is the round-zero metric of the ordinary protocol.

Exact Shapley values in closed form
-----------------------------------
Write ``r_i = y_i − y₀`` for trainer ``i``'s residual, so that a coalition's
residual is ``mean_{i∈S} r_i`` and, with ``g_ij = r_iᵀr_j`` (``g = EᵀGE`` for
``E = [I; −1ᵀ]``, an ``O(m²)`` step from ``G``),

    ``SSE(S) = f(|S|) · Σ_{i,j∈S} g_ij``,  ``f(s) = 1/s²``,  ``SSE(∅) = B = SSE(z₀)``

and ``v(S) = B − SSE(S)``. Shapley's value of trainer ``k`` averages its marginal
contribution over the ``m`` coalition sizes ``s = 0 … m−1`` of the others, each size
equally likely and, within a size, every coalition ``S ⊆ N∖{k}`` equally likely:

    ``φ_k = (1/m) Σ_{s=0}^{m−1} E_{|S|=s}[SSE(S) − SSE(S ∪ {k})]``.

Size 0 gives ``B − g_kk``. For ``s ≥ 1`` let ``n = m − 1`` be the number of the
others; a given other is in ``S`` with probability ``a_s = s/n``, a given pair of
others with probability ``b_s = s(s−1)/(n(n−1))`` (``0`` if ``n < 2``). With the
totals ``D = Σ_i g_ii`` and ``T = Σ_{i,j} g_ij = ‖r_tot‖²`` and trainer ``k``'s
``c_k = Σ_{j≠k} g_kj = r_kᵀr_tot − g_kk``, the others' diagonal sums to ``D − g_kk``
and their off-diagonal to ``T − D − 2c_k``, so

    ``E[Σ_{i,j∈S} g_ij] = A_s = a_s (D − g_kk) + b_s (T − D − 2c_k)``,
    ``E[Σ_{i,j∈S∪{k}} g_ij] = g_kk + 2 a_s c_k + A_s``,

and, by linearity of expectation (``f`` depends only on the size),

    ``φ_k = (1/m) [B − g_kk + Σ_{s=1}^{m−1} (h_s A_s − q_s (g_kk + 2 a_s c_k))]``

with ``q_s = f(s+1) = 1/(s+1)²`` and ``h_s = f(s) − f(s+1)``. This is linear in
``g_kk``, ``c_k``, ``D``, ``T`` and ``B``:

    ``φ_k = (B + κ_g g_kk + κ_c c_k + κ_D D + κ_T T) / m``,
    ``κ_g = −1 − Σ_s (a_s h_s + q_s)``,  ``κ_c = −2 Σ_s (b_s h_s + a_s q_s)``,
    ``κ_D = Σ_s (a_s − b_s) h_s``,  ``κ_T = Σ_s b_s h_s``

(:func:`shapley_coefficients`, ``O(m)``). So the ``2m + 1`` numbers ``g_kk``,
``r_kᵀr_tot`` and ``‖r_tot‖²`` (and ``B``) give every trainer's exact value
(:func:`shapley_from_totals`, ``O(m)``); from the Gram matrix ``G`` it is ``O(m²)``
(:func:`shapley`), no sampling at any number of trainers. The values are efficient:
they sum to ``v(N) = B − T/m²``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from deltaml.crypto import EncryptedVector, PlainMatrix, encode_float
from deltaml.errors import DeltaMLValueError
from deltaml.learning.metrics import haar_orthogonal
from deltaml.protocol.rules import contribution_remixer as contribution_remixer  # public rule


def coalition_sse(gram: np.ndarray, coalition: Sequence[int]) -> float:
    """``‖mean_{i∈S} y_i − y₀‖²`` from the Gram matrix of ``[y₁ … y_m, y₀]``."""
    m = gram.shape[0] - 1
    c = np.zeros(m + 1)
    if coalition:
        c[list(coalition)] = 1.0 / len(coalition)
    c[m] = -1.0
    return float(c @ gram @ c)


def coalition_values(gram: np.ndarray, base_sse: float) -> Callable[[frozenset[int]], float]:
    """``v(S) = SSE(z₀) − SSE(x_S)``, memoized; ``base_sse = SSE(z₀)``."""
    base = base_sse
    cache: dict[frozenset[int], float] = {frozenset(): 0.0}

    def value(coalition: frozenset[int]) -> float:
        if coalition not in cache:
            cache[coalition] = base - coalition_sse(gram, sorted(coalition))
        return cache[coalition]

    return value


def shapley_exact(value: Callable[[frozenset[int]], float], n_players: int) -> np.ndarray:
    """Exact Shapley values by enumeration, for any game: ``O(2^m · m)`` values.

    The reference the closed form (:func:`shapley`) is tested against.
    """
    if n_players < 1:
        raise DeltaMLValueError("Shapley values need at least one player")
    phi = np.zeros(n_players)
    fact = [math.factorial(k) for k in range(n_players + 1)]
    players = range(n_players)
    for size in range(n_players):
        weight = fact[size] * fact[n_players - size - 1] / fact[n_players]
        for coalition in itertools.combinations(players, size):
            s = frozenset(coalition)
            base = value(s)
            for i in players:
                if i not in s:
                    phi[i] += weight * (value(s | {i}) - base)
    return phi


def shapley_coefficients(n_players: int) -> tuple[float, float, float, float]:
    """``(κ_g, κ_c, κ_D, κ_T)`` of the closed form (see the module docstring), ``O(m)``."""
    m = n_players
    if m < 1:
        raise DeltaMLValueError("Shapley values need at least one player")
    n = m - 1
    k_g, k_c, k_d, k_t = -1.0, 0.0, 0.0, 0.0
    for s in range(1, m):
        a = s / n
        b = s * (s - 1) / (n * (n - 1)) if n >= 2 else 0.0
        q = 1.0 / (s + 1) ** 2
        h = 1.0 / s**2 - q
        k_g -= a * h + q
        k_c -= 2.0 * (b * h + a * q)
        k_d += (a - b) * h
        k_t += b * h
    return k_g, k_c, k_d, k_t


def shapley_from_totals(
    own: np.ndarray, with_total: np.ndarray, total: float, base_sse: float
) -> np.ndarray:
    """Exact Shapley values from ``2m + 1`` numbers: ``g_kk = ‖r_k‖²``, ``r_kᵀr_tot``,
    ``‖r_tot‖²`` (and ``B = SSE(z₀)``), ``O(m)``."""
    own = np.asarray(own, dtype=np.float64)
    with_total = np.asarray(with_total, dtype=np.float64)
    if own.ndim != 1 or own.shape != with_total.shape or len(own) < 1:
        raise DeltaMLValueError("need one ‖r_k‖² and one r_kᵀr_tot per trainer")
    m = len(own)
    k_g, k_c, k_d, k_t = shapley_coefficients(m)
    c = with_total - own
    d = float(own.sum())
    return np.asarray((base_sse + k_g * own + k_c * c + k_d * d + k_t * total) / m)


def shapley(gram: np.ndarray, base_sse: float) -> np.ndarray:
    """Exact Shapley values of the coalition game of ``gram``, any number of trainers.

    ``gram`` is ``G``, the Gram matrix of ``[y₁ … y_m, y₀]``; ``base_sse`` is
    ``SSE(z₀)``, the empty coalition's error. ``O(m²)``: the residuals' Gram
    ``g = EᵀGE`` (diagonal and row sums only), then the closed form.
    """
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] < 2:
        raise DeltaMLValueError("the Gram matrix must be square, one row per trainer plus one")
    m = gram.shape[0] - 1
    g_yy, g_y0, g_00 = gram[:m, :m], gram[:m, m], float(gram[m, m])
    own = np.diag(g_yy) - 2.0 * g_y0 + g_00  # ‖y_k − y₀‖²
    # r_kᵀr_tot = Σ_j (G_kj − G_k0 − G_0j + G_00)
    with_total = g_yy.sum(axis=1) - m * g_y0 - float(g_y0.sum()) + m * g_00
    total = float(with_total.sum())
    return shapley_from_totals(own, with_total, total, float(base_sse))


def contribution_weights(phi: np.ndarray, scale: int = 10**6) -> list[int]:
    """Non-negative integer weights for the contract: negative values earn nothing.

    Weights are ``round(scale · max(φ_i, 0) / Σ_j max(φ_j, 0))``; all zero when
    nobody improved the model.
    """
    positive = np.maximum(np.asarray(phi, dtype=np.float64), 0.0)
    total = float(positive.sum())
    if total <= 0:
        return [0] * len(positive)
    return [round(scale * float(p) / total) for p in positive]


# -- the encrypted protocol -----------------------------------------------------------
def validator_columns(
    first_updates: Sequence[EncryptedVector],
    initial_model: EncryptedVector,
    relaxation: float,
    factor: np.ndarray,
    precision_bits: int,
    rng: np.random.Generator,
) -> list[EncryptedVector]:
    """A validator's reply: ``Q·[y₁ … y_m, y₀]`` as ``m + 1`` encrypted columns.

    ``x_i = (s_i − (1 − α) z₀)/α``, so ``y_i = R_w s_i / α`` and the constant
    column is ``y₀ = r + (1 − α)/α · R_w z₀`` — with the rotation ``Q`` folded into
    every plaintext matrix. All columns share one exponent.
    """
    q = haar_orthogonal(factor.shape[0], rng)
    rotated = q @ factor
    weights = rotated[:, :-1]
    update_matrix = PlainMatrix.encode(weights / relaxation, precision_bits)
    columns = [s.matvec(update_matrix) for s in first_updates]
    z0_matrix = PlainMatrix.encode(weights * (1.0 - relaxation) / relaxation, precision_bits)
    constant = initial_model.matvec(z0_matrix)
    constant = constant.add_ints([encode_float(c, constant.exponent) for c in rotated[:, -1]])
    exponent = max(c.exponent for c in [*columns, constant])
    return [c.align(exponent) for c in [*columns, constant]]


def remix_columns(
    columns: Sequence[EncryptedVector], precision_bits: int, rng: np.random.Generator
) -> list[EncryptedVector]:
    """Rotate every column with one fresh Haar matrix of their full height; re-randomize.

    The aggregator's mix (after stacking) and the remixer's second mix are both this
    step, each with its own secret ``rng``.
    """
    if not columns:
        raise DeltaMLValueError("no columns to mix")
    height = len(columns[0])
    if any(len(c) != height for c in columns):
        raise DeltaMLValueError("the columns differ in height")
    rotation = PlainMatrix.encode(haar_orthogonal(height, rng), precision_bits)
    return [column.matvec(rotation).rerandomize() for column in columns]


def mix_columns(
    blocks: Sequence[Sequence[EncryptedVector]], precision_bits: int, rng: np.random.Generator
) -> list[EncryptedVector]:
    """The aggregator's step: stack every validator's column ``j``, rotate all with one ``Q``."""
    if not blocks:
        raise DeltaMLValueError("no validator columns to mix")
    n_columns = len(blocks[0])
    if any(len(b) != n_columns for b in blocks):
        raise DeltaMLValueError("validators sent different numbers of columns")
    stacked = [EncryptedVector.concat([b[j] for b in blocks]) for j in range(n_columns)]
    return remix_columns(stacked, precision_bits, rng)
