r"""Validation metrics the buyer can decrypt only in aggregate.

A validator holding rows ``(A_v, r_v)`` (standardized design and residual target)
reduces them once to the triangular factor ``R_v`` of ``[A_v  r_v]``, so that for
any model ``w``

.. math:: \lVert A_v w − r_v\rVert^2 = \lVert R_v [w; −1]\rVert^2 .

Each evaluation it applies a fresh Haar-random rotation ``Q_v`` and returns
``Enc(Q_v R_v [w; −1])`` — the direction of the vector is uniformly random, only
its norm carries information. The aggregator concatenates all validators'
vectors and rotates them again with a fresh Haar-random ``Q`` of the full size,
which mixes the blocks: the buyer decrypts a uniformly random vector whose only
information is its norm, the total squared error ``Σ_v ‖A_v w − r_v‖²``. Nobody
sees a residual, a per-sample value or one validator's error.

The rotations are applied as fixed-point plaintext matrices, so the norm is
preserved up to the encoding precision (relative error ~``2^{-precision}``).
"""

from __future__ import annotations

import secrets

import numpy as np

from deltaml.crypto import EncryptedVector, PlainMatrix, encode_float
from deltaml.learning.models import ModelType, Standardization


def secure_generator() -> np.random.Generator:
    """A numpy generator seeded from the OS's cryptographic randomness."""
    return np.random.default_rng(secrets.randbits(128))


def haar_orthogonal(size: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    g = rng.standard_normal((size, size))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))


def validator_factor(
    x: np.ndarray, y: np.ndarray, model: ModelType, stats: Standardization
) -> np.ndarray:
    """Triangular ``R`` with ``‖A w − r‖² = ‖R [w; −1]‖²`` (square, size ``d + 2``)."""
    stacked = np.hstack(
        [stats.design(x), model.residual_target(np.asarray(y, float), stats)[:, None]]
    )
    r: np.ndarray = np.linalg.qr(stacked, mode="r")  # type: ignore[assignment]
    k = stacked.shape[1]
    if r.shape[0] < k:  # fewer rows than columns: pad with zero rows
        r = np.vstack([r, np.zeros((k - r.shape[0], k))])
    return r


def encrypted_residual_vector(
    total: EncryptedVector,
    n_trainers: int,
    factor: np.ndarray,
    precision_bits: int,
    rng: np.random.Generator,
) -> EncryptedVector:
    """A validator's reply: ``Enc(Q R [t/m; −1])`` for a fresh rotation ``Q``."""
    rotated = haar_orthogonal(factor.shape[0], rng) @ factor
    weights = PlainMatrix.encode(rotated[:, :-1] / n_trainers, precision_bits)
    product = total.matvec(weights)
    return product.add_ints([encode_float(-c, product.exponent) for c in rotated[:, -1]])


def mix_residual_vectors(
    vectors: list[EncryptedVector], precision_bits: int, rng: np.random.Generator
) -> EncryptedVector:
    """The aggregator's step: concatenate and rotate with one fresh Haar matrix."""
    joined = EncryptedVector.concat(vectors)
    rotation = PlainMatrix.encode(haar_orthogonal(len(joined), rng), precision_bits)
    return joined.matvec(rotation).rerandomize()


def metric_from_vector(
    values: np.ndarray, rows: int, model: ModelType, stats: Standardization
) -> float:
    """The buyer's step: the published metric from the decrypted mixed vector."""
    sse = float(np.dot(values, values))
    return model.metric_from_sse(sse, rows, stats)
