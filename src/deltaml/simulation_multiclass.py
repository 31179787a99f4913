"""A multinomial target in simulation: one two-class protocol run per class (one-vs-rest).

Split from :mod:`deltaml.simulation` (which re-exports :func:`simulate_one_vs_rest` and
:func:`multiclass_test_metrics` under their old import path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deltaml.estimator import TrainedModel
from deltaml.learning.data import Dataset
from deltaml.roles.aggregator import RoundRecord
from deltaml.transport import Transport

if TYPE_CHECKING:
    from deltaml.simulation import SimulationConfig, SimulationResult


def simulate_one_vs_rest(
    config: SimulationConfig,
    shares: list[Dataset],
    test: Dataset | None,
    progress: Callable[[RoundRecord], None] | None = None,
    transport_wrapper: Callable[[Transport], Transport] | None = None,
) -> SimulationResult:
    """A multinomial target, one-vs-rest: one two-class protocol run per class.

    Run ``k`` trains ``classes[k]`` against the rest on the same owners (so the
    same role split), with its own keys, transcript and, on a chain, its own
    deposit: K requests, not one. The result holds the K × d coefficients, the
    runs in ``per_class``, and the test accuracy and macro AUC next to
    scikit-learn's multinomial ``LogisticRegression`` on the same rows.
    """
    classes = shares[0].classes
    assert classes is not None and len(classes) > 2
    from deltaml.simulation import owner_ids, simulate_shares

    runs: list[SimulationResult] = []
    for k, label in enumerate(classes):
        binary = [
            dataclasses.replace(s, y=(s.y == k).astype(np.float64), classes=("rest", label))
            for s in shares
        ]
        transcript = config.transcript
        if transcript is not None:
            path = Path(transcript)
            transcript = str(path.with_name(f"{path.stem}-class{k}{path.suffix}"))
        run_config = dataclasses.replace(config, transcript=transcript)
        runs.append(
            simulate_shares(
                run_config, "logistic", "classification", binary, None, progress, transport_wrapper
            )
        )
    first = runs[0]
    failed = [r.verification for r in runs if r.verification is not None and not r.verification.ok]
    payouts: dict[str, int] = {}
    contributions = np.zeros(len(first.trainers))
    for r in runs:
        for pid, wei in r.payouts_wei.items():
            payouts[pid] = payouts.get(pid, 0) + wei
        contributions += np.array(r.contributions or [0.0] * len(first.trainers))
    record = dataclasses.replace(
        first.record,
        setup_seconds=sum(r.setup_seconds for r in runs),
        training_seconds=sum(r.training_seconds for r in runs),
        metric_seconds=sum(r.metric_seconds for r in runs),
        contribution_seconds=sum(r.contribution_seconds for r in runs),
        contributions=[float(c) for c in contributions] if first.contributions else [],
    )
    result = dataclasses.replace(
        first,
        config=config,
        record=record,
        coefficients=np.vstack([r.coefficients for r in runs]),
        intercept=np.array([r.intercept for r in runs]),  # type: ignore[arg-type]
        weights=np.vstack([r.weights for r in runs]),
        seconds=sum(r.seconds for r in runs),
        keygen_seconds=sum(r.keygen_seconds for r in runs),
        verify_seconds=sum(r.verify_seconds for r in runs),
        objective_gap=max(r.objective_gap for r in runs),
        payouts_wei=payouts,
        refund_wei=sum(r.refund_wei for r in runs),
        verification=failed[0] if failed else runs[-1].verification,
        classes=classes,
        per_class=runs,
        test={},
    )
    if test is not None:
        trainer_shares = [shares[owner_ids(len(shares)).index(oid)] for oid in first.trainers]
        result.test = multiclass_test_metrics(
            result.trained_model(),
            np.concatenate([s.X for s in trainer_shares]),
            np.concatenate([s.y for s in trainer_shares]),
            test,
        )
    return result


def multiclass_test_metrics(
    model: TrainedModel, x_train: np.ndarray, y_train: np.ndarray, test: Dataset
) -> dict[str, float]:
    """Accuracy and macro one-vs-rest AUC, ours next to scikit-learn's multinomial
    logistic regression trained on the same rows; and our AUC per class."""
    from sklearn import linear_model
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sk = make_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=5000))
    sk.fit(x_train, y_train)
    proba = model.predict_proba(test.X)
    scores = model.decision_function(test.X)
    out = {
        "test_accuracy": float(accuracy_score(test.y, np.argmax(scores, axis=1))),
        "sklearn_test_accuracy": float(accuracy_score(test.y, sk.predict(test.X))),
        "test_auc": float(roc_auc_score(test.y, proba, multi_class="ovr", average="macro")),
        "sklearn_test_auc": float(
            roc_auc_score(test.y, sk.predict_proba(test.X), multi_class="ovr", average="macro")
        ),
    }
    for k, label in enumerate(model.classes or ()):
        out[f"test_auc[{label}]"] = float(roc_auc_score(test.y == k, scores[:, k]))
    return out
