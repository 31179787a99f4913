r"""Consensus ADMM with over-relaxation, written so that every update is linear.

For ``f = Σ_i f_i`` with quadratic ``f_i(w) = ½ wᵀH_i w − g_iᵀw + c_i``, consensus
ADMM with penalty ``ρ`` and relaxation ``α`` is

.. math::
   x_i &= \arg\min f_i(x) + \tfrac{ρ}{2}\lVert x − z + u_i\rVert^2 = P_i (z − u_i) + q_i,\quad
   P_i = ρ(H_i + ρI)^{-1},\ q_i = (H_i + ρI)^{-1} g_i \\
   \hat x_i &= α x_i + (1 − α) z,\qquad z^+ = \tfrac1m \textstyle\sum_i (\hat x_i + u_i),\qquad
   u_i^+ = u_i + \hat x_i − z^+ .

Writing ``s_i = \hat x_i + u_i`` (the trainer's state) and ``t = Σ_i s_i = m z``
(the aggregator's sum), one round is, for every trainer,

.. math:: s_i^+ = \underbrace{\tfrac{α}{m}(2P_i − I)}_{A_i}\, t
        + \underbrace{(I − αP_i)}_{B_i}\, s_i + \underbrace{α q_i}_{c_i},
        \qquad t^+ = \textstyle\sum_i s_i^+ ,

starting from ``s_i = z_0`` and ``t = m z_0``. A trainer therefore reduces its
rows once to the plaintext ``[A_i | B_i]`` (``d × 2d``) and ``c_i``: a round
costs ``2d²`` ciphertext–scalar products whatever the number of rows, and the
exact local solve is worth any number of local gradient steps. The aggregator
only adds. With standardized features, ``ρ = 0.02`` and ``α = 1.6`` reach a
0.1 % objective gap in about ten rounds on the data sets we measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deltaml.crypto import EncryptedVector, PlainMatrix, encode_float
from deltaml.errors import DeltaMLValueError
from deltaml.learning.models import QuadraticTerms

DEFAULT_RHO = 0.02
DEFAULT_RELAXATION = 1.6


@dataclass(frozen=True)
class AdmmParams:
    rho: float = DEFAULT_RHO
    relaxation: float = DEFAULT_RELAXATION

    def __post_init__(self) -> None:
        if not self.rho > 0:
            raise DeltaMLValueError("ADMM penalty rho must be positive")
        if not 0 < self.relaxation < 2:
            raise DeltaMLValueError("ADMM relaxation must lie in (0, 2)")


def trainer_update(
    terms: QuadraticTerms, n_trainers: int, params: AdmmParams
) -> tuple[np.ndarray, np.ndarray]:
    """The plaintext ``[A_i | B_i]`` and ``c_i`` of one trainer (see the module docstring)."""
    d = len(terms.linear)
    eye = np.eye(d)
    reg = terms.hessian + params.rho * eye
    p = params.rho * np.linalg.inv(reg)
    q = np.linalg.solve(reg, terms.linear)
    alpha = params.relaxation
    a = alpha / n_trainers * (2.0 * p - eye)
    b = eye - alpha * p
    return np.hstack([a, b]), alpha * q


@dataclass(frozen=True)
class EncodedUpdate:
    """A trainer's update, encoded for ciphertexts: ``s⁺ = M·[t; s] + c``."""

    matrix: PlainMatrix
    #: ``c`` as floats; encoded at the product's exponent when applied.
    constant: tuple[float, ...]

    @classmethod
    def encode(cls, matrix: np.ndarray, constant: np.ndarray, precision_bits: int) -> EncodedUpdate:
        return cls(PlainMatrix.encode(matrix, precision_bits), tuple(float(v) for v in constant))

    def growth_bits(self) -> int:
        """Bits a bound can grow by in one application (exponent plus norm)."""
        return max(self.matrix.max_abs_row_sum(), 1).bit_length() + 1

    def apply(self, total: EncryptedVector, state: EncryptedVector) -> EncryptedVector:
        stacked = EncryptedVector.concat([total, state])
        product = stacked.matvec(self.matrix)
        return product.add_ints([encode_float(c, product.exponent) for c in self.constant])


def run_plaintext(
    terms: Sequence[QuadraticTerms],
    params: AdmmParams,
    rounds: int,
    z0: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The same iteration in floating point: the model ``z = t/m`` after each round."""
    m = len(terms)
    updates = [trainer_update(t, m, params) for t in terms]
    d = len(terms[0].linear)
    z = np.zeros(d) if z0 is None else np.asarray(z0, dtype=np.float64)
    states = [z.copy() for _ in range(m)]
    total = m * z
    history = []
    for _ in range(rounds):
        states = [
            mat @ np.concatenate([total, s]) + c
            for (mat, c), s in zip(updates, states, strict=True)
        ]
        total = np.sum(states, axis=0)
        history.append(total / m)
    return history
