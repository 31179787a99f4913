"""The demo's settings (:class:`DemoConfig`) and what it reports (:class:`DemoResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltaml.ledger.base import MIN_CHALLENGE_WINDOW_S

MARKER = ".deltaml-demo"
DEFAULT_DIR = Path(".deltaml") / "demo"
#: The demo's challenge window: the contract's shortest. Every honest party approves
#: at once, so it matters only if a party is gone (then the aggregator settles after it).
DEMO_CHALLENGE_WINDOW_S = MIN_CHALLENGE_WINDOW_S


@dataclass
class DemoConfig:
    work_dir: Path = DEFAULT_DIR
    #: ``diabetes``, ``breast_cancer`` or a CSV file (its ``target`` column, or the last).
    dataset: str = "diabetes"
    target: str | None = None
    #: ``linear`` or ``logistic``; ``None``: by the data set's task.
    model: str | None = None
    owners: int = 5
    rounds: int = 12
    eval_every: int = 3
    #: ``admm`` (rounds) or ``exact`` (one masked solve to the optimum).
    solver: str = "admm"
    #: ``rotation`` or ``gram`` (the validators' Gram matrices: roles/forms.py).
    metric_protocol: str = "rotation"
    seed: int = 0
    key_bits: int = 2048
    deposit_wei: int = 10**18
    chain_url: str | None = None
    party_timeout: float = 120.0
    #: Stop the aggregator (SIGKILL) once this round is done and start it again.
    crash_after_round: int | None = None
    #: Stop a data owner of role ``kill_role`` (SIGKILL) once this round is done.
    kill_owner_after_round: int | None = None
    kill_role: str = "trainer"
    timeout: float = 900.0
    #: Serve every node over HTTPS, with certificates from a CA made for this run.
    tls: bool = False


@dataclass
class DemoResult:
    status: str
    seconds: float
    startup_seconds: float
    chain: str
    test_mse: float | None
    sklearn_test_mse: float | None
    deposit_wei: int
    payouts_wei: dict[str, int]
    refund_wei: int
    contributions: dict[str, float]
    metrics: dict[str, float]
    transcript: str
    verified: bool
    owners: list[dict[str, Any]]
    statuses: dict[str, str]
    urls: dict[str, str]
    restarts: int = 0
    error: str = ""
    model: str = "linear"
    dataset: str = "diabetes"
    #: Logistic models: test AUC and accuracy, the model's and scikit-learn's.
    test_auc: float | None = None
    sklearn_test_auc: float | None = None
    test_accuracy: float | None = None
    sklearn_test_accuracy: float | None = None
    #: The exact optimum of the training objective on the trainers' rows (the honest
    #: baseline: docs/exactness.md), and why scikit-learn's figure differs, if it does.
    optimum_test_mse: float | None = None
    optimum_test_auc: float | None = None
    optimum_test_accuracy: float | None = None
    baseline_note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "dataset": self.dataset,
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "chain": self.chain,
            "test_mse": self.test_mse,
            "sklearn_test_mse": self.sklearn_test_mse,
            "test_auc": self.test_auc,
            "sklearn_test_auc": self.sklearn_test_auc,
            "test_accuracy": self.test_accuracy,
            "sklearn_test_accuracy": self.sklearn_test_accuracy,
            "optimum_test_mse": self.optimum_test_mse,
            "optimum_test_auc": self.optimum_test_auc,
            "optimum_test_accuracy": self.optimum_test_accuracy,
            **({"baseline_note": self.baseline_note} if self.baseline_note else {}),
            "deposit_wei": str(self.deposit_wei),
            "payouts_wei": {a: str(v) for a, v in self.payouts_wei.items()},
            "refund_wei": str(self.refund_wei),
            "contributions": self.contributions,
            "metrics": self.metrics,
            "transcript": self.transcript,
            "verified": self.verified,
            "owners": self.owners,
            "statuses": self.statuses,
            "urls": self.urls,
            "restarts": self.restarts,
            **({"error": self.error} if self.error else {}),
        }
