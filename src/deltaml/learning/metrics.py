r"""Validation metrics the buyer can decrypt only in aggregate.

A validator holding rows ``(A_v, r_v)`` (standardized design and residual target)
reduces them once to the triangular factor ``R_v`` of ``[A_v  r_v]``, so that for
any model ``w``

.. math:: \lVert A_v w − r_v\rVert^2 = \lVert R_v [w; −1]\rVert^2 .

Each evaluation it applies a fresh Haar-random rotation ``Q_v`` and returns
``Enc(Q_v R_v [w; −1])`` — the direction of the vector is uniformly random, only
its norm carries information. The aggregator concatenates all validators'
vectors and rotates them with a fresh Haar-random ``Q_A`` of the full size
(:func:`mix_residual_vectors`), which mixes the blocks.

Two independent mixers
----------------------
The buyer publishes the plaintexts it decrypts (with proofs, so anyone can check
the metric). The aggregator knows its own ``Q_A``, so had it sent ``Enc(Q_A u)``
straight to the buyer, ``Q_Aᵀ`` applied to the published plaintexts would give it
back ``u = [Q_1 R_1 [w; −1]; …]`` and with it each validator's own squared error.
So a second, independent mixer rotates the vector again before the buyer
decrypts it (with a single validator too, so that what the buyer decrypts is
always a seated owner's signed output): the **remixer**, one of the validators, named
by a public rule (:func:`metric_remixer`: the ``i``-th evaluation is remixed by
``validators[i mod V]``). It receives ``Enc(Q_A u)``, applies its own fresh Haar rotation
``Q_R`` of the full size (:func:`remix_vector`, same fixed-point precision),
re-randomizes, commits to its rotation's seed and signs its reply. The buyer
decrypts ``Q_R Q_A u``:

- the aggregator does not know ``Q_R``: to it the published vector is uniformly
  random given its norm, the total squared error;
- the remixer knows ``Q_R`` and can recover ``Q_A u`` from the published
  plaintexts, but ``Q_A`` is fresh and secret, so ``Q_A u`` is again uniformly
  random given its norm: it learns the total and nothing else;
- **the aggregator and the remixer together** can undo both rotations and read
  every validator's own error: the construction assumes they do not collude (as
  it assumes the aggregator and the buyer do not).

With a single validator there is no per-validator secret to hide — the total is
that validator's error, and it is published — so there is no remix.

Nobody sees a residual or a per-sample value, and nobody but a collusion of both
mixers sees one validator's error. The rotations are applied as fixed-point
plaintext matrices, so the norm is preserved up to the encoding precision
(relative error ~``2^{-precision}`` per rotation); each rotation adds
``precision_bits`` to the exponent (:func:`rotation_growth_bits` bounds the growth
of the values).
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from deltaml.crypto import EncryptedVector, PlainMatrix, encode_float
from deltaml.errors import DeltaMLValueError
from deltaml.learning.models import ModelType, Standardization
from deltaml.protocol.rules import metric_remixer as metric_remixer  # a public rule


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
    noise_variance: float = 0.0,
) -> EncryptedVector:
    """A validator's reply: ``Enc(Q R [t/m; −1])`` for a fresh rotation ``Q``.

    With ``noise_variance > 0`` the vector gets one more coordinate, a fresh
    ``n ~ N(0, noise_variance)``, before the rotation: its squared norm, the only
    thing anyone learns, then carries calibrated noise.
    """
    if noise_variance > 0:
        noise_row = np.zeros((1, factor.shape[1]))
        noise_row[0, -1] = -rng.normal(0.0, math.sqrt(noise_variance))
        factor = np.vstack([factor, noise_row])
    rotated = haar_orthogonal(factor.shape[0], rng) @ factor
    weights = PlainMatrix.encode(rotated[:, :-1] / n_trainers, precision_bits)
    product = total.matvec(weights)
    return product.add_ints([encode_float(-c, product.exponent) for c in rotated[:, -1]])


def rotation_growth_bits(size: int, precision_bits: int) -> int:
    """Bits by which one fixed-point rotation of ``size`` values can grow a bound.

    Rows of an orthogonal matrix have an L1 norm of at most ``√size``, and each
    encoded entry is off by at most 1/2, so an encoded row sums to at most
    ``√size·2^p + size/2 ≤ 2^(p + h + 1)`` with ``h = ⌈log₂(size)/2⌉``.
    """
    if size < 1:
        raise DeltaMLValueError("a rotation needs at least one value")
    half_log = math.ceil(math.log2(size) / 2) if size > 1 else 0
    return precision_bits + half_log + 2


def remix_vector(
    vector: EncryptedVector, precision_bits: int, rng: np.random.Generator
) -> EncryptedVector:
    """Rotate ``vector`` with one fresh Haar matrix of its full size and re-randomize.

    The aggregator's mix (after concatenating) and the remixer's second mix are
    both this step, each with its own secret ``rng``.
    """
    rotation = PlainMatrix.encode(haar_orthogonal(len(vector), rng), precision_bits)
    return vector.matvec(rotation).rerandomize()


def mix_residual_vectors(
    vectors: list[EncryptedVector], precision_bits: int, rng: np.random.Generator
) -> EncryptedVector:
    """The aggregator's step: concatenate and rotate with one fresh Haar matrix."""
    return remix_vector(EncryptedVector.concat(vectors), precision_bits, rng)
