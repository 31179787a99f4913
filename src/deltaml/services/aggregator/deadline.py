"""Stopping a training early so that it can still finish before its on-chain deadline.

After each evaluated round the runner asks :func:`stop_for_deadline` whether the
rounds to the next evaluated one, the contributions, the final model and the
chain's transactions still fit before the deadline less a margin (estimated from
the rounds so far). If not, training finishes with the rounds done: a signed
``DeadlineStop`` record in the transcript says where and why, and the payment
rule is unchanged.
"""

from __future__ import annotations

import logging

from deltaml.evidence.published import is_evaluated, last_round
from deltaml.protocol import records
from deltaml.protocol.messages import TrainingSpec
from deltaml.roles.aggregator import Aggregator, Checkpoint
from deltaml.services.aggregator.core import ServiceCore

log = logging.getLogger(__name__)


class DeadlineStop(Exception):
    """Training stops after ``round``: the next one could not finish before the deadline."""

    def __init__(self, round_: int) -> None:
        super().__init__(f"stopping after round {round_} for the deadline")
        self.round = round_


def next_evaluated_round(k: int, spec: TrainingSpec, published: dict[int, float]) -> int | None:
    """The evaluated round that would follow round ``k``, if ``k`` may be the last one
    and training would not stop at ``k`` anyway (else ``None``)."""
    rounds = spec.rounds
    if k >= rounds or not is_evaluated(k, rounds, spec.eval_every):
        return None  # only an evaluated round can be the last one
    if last_round(rounds, spec.target_improvement, published) <= k:
        return None  # it stops here anyway
    return next(j for j in range(k + 1, rounds + 1) if is_evaluated(j, rounds, spec.eval_every))


def stop_for_deadline(
    core: ServiceCore,
    rid: int,
    spec: TrainingSpec,
    aggregator: Aggregator,
    cp: Checkpoint,
    began: tuple[float, int],
) -> None:
    """Raise :class:`DeadlineStop` after round ``cp.round`` if training to the next
    evaluated round, and then finishing, could pass the deadline less the margin.

    ``began`` is when (by the chain's clock) and after which round this runner began.
    """
    if core.ledger is None or not cp.record.rounds:
        return
    k = cp.round
    following = next_evaluated_round(k, spec, cp.record.published)
    if following is None:
        return
    now = core.clock()
    timed = [r.seconds for r in cp.record.rounds]
    per_round = sum(timed) / len(timed)
    if k > began[1]:  # the rounds this runner trained, by the clock of the chain
        per_round = max(per_round, (now - began[0]) / (k - began[1]))
    # The rounds to the next metric, then the contributions, the final model and
    # the chain's transactions (about one more round), and the margin.
    margin = core.config.deadline_margin
    needed = (following - k + 1) * per_round + margin
    deadline = core.deadline_of(rid, core.request_row(rid).chain_request_id)
    if now + needed <= deadline:
        return
    stop = records.DeadlineStop(
        round=k,
        deadline=deadline,
        at=int(now),
        round_seconds=round(per_round, 3),
        margin_seconds=margin,
        next_evaluated_round=following,
    )
    aggregator.evidence.record(stop)
    body = stop.to_body()
    cp.transcript_head = aggregator.evidence.head
    cp.transcript_count = aggregator.evidence.writer.count
    core.save_checkpoint(rid, cp)
    core.store.put("deadline_stops", str(rid), body)
    core.event(rid, "deadline_stop", body)
    log.warning(
        "request %d: stopping after round %d: round %d could not finish %.0f s before the deadline",
        rid,
        k,
        following,
        margin,
    )
    raise DeadlineStop(k)
