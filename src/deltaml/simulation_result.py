"""What a simulated run gives: the aggregator's record and what the simulation adds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from deltaml.estimator import DEFAULT_CLASSES, TrainedModel
from deltaml.evidence.verify import VerificationReport
from deltaml.marketplace import ChainSettlement
from deltaml.roles.training_state import TrainingRecord

if TYPE_CHECKING:
    from deltaml.simulation import SimulationConfig


@dataclass
class SimulationResult:
    """A whole run: the aggregator's :class:`TrainingRecord` (who trained and validated,
    rounds, public metrics, contributions, timings — read through the properties
    below) and what the simulation adds (the buyer's model, test figures, the chain,
    the verification)."""

    config: SimulationConfig
    model: str
    task: str
    record: TrainingRecord
    seconds: float
    keygen_seconds: float
    objective_gap: float
    weights: np.ndarray
    coefficients: np.ndarray
    #: A float; one per class (an array) for more than two classes.
    intercept: float | np.ndarray
    test: dict[str, float] = field(default_factory=dict)
    #: Why scikit-learn's default figure differs from the exact optimum's ("" if it does not).
    baseline_note: str = ""
    #: Each party's Ethereum address.
    addresses: dict[str, str] = field(default_factory=dict)
    #: Wei per party (trainers, validators, the aggregator) and back to the buyer.
    payouts_wei: dict[str, int] = field(default_factory=dict)
    refund_wei: int = 0
    #: Path of the public transcript (``None``: kept in memory).
    transcript: str | None = None
    #: The checks of ``deltaml verify`` on this run's transcript (``None``: not run).
    verification: VerificationReport | None = None
    verify_seconds: float = 0.0
    #: What the chain did (``None``: run without a chain).
    settlement: ChainSettlement | None = None
    #: The data's feature and target names and, for classification, its class labels.
    features: tuple[str, ...] = ()
    target: str = ""
    classes: tuple[str, ...] | None = None
    #: A mixed table's request (raw features, ``missing``, ``categorical``): the model
    #: then encodes raw rows itself (:meth:`deltaml.estimator.TrainedModel.encode`).
    table: dict[str, Any] | None = None
    #: ``missing_indicator: false``: each column's published mean, filling empty cells.
    impute_means: list[float] | None = None

    # The aggregator's record, as the run's own fields.
    trainers = property(lambda self: self.record.trainers)
    validators = property(lambda self: self.record.validators)
    rounds = property(lambda self: self.record.rounds)
    refreshes = property(lambda self: self.record.refreshes)
    setup_seconds = property(lambda self: self.record.setup_seconds)
    training_seconds = property(lambda self: self.record.training_seconds)
    metric_seconds = property(lambda self: self.record.metric_seconds)
    contribution_seconds = property(lambda self: self.record.contribution_seconds)
    initial_metric = property(lambda self: self.record.initial_metric)
    #: Shapley value per trainer (``trainers`` order), in validation-SSE units.
    contributions = property(lambda self: self.record.contributions)
    contribution_weights = property(lambda self: self.record.contribution_weights)
    #: The transcript's last record's hash.
    transcript_head = property(lambda self: self.record.transcript_head)

    def trained_model(self) -> TrainedModel:
        """The buyer's model as it downloads it (see :class:`deltaml.estimator.TrainedModel`)."""
        return TrainedModel(
            self.model,
            self.features,
            self.target,
            self.coefficients,
            self.intercept,
            len(self.rounds),
            (self.classes or DEFAULT_CLASSES) if self.model == "logistic" else None,
            self.table,
        )

    @property
    def multiclass(self) -> bool:
        """More than two classes: one model per class, from one exact solve."""
        return self.model == "logistic" and len(self.classes or ()) > 2

    @property
    def verified(self) -> bool | None:
        return None if self.verification is None else self.verification.ok

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "dataset": self.config.dataset,
            "model": self.model,
            "task": self.task,
            "owners": self.config.owners,
            "trainers": self.trainers,
            "validators": self.validators,
            "key_bits": self.config.key_bits,
            "solver": self.config.solver,
            "rounds": len(self.rounds),
            "refreshes": self.refreshes,
            "seconds": round(self.seconds, 4),
            "setup_seconds": round(self.setup_seconds, 4),
            "training_seconds": round(self.training_seconds, 4),
            "metric_seconds": round(self.metric_seconds, 4),
            "contribution_seconds": round(self.contribution_seconds, 4),
            "keygen_seconds": round(self.keygen_seconds, 4),
            "cpu_seconds": {
                phase: {who: round(s, 4) for who, s in split.items()}
                for phase, split in self.record.cpu.items()
            },
            "objective_gap": self.objective_gap,
            "initial_metric": self.initial_metric,
            "contributions": (
                dict(zip(self.trainers, self.contributions, strict=True))
                if self.contributions
                else {}
            ),
            "contribution_weights": (
                dict(zip(self.trainers, self.contribution_weights, strict=True))
                if self.contribution_weights
                else {}
            ),
            "deposit_wei": self.config.deposit_wei,
            "payouts_wei": dict(self.payouts_wei),
            "refund_wei": self.refund_wei,
            "addresses": dict(self.addresses),
            "verified": self.verified,
            "verification_failures": (
                [str(f) for f in self.verification.failures] if self.verification else []
            ),
            "verify_seconds": round(self.verify_seconds, 4),
            "chain": self.settlement.to_json() if self.settlement else None,
            "transcript": self.transcript,
            "transcript_hash": self.transcript_head,
            "validation_metric": {
                str(r.round): r.metric for r in self.rounds if r.metric is not None
            },
            "coefficients": np.asarray(self.coefficients).tolist(),
            "intercept": np.asarray(self.intercept).tolist(),
        }
        if self.multiclass:
            out["classes"] = list(self.classes or ())
        out.update(self.test)
        if "optimum_objective" in self.test:
            out["baseline_note"] = self.baseline_note
        return out
