"""Published numbers as functions of proven plaintexts — one code path for buyer and verifier.

The buyer computes every number it publishes with these functions, from the raw
plaintexts it proves; the verifier runs the same functions on the proven plaintexts
in the transcript. Squared norms and Gram entries are summed exactly in integers and
divided once (``int / int`` is correctly rounded in Python), so a published metric
is a deterministic function of the plaintexts and the published statistics and is
compared exactly, bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from deltaml.crypto import PublicKey, decode_int
from deltaml.errors import PrecisionBudgetError
from deltaml.learning.contributions import shapley
from deltaml.learning.models import ModelType, Standardization
from deltaml.learning.standardize import stats_from_sums

# The public rules this module used to define, re-exported for their old import path.
from deltaml.protocol.rules import SHAPLEY_SEED_DOMAIN as SHAPLEY_SEED_DOMAIN
from deltaml.protocol.rules import improvement_percent as improvement_percent
from deltaml.protocol.rules import is_evaluated as is_evaluated
from deltaml.protocol.rules import last_round as last_round
from deltaml.protocol.rules import shapley_seed as shapley_seed

ROTATION_DOMAIN = b"deltaml-rotation/1\x00"


def signed_plaintext(public_key: PublicKey, plaintext: int) -> int:
    """A raw plaintext in ``[0, n)`` as a signed integer (``phe``'s ``n/3`` convention)."""
    if plaintext <= public_key.max_int:
        return plaintext
    if plaintext >= public_key.n - public_key.max_int:
        return plaintext - public_key.n
    raise PrecisionBudgetError("a plaintext lies in the overflow band")


def sse_from_ints(values: Sequence[int], exponent: int, denominator: int = 1) -> float:
    """``Σ v_i² / (δ² · 2^(2·exponent))``, summed exactly, rounded once (``δ``: the exact
    model's denominator; 1 for a fixed-point model)."""
    total = sum(v * v for v in values)
    if denominator == 1:
        return _ratio(total, 2 * exponent)
    return float(Fraction(total, denominator * denominator) / Fraction(2) ** (2 * exponent))


def denominator_exponent(exponent: int, denominator: int) -> int:
    """The exact model's evaluation (``solver: exact``): residues ``z_i/δ`` mod n times
    ``Δ`` (a multiple of ``δ``) are integers; they are decrypted packed at the exponent
    ``e + bits(Δ)`` (so their magnitude bound is the fixed-point one), the packed
    ciphertexts raised to ``Δ`` (:attr:`deltaml.crypto.packing.PackingLayout.scale`)."""
    return exponent + denominator.bit_length()


def gram_from_ints(
    columns: Sequence[Sequence[int]], exponents: Sequence[int], denominator: int = 1
) -> np.ndarray:
    """``G_ij = Σ_k y_ki y_kj``, each entry summed exactly and rounded once (``δ``: the
    exact model's denominator the columns were raised to; 1 for fixed-point columns)."""
    k = len(columns)
    gram = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            dot = sum(a * b for a, b in zip(columns[i], columns[j], strict=True))
            shift = exponents[i] + exponents[j]
            gram[i, j] = gram[j, i] = (
                _ratio(dot, shift)
                if denominator == 1
                else float(Fraction(dot, denominator * denominator) / Fraction(2) ** shift)
            )
    return gram


def _ratio(value: int, shift: int) -> float:
    return value / (1 << shift) if shift >= 0 else float(value << -shift)


def stats_from_ints(
    values: Sequence[int],
    exponent: int,
    n_features: int,
    include_target: bool,
    classes: int = 0,
    impute: bool = False,
) -> Standardization:
    """The published statistics from the decrypted total of the owners' sums."""
    sums = np.array([decode_int(v, exponent) for v in values], dtype=np.float64)
    return stats_from_sums(sums, n_features, include_target, classes, impute)


def noise_variance(metric_noise: float, rows: int) -> float:
    """Variance of the noise coordinate a validator with ``rows`` rows appends.

    A coordinate ``n ~ N(0, σ²)`` adds ``n²`` to the squared error: mean ``σ²``,
    standard deviation ``√2·σ²``. With ``σ² = ν·rows/√2`` one validator's mean squared
    error gets noise of standard deviation ``ν``; several validators' noise averages
    to at most ``ν``.
    """
    return metric_noise * rows / math.sqrt(2.0)


def denoised_sse(sse: float, rows: int, metric_noise: float) -> float:
    """The published squared error: the noise's expected value removed, never below 0."""
    if metric_noise <= 0:
        return sse
    return max(sse - noise_variance(metric_noise, rows), 0.0)


def metric_value(model: ModelType, sse: float, rows: int, stats: Standardization) -> float:
    return float(model.metric_from_sse(sse, rows, stats))


def shapley_method(n_trainers: int) -> str:
    """Always ``"exact"``: the closed form holds at any number of trainers."""
    return "exact"


def shapley_values(gram: np.ndarray, base_sse: float) -> np.ndarray:
    """Exact Shapley values in closed form (:func:`~deltaml.learning.contributions.shapley`).

    No value depends on the transcript-fixed seed (:func:`shapley_seed`) any more; it
    stays in the signed contribution records and the verifier still checks it.
    """
    return shapley(gram, base_sse)


def rotation_commitment(seed: int, salt: bytes) -> str:
    """SHA-256 commitment to a secret rotation's seed (128 bits) and a 32-byte salt."""
    return hashlib.sha256(ROTATION_DOMAIN + seed.to_bytes(16, "big") + salt).hexdigest()
