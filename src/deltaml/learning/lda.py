r"""More than two classes: linear discriminant analysis from federated sums and exact solves.

Why not one-vs-rest on our logistic objective: its quadratic Taylor loss behaves like
least squares on the class indicators, which ranks a middle class badly — iris, ten
stratified 80/20 splits: accuracy 0.817 against 0.957 for scikit-learn's multinomial
``LogisticRegression``. Linear discriminant analysis is the same kind of model — ``K``
linear scores, ``P(k | x) ∝ exp(w_kᵀz + b_k)``, so a multinomial logistic regression in
form — and it is fitted from sums the protocol can compute exactly: 0.990 on the same
splits (``tests/learning/test_lda.py``).

The construction, on features standardized with the public statistics
(``z = (x − μ)/σ``):

1. **class means.** Each owner's class counts ``n_k`` and class sums ``Σ_{y=k} z``
   (:func:`class_sums`); their totals (summed encrypted, decrypted by the buyer, as the
   standardization's sums are) give the public class means ``m_k`` (:func:`class_means`).
   That is ``K·(d + 1)`` aggregate numbers over every owner, more than the global means
   and scales a two-class request publishes; a multiclass request must say so.
2. **within-class scatter.** ``S = Σ_rows (z − m_y)(z − m_y)ᵀ`` is the sum of each
   owner's own part, which it computes from its rows and the public ``m_k``.
3. **one exact solve of all classes together** (:mod:`deltaml.learning.exact_solve`,
   one column of ``G`` per class) with each trainer's terms ``H_i = S_i/N`` and
   ``G_i = (N_i/N)·[m_1 … m_K]`` (:func:`owner_terms`): ``Σ H_i = S/N`` and
   ``Σ G_i = [m_1 … m_K]``, so the solution's column ``k`` is ``x_k = N·S⁻¹m_k``, and
   ``H`` has a diagonal ≤ 1, as the exact solve's precision bound assumes. With the
   pooled covariance ``Σ_w = S/N`` (scikit-learn's choice), ``x_k = Σ_w⁻¹m_k`` is the
   class's weight vector ``w_k`` itself, and the buyer adds
   ``b_k = −½ m_kᵀw_k + log(n_k/N)`` (:func:`discriminants`).

This module is the arithmetic; the parties' messages for it are not written yet.
"""

from __future__ import annotations

import numpy as np

from deltaml.errors import DataError
from deltaml.learning.models import QuadraticTerms, Standardization

__all__ = ["class_means", "class_sums", "discriminants", "owner_terms", "raw_discriminants"]


def _standardized(x: np.ndarray, stats: Standardization) -> np.ndarray:
    z: np.ndarray = (np.asarray(x, dtype=np.float64) - stats.means) / stats.scales
    return z


def class_sums(x: np.ndarray, y: np.ndarray, classes: int, stats: Standardization) -> np.ndarray:
    """One owner's ``[n_k, Σ_{y=k} z]`` per class (``classes × (d + 1)``), ``y`` coded
    ``0 … classes − 1``."""
    z = _standardized(x, stats)
    y = np.asarray(y)
    return np.array([[np.sum(y == k), *z[y == k].sum(axis=0)] for k in range(classes)])


def class_means(total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The class counts and means from the summed :func:`class_sums` of every owner."""
    counts = np.rint(total[:, 0])
    if np.any(counts < 1) or not np.allclose(total[:, 0], counts):
        raise DataError("every class needs at least one row among the owners")
    return counts, total[:, 1:] / counts[:, None]


def owner_terms(
    x: np.ndarray, y: np.ndarray, means: np.ndarray, total_rows: int, stats: Standardization
) -> QuadraticTerms:
    """One owner's exact-solve terms for every class at once: its within-class scatter
    over ``N``, and its share ``N_i/N`` of the class means as the ``d × K`` right-hand
    side (see the module docstring)."""
    z = _standardized(x, stats)
    centred = z - means[np.asarray(y, dtype=int)]
    share = len(z) / total_rows
    return QuadraticTerms(centred.T @ centred / total_rows, share * means.T, 0.0)


def discriminants(
    solution: np.ndarray, counts: np.ndarray, means: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The scores ``w_k`` (``K × d``) and ``b_k`` on standardized features from the exact
    solve's ``d × K`` solution, column ``k`` being ``N·S⁻¹m_k = Σ_w⁻¹m_k``."""
    w = np.asarray(solution).T
    b = -0.5 * np.einsum("kd,kd->k", means, w) + np.log(counts / counts.sum())
    return w, b


def raw_discriminants(
    w: np.ndarray, b: np.ndarray, stats: Standardization
) -> tuple[np.ndarray, np.ndarray]:
    """The same scores on the data's own units: ``score_k(x) = x·coef_k + intercept_k``."""
    coef = w / stats.scales
    return coef, b - coef @ stats.means
