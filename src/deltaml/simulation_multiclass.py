"""A target of more than two classes in simulation: one protocol run, ``K`` models.

The class sums join the statistics round and one exact solve fits every class
(:mod:`deltaml.learning.lda`: linear discriminant analysis, a linear softmax model of
the multinomial-logistic form). This module holds what the simulation adds for it: the
objective gap of the ``K`` columns against their exact optimum, the coefficients in the
data's own units, and the test metrics per class and macro-averaged next to
scikit-learn's multinomial ``LogisticRegression`` and ``LinearDiscriminantAnalysis``
trained on the same rows.
"""

from __future__ import annotations

import numpy as np

from deltaml.errors import DeltaMLValueError
from deltaml.estimator import TrainedModel
from deltaml.learning.baseline import relative_gap
from deltaml.learning.data import Dataset
from deltaml.learning.lda import Multinomial, raw_discriminants
from deltaml.learning.models import Standardization

__all__ = ["check_multiclass", "multiclass_figures", "multiclass_test_metrics"]


def check_multiclass(classes: int, solver: str, chain: bool, contributions: bool) -> None:
    """What a run of ``classes`` ≥ 3 classes needs, refused by name in one line."""
    if solver != "exact":
        raise DeltaMLValueError(
            f"{classes} classes are fitted by one exact solve: use --solver exact"
        )
    if chain or contributions:
        raise DeltaMLValueError(
            f"a model of {classes} classes has no encrypted validation metric yet, so "
            "nothing to pay by: run it with --no-chain --no-contributions"
        )


def multiclass_figures(
    model: Multinomial, stats: Standardization, trainer_shares: list[Dataset], weights: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The solve's objective gap against the exact optimum of the same ``K`` columns on
    the trainers' rows (``Σ_k ½w_kᵀHw_k − g_kᵀw_k``; the intercept row apart, which the
    buyer writes afterwards), and the ``K × d`` coefficients and ``K`` intercepts on the
    data's own units."""
    terms = [model.local_terms(s.X, s.y, stats) for s in trainer_shares]
    hessian = sum(t.hessian for t in terms)
    linear = sum(t.linear for t in terms)

    def objective(w: np.ndarray) -> float:
        return float(0.5 * np.einsum("ik,ij,jk->", w, hessian, w) - np.sum(linear * w))

    solution = np.array(weights, dtype=np.float64)
    solution[-1] = 0.0  # the solve's own intercept row (0 exactly: G's last row is 0)
    gap = relative_gap(objective(solution), objective(np.linalg.solve(hessian, linear)))
    coef, intercept = raw_discriminants(weights, stats)
    return gap, coef, intercept


def multiclass_test_metrics(
    model: TrainedModel, x_train: np.ndarray, y_train: np.ndarray, test: Dataset
) -> dict[str, float]:
    """Accuracy, macro AUC (one class against the rest) and macro F1, ours next to
    scikit-learn's multinomial ``LogisticRegression`` (standardized, default ``C``) and
    its ``LinearDiscriminantAnalysis`` on the same rows; and per class our AUC,
    precision, recall and F1."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(test.y, dtype=int)
    proba = model.predict_proba(test.X)
    predicted = np.argmax(proba, axis=1)
    out = {
        "test_accuracy": float(accuracy_score(y, predicted)),
        "test_auc": float(roc_auc_score(y, proba, multi_class="ovr", average="macro")),
        "test_macro_f1": float(f1_score(y, predicted, average="macro")),
    }
    references = {
        "sklearn": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "sklearn_lda": LinearDiscriminantAnalysis(),
    }
    for name, estimator in references.items():
        estimator.fit(x_train, y_train)
        theirs = estimator.predict(test.X)
        out[f"{name}_test_accuracy"] = float(accuracy_score(y, theirs))
        out[f"{name}_test_auc"] = float(
            roc_auc_score(y, estimator.predict_proba(test.X), multi_class="ovr", average="macro")
        )
        out[f"{name}_test_macro_f1"] = float(f1_score(y, theirs, average="macro"))
    labels = range(len(model.classes or ()))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=list(labels), zero_division=0.0
    )
    for k, label in enumerate(model.classes or ()):
        out[f"test_auc[{label}]"] = float(roc_auc_score(y == k, proba[:, k]))
        out[f"test_precision[{label}]"] = float(precision[k])
        out[f"test_recall[{label}]"] = float(recall[k])
        out[f"test_f1[{label}]"] = float(f1[k])
    return out
