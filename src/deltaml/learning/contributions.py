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
``c = [1_S / |S|; −1]`` for every one of the ``2^m`` coalitions. The buyer never
sees a coalition model, and the validators' blocks are mixed exactly as for a
metric (see :mod:`deltaml.learning.metrics`, "Two independent mixers"): neither
the aggregator, who knows its own rotation, nor the remixer, who knows its own,
can undo the mixing on the published columns and read one validator's Gram block
``Y_vᵀ Y_v``; the two together could, and are assumed not to collude. With a
single validator there is nothing to hide and no remix. ``SSE(z₀)``, the value
of the empty coalition, is the round-zero metric of the ordinary protocol.

Shapley values are exact up to :data:`EXACT_SHAPLEY_MAX` trainers and estimated
from random permutations above.
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

EXACT_SHAPLEY_MAX = 8
DEFAULT_PERMUTATIONS = 400


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
    """Exact Shapley values: weighted marginal contributions over all coalitions."""
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


def shapley_sampled(
    value: Callable[[frozenset[int]], float],
    n_players: int,
    permutations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Monte-Carlo Shapley values: mean marginal contribution over random orderings."""
    if permutations < 1:
        raise DeltaMLValueError("need at least one permutation")
    phi = np.zeros(n_players)
    for _ in range(permutations):
        coalition: frozenset[int] = frozenset()
        previous = 0.0
        for i in rng.permutation(n_players):
            coalition = coalition | {int(i)}
            current = value(coalition)
            phi[i] += current - previous
            previous = current
    return phi / permutations


def shapley(
    gram: np.ndarray,
    base_sse: float,
    rng: np.random.Generator | None = None,
    permutations: int = DEFAULT_PERMUTATIONS,
) -> np.ndarray:
    """Shapley values of the coalition game of ``gram`` (exact for ≤ 8 players)."""
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] < 2:
        raise DeltaMLValueError("the Gram matrix must be square, one row per trainer plus one")
    m = gram.shape[0] - 1
    value = coalition_values(gram, base_sse)
    if m <= EXACT_SHAPLEY_MAX:
        return shapley_exact(value, m)
    return shapley_sampled(value, m, permutations, rng or np.random.default_rng(0))


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


def gram_from_columns(columns: Sequence[np.ndarray]) -> np.ndarray:
    """The buyer's step: ``G = YᵀY`` from the decrypted columns."""
    y = np.column_stack(columns)
    return y.T @ y
