"""What the aggregator keeps of a training: its public record and its resumable state."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deltaml.crypto import EncryptedVector
from deltaml.crypto.serialization import pack_vectors, unpack_vectors
from deltaml.protocol import messages as m
from deltaml.protocol.rules import Payouts
from deltaml.protocol.rules import split_roles as split_roles  # a public rule
from deltaml.transport.base import OutOfProcessCpu

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
    #: CPU seconds by phase (``setup``, ``training``, ``metrics``, ``contributions``),
    #: ``{"central": …, "owners": …}``, when the owners run in this process (a
    #: simulation): ``owners`` is their threads' time answering, ``central`` the rest of
    #: the process's (the aggregator, the buyer, the randomizer pools).
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

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


def record_to_json(record: TrainingRecord) -> dict[str, Any]:
    """A checkpoint's copy of ``record`` (the split is recomputed on resuming)."""
    data = dataclasses.asdict(record)
    data.pop("payouts", None)
    return data


def record_from_json(data: Mapping[str, Any]) -> TrainingRecord:
    raw = dict(data)
    rounds = [RoundRecord(**r) for r in raw.pop("rounds")]
    return TrainingRecord(**raw, rounds=rounds)


#: The record's wall-time field of each phase.
PHASE_SECONDS = {
    "setup": "setup_seconds",
    "training": "training_seconds",
    "metrics": "metric_seconds",
    "contributions": "contribution_seconds",
}


class PhaseClock:
    """Wall and CPU time of the phases of a training, added to its record.

    ``owners_cpu`` gives each party's CPU seconds so far when the parties run in this
    process (:meth:`deltaml.transport.Transport.cpu_seconds`), else ``None``.
    """

    def __init__(self, owners_cpu: Callable[[], Mapping[str, float] | None], buyer_id: str) -> None:
        self._cpu, self._buyer = owners_cpu, buyer_id

    def _owners(self) -> float | None:
        cpu = self._cpu()
        return None if cpu is None else sum(v for k, v in cpu.items() if k != self._buyer)

    def _owners_here(self) -> bool:
        """Whether the owners' CPU is part of this process's (not in worker processes)."""
        return not isinstance(self._cpu(), OutOfProcessCpu)

    @contextlib.contextmanager
    def phase(self, record: TrainingRecord, name: str) -> Iterator[None]:
        w0, c0, o0 = time.perf_counter(), time.process_time(), self._owners()
        try:
            yield
        finally:
            wall = time.perf_counter() - w0
            setattr(record, PHASE_SECONDS[name], getattr(record, PHASE_SECONDS[name]) + wall)
            o1 = self._owners()
            if o0 is not None and o1 is not None:
                owners = o1 - o0
                split = record.cpu.setdefault(name, {"central": 0.0, "owners": 0.0})
                here = owners if self._owners_here() else 0.0
                split["central"] += max(time.process_time() - c0 - here, 0.0)
                split["owners"] += owners


def openings_to_json(openings: Mapping[str, tuple[int, bytes]]) -> dict[str, list[Any]]:
    """The aggregator's rotation openings (seed, salt) as a checkpoint keeps them."""
    return {label: [seed, salt.hex()] for label, (seed, salt) in openings.items()}


def openings_from_json(data: Mapping[str, Any]) -> dict[str, tuple[int, bytes]]:
    return {label: (int(seed), bytes.fromhex(salt)) for label, (seed, salt) in data.items()}


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

    @property
    def first(self) -> bool:
        """The first checkpoint of a run (set-up and the initial model's metric done)."""
        return self.round == 0

    def to_json(self) -> dict[str, Any]:
        trainers = self.record.active
        first = sorted(self.first_updates)
        vectors = [
            self.total,
            *(self.states[t] for t in trainers),
            *(self.first_updates[t] for t in first),
        ]
        return {
            "round": self.round,
            "record": record_to_json(self.record),
            "vectors": pack_vectors(vectors),
            "first_updates": first,
            "next_growth": self.next_growth,
            "rotation_openings": openings_to_json(self.rotation_openings),
            "transcript_head": self.transcript_head,
            "transcript_count": self.transcript_count,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        record = record_from_json(data["record"])
        vectors = unpack_vectors(data["vectors"])
        n = len(record.active)
        return cls(
            round=int(data["round"]),
            record=record,
            states=dict(zip(record.active, vectors[1 : 1 + n], strict=True)),
            total=vectors[0],
            first_updates=dict(zip(data["first_updates"], vectors[1 + n :], strict=True)),
            next_growth=int(data["next_growth"]),
            rotation_openings=openings_from_json(data["rotation_openings"]),
            transcript_head=str(data["transcript_head"]),
            transcript_count=int(data["transcript_count"]),
        )
