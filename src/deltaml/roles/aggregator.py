"""The federated aggregator: orchestrates the rounds and adds ciphertexts it cannot read."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from deltaml.crypto import EncryptedVector, PublicKey, needs_refresh
from deltaml.errors import DeltaMLValueError, ProtocolError
from deltaml.learning.contributions import mix_columns
from deltaml.learning.metrics import mix_residual_vectors, secure_generator
from deltaml.learning.standardize import sums_length
from deltaml.roles import messages as m
from deltaml.transport.base import Transport

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=m.Message)


def split_roles(
    owner_ids: Sequence[str], trainer_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Random trainer/validator split, ``round(fraction · n)`` trainers, at least one of each."""
    if len(owner_ids) < 2:
        raise DeltaMLValueError(
            "training needs at least two data owners (a trainer and a validator)"
        )
    if not 0 < trainer_fraction < 1:
        raise DeltaMLValueError("trainer fraction must lie strictly between 0 and 1")
    n = len(owner_ids)
    n_trainers = min(n - 1, max(1, math.floor(trainer_fraction * n + 0.5)))
    shuffled = list(owner_ids)
    random.Random(seed).shuffle(shuffled)
    return sorted(shuffled[:n_trainers]), sorted(shuffled[n_trainers:])


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

    @property
    def metrics(self) -> dict[int, float]:
        return {r.round: r.metric for r in self.rounds if r.metric is not None}


ProgressCallback = Callable[[RoundRecord], None]


class Aggregator:
    """Runs one training request over a :class:`~deltaml.transport.Transport`.

    It holds the encrypted sum ``t = Σ s_i`` and sees nothing but ciphertexts,
    public statistics and the published metrics.
    """

    def __init__(
        self,
        transport: Transport,
        buyer_id: str,
        owner_ids: Sequence[str],
        party_id: str = "aggregator",
    ):
        self.party_id = party_id
        self.transport = transport
        self.buyer_id = buyer_id
        self.owner_ids = list(owner_ids)
        self._rng = secure_generator()

    def train(
        self,
        spec: m.TrainingSpec,
        public_key: PublicKey,
        initial_model: EncryptedVector,
        n_features: int,
        include_target: bool,
        progress: ProgressCallback | None = None,
    ) -> TrainingRecord:
        if spec.rounds < 1:
            raise DeltaMLValueError("rounds must be at least 1")
        if spec.eval_every < 1:
            raise DeltaMLValueError("eval_every must be at least 1")
        if len(initial_model) != n_features + 1:
            raise DeltaMLValueError(
                "the initial model needs one weight per feature plus the intercept"
            )
        t0 = time.perf_counter()
        trainers, validators = split_roles(self.owner_ids, spec.trainer_fraction, spec.split_seed)
        record = TrainingRecord(trainers, validators, spec.split_seed)
        log.info(
            "split: %d trainers, %d validators (seed %d)",
            len(trainers),
            len(validators),
            spec.split_seed,
        )

        stats = self._standardize(public_key, spec.base_exponent, n_features, include_target)
        setups = self.transport.request_all(
            [
                (
                    oid,
                    m.Setup(
                        "trainer" if oid in trainers else "validator",
                        spec,
                        stats,
                        public_key,
                        len(trainers),
                        initial_model,
                    ),
                )
                for oid in trainers + validators
            ]
        )
        growth = max(_expect(r, m.SetupDone).growth_bits for r in setups[: len(trainers)])
        metric_growth = 2 * (spec.precision_bits + 8)
        next_growth = growth + max(len(trainers), 1).bit_length() + metric_growth

        states = {oid: initial_model for oid in trainers}
        total = initial_model.mul_int(len(trainers))
        record.setup_seconds = time.perf_counter() - t0
        e0 = time.perf_counter()
        record.initial_metric = self._evaluate(
            0, total.rerandomize(), validators, spec.precision_bits
        )
        record.metric_seconds += time.perf_counter() - e0
        first_updates: list[EncryptedVector] = []

        for k in range(1, spec.rounds + 1):
            r0 = time.perf_counter()
            refreshed = any(needs_refresh(v, next_growth) for v in (total, *states.values()))
            if refreshed:
                states = self._refresh(k, trainers, spec.base_exponent)
                total = sum(states.values())  # type: ignore[assignment]
                record.refreshes += 1
            # A sum of ciphertexts is a function of what the trainers sent: re-randomize
            # it before it leaves, like everything else.
            outgoing = total.rerandomize()
            replies = self.transport.request_all(
                [(oid, m.RoundRequest(k, outgoing)) for oid in trainers]
            )
            states = {
                oid: _expect(r, m.StateUpdate).state
                for oid, r in zip(trainers, replies, strict=True)
            }
            total = sum(states.values())  # type: ignore[assignment]
            if k == 1:
                first_updates = [states[oid] for oid in trainers]
            rec = RoundRecord(k, 0.0, refreshed)
            record.training_seconds += time.perf_counter() - r0
            if k % spec.eval_every == 0 or k == spec.rounds:
                e0 = time.perf_counter()
                rec.metric = self._evaluate(k, total.rerandomize(), validators, spec.precision_bits)
                record.metric_seconds += time.perf_counter() - e0
            rec.seconds = time.perf_counter() - r0
            record.rounds.append(rec)
            if progress is not None:
                progress(rec)

        if spec.contributions:
            c0 = time.perf_counter()
            record.contributions = self._contributions(
                first_updates, validators, spec.precision_bits
            )
            record.contribution_seconds = time.perf_counter() - c0
        _expect(
            self.transport.request(
                self.buyer_id, m.FinalModel(total.rerandomize(), len(trainers), spec.rounds)
            ),
            m.Ack,
        )
        return record

    def _contributions(
        self, first_updates: list[EncryptedVector], validators: list[str], precision_bits: int
    ) -> list[float]:
        request = m.ContributionRequest(tuple(u.rerandomize() for u in first_updates))
        replies = self.transport.request_all([(oid, request) for oid in validators])
        blocks = [_expect(r, m.ContributionColumns).columns for r in replies]
        mixed = mix_columns(blocks, precision_bits, self._rng)
        reply = self.transport.request(self.buyer_id, m.GramRequest(tuple(mixed), base_round=0))
        values = _expect(reply, m.ContributionValues).values
        if len(values) != len(first_updates):
            raise ProtocolError("the buyer returned the wrong number of contributions")
        return list(values)

    def _standardize(
        self, key: PublicKey, exponent: int, n_features: int, include_target: bool
    ) -> m.PublicStats:
        request = m.StatsRequest(include_target, key, exponent)
        replies = self.transport.request_all([(oid, request) for oid in self.owner_ids])
        sums = [_expect(r, m.EncryptedSums).sums for r in replies]
        expected = sums_length(n_features, include_target)
        if any(len(s) != expected or s.public_key != key for s in sums):
            raise ProtocolError("an owner sent statistics of the wrong size or key")
        total: EncryptedVector = sum(sums)  # type: ignore[assignment]
        reply = self.transport.request(
            self.buyer_id, m.DecryptStats(total, len(sums), n_features, include_target)
        )
        return _expect(reply, m.PublicStats)

    def _refresh(
        self, k: int, trainers: list[str], base_exponent: int
    ) -> dict[str, EncryptedVector]:
        replies = self.transport.request_all([(oid, m.RefreshPrepare(k)) for oid in trainers])
        masked = tuple(_expect(r, m.MaskedState).masked for r in replies)
        fresh = _expect(
            self.transport.request(self.buyer_id, m.RefreshRequest(k, masked, base_exponent)),
            m.Refreshed,
        )
        if len(fresh.vectors) != len(trainers):
            raise ProtocolError("the buyer refreshed the wrong number of vectors")
        done = self.transport.request_all(
            [
                (oid, m.RefreshComplete(k, vec))
                for oid, vec in zip(trainers, fresh.vectors, strict=True)
            ]
        )
        return {oid: _expect(r, m.StateUpdate).state for oid, r in zip(trainers, done, strict=True)}

    def _evaluate(
        self, k: int, total: EncryptedVector, validators: list[str], precision_bits: int
    ) -> float:
        replies = self.transport.request_all(
            [(oid, m.EvaluateRequest(k, total)) for oid in validators]
        )
        parts = [_expect(r, m.EncryptedResiduals) for r in replies]
        mixed = mix_residual_vectors([p.vector for p in parts], precision_bits, self._rng)
        rows = sum(p.rows for p in parts)
        return _expect(
            self.transport.request(self.buyer_id, m.MetricRequest(k, mixed, rows)), m.MetricValue
        ).value


def _expect(reply: m.Message, kind: type[_M]) -> _M:
    if not isinstance(reply, kind):
        raise ProtocolError(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
