"""What the aggregator keeps of a training: its public record and its resumable state."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from deltaml.crypto import EncryptedVector
from deltaml.crypto.serialization import pack_vectors, unpack_vectors
from deltaml.protocol import messages as m
from deltaml.protocol.rules import Payouts
from deltaml.protocol.rules import split_roles as split_roles  # a public rule

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


@dataclass
class RoundRecord:
    round: int
    seconds: float
    refreshed: bool = False
    metric: float | None = None


@dataclass
class TrainingRecord:
    """What the aggregator may know and keeps: who did what, public metrics, timings."""

    trainers: list[str]
    validators: list[str]
    split_seed: int
    rounds: list[RoundRecord] = field(default_factory=list)
    refreshes: int = 0
    setup_seconds: float = 0.0
    training_seconds: float = 0.0
    metric_seconds: float = 0.0
    contribution_seconds: float = 0.0
    initial_metric: float | None = None
    #: Shapley value of each trainer (in ``trainers`` order), in validation-SSE units.
    contributions: list[float] = field(default_factory=list)
    #: The integer weights the payment rule uses (``contribution_weights``), trainer order.
    contribution_weights: list[int] = field(default_factory=list)
    #: The split of the deposit by :func:`~deltaml.ledger.payouts.compute_payouts`.
    payouts: Payouts | None = None
    #: Hash of the transcript's last record: what goes on the contract.
    transcript_head: str = ""
    #: Trainers dropped for not answering (their states left the sum; they earn nothing).
    dropped: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[str]:
        """The trainers still in the training, in ``trainers`` order."""
        return [t for t in self.trainers if t not in self.dropped]

    @property
    def metrics(self) -> dict[int, float]:
        return {r.round: r.metric for r in self.rounds if r.metric is not None}

    @property
    def published(self) -> dict[int, float]:
        """Every published metric by round, the initial model's as round 0."""
        initial = {} if self.initial_metric is None else {0: self.initial_metric}
        return {**initial, **self.metrics}


ProgressCallback = Callable[[RoundRecord], None]


@dataclass
class Checkpoint:
    """The aggregator's whole training state after a completed round (0: after set-up).

    Everything in it is a ciphertext, public, or the aggregator's own secret (its
    rotation openings): it is what a restarted aggregator needs to go on, and is
    stored only by the aggregator.
    """

    round: int
    record: TrainingRecord
    states: dict[str, EncryptedVector]
    total: EncryptedVector
    #: Each trainer's round-one state (for contributions), once round one is done.
    first_updates: dict[str, EncryptedVector]
    next_growth: int
    rotation_openings: dict[str, tuple[int, bytes]]
    transcript_head: str
    transcript_count: int

    def to_json(self) -> dict[str, Any]:
        trainers = self.record.active
        first = sorted(self.first_updates)
        vectors = [
            self.total,
            *(self.states[t] for t in trainers),
            *(self.first_updates[t] for t in first),
        ]
        record = dataclasses.asdict(self.record)
        record.pop("payouts", None)
        return {
            "round": self.round,
            "record": record,
            "vectors": pack_vectors(vectors),
            "first_updates": first,
            "next_growth": self.next_growth,
            "rotation_openings": {
                label: [seed, salt.hex()] for label, (seed, salt) in self.rotation_openings.items()
            },
            "transcript_head": self.transcript_head,
            "transcript_count": self.transcript_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        raw = dict(data["record"])
        rounds = [RoundRecord(**r) for r in raw.pop("rounds")]
        record = TrainingRecord(**raw, rounds=rounds)
        vectors = unpack_vectors(data["vectors"])
        n = len(record.active)
        return cls(
            round=int(data["round"]),
            record=record,
            states=dict(zip(record.active, vectors[1 : 1 + n], strict=True)),
            total=vectors[0],
            first_updates=dict(zip(data["first_updates"], vectors[1 + n :], strict=True)),
            next_growth=int(data["next_growth"]),
            rotation_openings={
                label: (int(seed), bytes.fromhex(salt))
                for label, (seed, salt) in data["rotation_openings"].items()
            },
            transcript_head=str(data["transcript_head"]),
            transcript_count=int(data["transcript_count"]),
        )
