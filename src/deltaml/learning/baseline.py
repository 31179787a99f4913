"""The honest baseline: the exact optimum of the training objective on the same rows.

What a run is measured against is the minimizer of the objective the protocol
trains, on the trainers' rows pooled, with the run's ``l2`` and the protocol's own
standardization — solved to machine precision, not approximated:

- the objective is ``f(w) = (c/N)·‖Aw − r‖² + (λ/2)·‖w′‖² + const`` (see
  :meth:`deltaml.learning.models.ModelType.local_terms`: ``A`` the standardized
  design with its intercept column, ``r`` the transformed target, ``w′`` the
  weights without the intercept), i.e. a least-squares problem; we solve it with
  :func:`numpy.linalg.lstsq` on the augmented system ``[√(2c/N)·A; √λ·I′]`` (never
  the normal equations, which square the condition number), with no singular
  value cut-off below machine precision, then one step of iterative refinement;
- for logistic regression the training objective is the second-order Taylor
  loss, so the same solve gives its optimum; the *test* figures are compared with
  scikit-learn's ``LogisticRegression`` on the same standardized rows, with a
  tight tolerance and the penalty matching our ``l2`` (none when ``l2 = 0``).

scikit-learn's own default figure is kept (``sklearn_test_*``) and shown next to
the optimum only where the two differ: scikit-learn 1.9's ``LinearRegression``
passes its ``tol`` as the cut-off of ``lstsq`` and drops directions with small
singular values (columns of scale 10⁻³ next to columns of scale 10³), which is
not the least-squares optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deltaml.learning.models import ModelType, Standardization

#: Relative difference below which scikit-learn's figure is not shown separately.
SAME_RELATIVE = 1e-6


@dataclass(frozen=True)
class Optimum:
    """The exact minimizer of the training objective and its value."""

    weights: np.ndarray
    objective: float


def _objective(
    model: ModelType, a: np.ndarray, r: np.ndarray, n_total: int, w: np.ndarray
) -> float:
    resid = a @ w - r
    penalty = 0.5 * model.l2 * len(a) / n_total * float(w[:-1] @ w[:-1])
    return (
        model.loss_weight * float(resid @ resid) + model.loss_offset * len(a)
    ) / n_total + penalty


def training_objective(
    model: ModelType,
    stats: Standardization,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
) -> float:
    """``f(w)``: the training objective on these rows (as the sum of the parties' terms)."""
    a = stats.design(x)
    r = model.residual_target(np.asarray(y, dtype=np.float64), stats)
    return _objective(model, a, r, stats.count, np.asarray(w, dtype=np.float64))


def exact_optimum(
    model: ModelType, stats: Standardization, x: np.ndarray, y: np.ndarray
) -> Optimum:
    """The minimizer of the training objective on ``x, y``, to machine precision."""
    a = stats.design(x)
    r = model.residual_target(np.asarray(y, dtype=np.float64), stats)
    n_total = stats.count
    d = a.shape[1]
    scale = np.sqrt(2.0 * model.loss_weight / n_total)
    # the ridge term is shared by rows (λ·n/N), as the parties' terms sum to
    ridge = np.sqrt(model.l2 * len(a) / n_total) * np.eye(d)[:-1]
    system = np.vstack([scale * a, ridge]) if model.l2 > 0 else scale * a
    rhs = np.concatenate([scale * r, np.zeros(d - 1)]) if model.l2 > 0 else scale * r
    w, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    # one step of iterative refinement on the residual
    dw, *_ = np.linalg.lstsq(system, rhs - system @ w, rcond=None)
    w = w + dw
    return Optimum(w, _objective(model, a, r, n_total, w))


def relative_gap(value: float, optimum: float) -> float:
    """``(f(w) − f*) / |f*|``."""
    return (value - optimum) / abs(optimum)


def differs(a: float, b: float) -> bool:
    return abs(a - b) > SAME_RELATIVE * max(abs(a), abs(b), 1e-300)


def baseline_metrics(
    model: ModelType,
    stats: Standardization,
    weights: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
) -> tuple[dict[str, float], str]:
    """Our test figures, the exact optimum's, and scikit-learn's default next to them.

    Keys: ``test_mse``/``optimum_test_mse``/``sklearn_test_mse`` (regression) or
    ``test_auc``/``test_accuracy`` and their ``optimum_``/``sklearn_`` twins
    (classification), and ``optimum_objective``; with a note saying why scikit-learn's
    figure differs from the optimum's (empty when it does not).
    """
    from sklearn import linear_model
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = exact_optimum(model, stats, x_train, y_train)
    scores = model.decision_function(test_x, weights, stats)
    if model.task == "regression":
        sk = linear_model.LinearRegression().fit(x_train, y_train)
        best_scores = model.decision_function(test_x, best.weights, stats)
        out: dict[str, float] = {
            "test_mse": float(np.mean((scores - test_y) ** 2)),
            "optimum_test_mse": float(np.mean((best_scores - test_y) ** 2)),
            "sklearn_test_mse": float(np.mean((sk.predict(test_x) - test_y) ** 2)),
            "optimum_objective": best.objective,
        }
        note = ""
        if differs(float(out["sklearn_test_mse"]), float(out["optimum_test_mse"])):
            d = x_train.shape[1]
            rank = int(getattr(sk, "rank_", None) or d)
            note = (
                f"scikit-learn's LinearRegression kept {rank} of {d} directions "
                "(its tol cuts small singular values of the unscaled data)"
                if rank < d
                else "scikit-learn's LinearRegression fits the unscaled data without "
                f"our l2 ({model.l2:g})"
                if model.l2 > 0
                else "scikit-learn's LinearRegression lost precision on the unscaled data"
            )
        return out, note
    # the Taylor objective's optimum, and the true logistic optimum with our l2
    a_train = stats.design(x_train)[:, :-1]
    a_test = stats.design(test_x)[:, :-1]
    # C = ∞ is "no penalty" (scikit-learn ≥ 1.8 deprecates penalty=None)
    c = 1.0 / (model.l2 * len(x_train)) if model.l2 > 0 else np.inf
    opt = linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=100_000)
    opt.fit(a_train, y_train)
    sk = make_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=5000))
    sk.fit(x_train, y_train)
    taylor_scores = model.decision_function(test_x, best.weights, stats)
    note = "" if model.l2 == 0 else f"scikit-learn's default has C=1, not our l2 ({model.l2:g})"
    return {
        "test_auc": float(roc_auc_score(test_y, scores)),
        "optimum_test_auc": float(roc_auc_score(test_y, opt.decision_function(a_test))),
        "taylor_optimum_test_auc": float(roc_auc_score(test_y, taylor_scores)),
        "sklearn_test_auc": float(roc_auc_score(test_y, sk.decision_function(test_x))),
        "test_accuracy": float(accuracy_score(test_y, scores > 0)),
        "optimum_test_accuracy": float(accuracy_score(test_y, opt.predict(a_test))),
        "taylor_optimum_test_accuracy": float(accuracy_score(test_y, taylor_scores > 0)),
        "sklearn_test_accuracy": float(accuracy_score(test_y, sk.predict(test_x))),
        "optimum_objective": best.objective,
    }, note
