"""The training runner: one thread per running request, checkpointed every round.

It runs the protocol of :class:`deltaml.roles.aggregator.Aggregator` over the work
queue (:class:`~deltaml.services.queue.QueueTransport`), writes the transcript,
checkpoints each round (the exact solve: each of its stages,
:mod:`deltaml.roles.exact_checkpoint`) so that a restarted service goes on from there,
stops early when the next round could not end before the deadline, and posts the
metrics and the result on the contract. The buyer's final model is held back
(:class:`HoldFinalModel`) until the result is final on chain.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from deltaml.crypto import PublicKey
from deltaml.crypto.serialization import unpack_vectors
from deltaml.errors import DeltaMLError, ProtocolError
from deltaml.evidence.chain import chain_id_of
from deltaml.evidence.transcript import ChainBinding, TranscriptWriter, sealed_path_for
from deltaml.ledger.base import RequestStatus
from deltaml.ledger.payouts import scale_metric
from deltaml.protocol import messages as m
from deltaml.protocol.exact_messages import ExactModel
from deltaml.protocol.merkle import SeatBook
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.spec import requirement_features
from deltaml.protocol.status import OfferStatus, SeatRole, Status
from deltaml.roles.aggregator import (
    Aggregator,
    Checkpoint,
    ExactCheckpoint,
    RoundRecord,
    TrainingRecord,
    split_roles,
)
from deltaml.roles.exact_checkpoint import is_exact
from deltaml.services import wire
from deltaml.services.aggregator.core import ServiceCore
from deltaml.services.aggregator.deadline import DeadlineStop, stop_for_deadline
from deltaml.services.queue import QueueTransport
from deltaml.services.store import checkpoints, offers
from deltaml.transport.base import Transport

log = logging.getLogger(__name__)

AnyCheckpoint = Checkpoint | ExactCheckpoint


class HoldFinalModel(Transport):
    """Passes every message on but the buyer's ``FinalModel`` (or the exact solve's
    ``ExactModel``), which it keeps: the service sends it only once the result is final
    on chain (fair exchange)."""

    def __init__(self, inner: Transport, buyer: str) -> None:
        self.inner = inner
        self.buyer = buyer
        self.held: m.FinalModel | ExactModel | None = None

    def request(self, party_id: str, message: m.Message) -> m.Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, m.Message]]) -> list[m.Message]:
        finals = [
            i
            for i, (party, msg) in enumerate(requests)
            if isinstance(msg, m.FinalModel | ExactModel) and party.lower() == self.buyer.lower()
        ]
        if not finals:
            return self.inner.request_all(requests)
        if len(requests) > 1:
            raise ProtocolError("the final model goes to the buyer alone")
        self.held = requests[0][1]  # type: ignore[assignment]
        return [m.Ack("held until the result is final on chain")]


@dataclasses.dataclass
class _Run:
    """One training of one request: what its callbacks share."""

    rid: int
    row: Any
    spec: TrainingSpec
    key: PublicKey
    initial: Any
    aggregator: Aggregator
    transport: HoldFinalModel
    #: Set when the request stopped for its deadline (before a restart, or now).
    stopped: dict[str, Any] | None
    #: When (by the chain's clock) and after which round this runner began training.
    began: tuple[float, int]
    latest: list[Checkpoint] = dataclasses.field(default_factory=list)


class TrainingRunner:
    """Starts, resumes and finishes the training of each request on its own thread.

    A request resumed from an exact checkpoint saved before the buyer's solution fails
    in one line (:data:`~deltaml.roles.exact_checkpoint.NOT_RESUMABLE`): the trainers
    and the buyer answer the exact solve once."""

    def __init__(self, core: ServiceCore, deliver: Callable[[], int]) -> None:
        self.core = core
        self.store = core.store
        self.ledger = core.ledger
        #: Queues the final models whose results are final (after each training).
        self.deliver = deliver
        self._runners: dict[int, threading.Thread] = {}

    def launch(self, rid: int) -> None:
        """Train request ``rid`` on its own thread (once: a running one is left alone)."""
        with self.core.lock:
            if rid in self._runners and self._runners[rid].is_alive():
                return
            thread = threading.Thread(
                target=self.run, args=(rid,), name=f"request-{rid}", daemon=True
            )
            self._runners[rid] = thread
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in list(self._runners.values()):
            thread.join(timeout)

    def run(self, rid: int) -> None:
        """Train request ``rid``; a failure fails the request (and aborts it on chain)."""
        try:
            self.train(rid)
        except Exception as exc:  # a request fails; the service goes on
            if self.core.stop.is_set():
                log.info("request %d paused by shutdown", rid)
                return
            message = str(exc) if isinstance(exc, DeltaMLError) else type(exc).__name__
            log.warning("request %d failed: %s", rid, message)
            if not isinstance(exc, DeltaMLError):
                log.exception("request %d: unexpected error", rid)
            self.core.abort_on_chain(rid)
            self.core.set_status(rid, Status.FAILED, error=message)

    # -- seats ----------------------------------------------------------------------------
    def seats(self, rid: int, row: Any, spec: TrainingSpec) -> tuple[list[str], list[str]]:
        """The trainers and validators of request ``rid``: the chain's seats once it
        has started (so a restart trains exactly the parties the contract pays), else
        the owners that accepted and consented on chain, split by the spec's rule."""
        if self.ledger is not None:
            cid = row.chain_request_id
            state = self.ledger.request(cid)
            if state.status != RequestStatus.OPEN:
                return self._seated_on_chain(rid, cid, spec, state.seat_root)
        with self.store.begin() as conn:
            accepted = sorted(
                conn.execute(
                    sa.select(offers.c.owner).where(
                        offers.c.request_id == rid,
                        offers.c.status.in_((OfferStatus.INITIATED, OfferStatus.IN_PROGRESS)),
                    )
                ).scalars()
            )
        if self.ledger is not None:
            joined = [o for o in accepted if self.ledger.has_joined(row.chain_request_id, o)]
            if len(joined) < len(accepted):
                log.warning(
                    "request %d: %d owner(s) accepted without joining on chain; not seated",
                    rid,
                    len(accepted) - len(joined),
                )
            accepted = joined
        return split_roles(accepted, spec.trainer_fraction, spec.split_seed)

    def _seated_on_chain(
        self, rid: int, cid: int, spec: TrainingSpec, seat_root: bytes
    ) -> tuple[list[str], list[str]]:
        """The seats of a started request: the chain holds only their Merkle root, so
        they are the owners given a role before ``start``, split by the same rule, and
        must hash to that root."""
        assert self.ledger is not None
        with self.store.begin() as conn:
            seated = sorted(
                conn.execute(
                    sa.select(offers.c.owner).where(offers.c.request_id == rid, offers.c.role != "")
                ).scalars()
            )
        trainers, validators = split_roles(seated, spec.trainer_fraction, spec.split_seed)
        if SeatBook.of(trainers, validators).seat_root(self.ledger.binding(cid)) != seat_root:
            raise ProtocolError(f"request {rid}: the seats on record are not the chain's seats")
        return trainers, validators

    def _seat(self, rid: int, row: Any, trainers: list[str], validators: list[str]) -> Any:
        """Record each seat's role, start the request on chain; the saved checkpoint."""
        with self.store.begin() as conn:
            saved = conn.execute(
                sa.select(checkpoints.c.data).where(checkpoints.c.request_id == rid)
            ).scalar_one_or_none()
            for owner in [*trainers, *validators]:
                conn.execute(
                    offers.update()
                    .where(offers.c.request_id == rid, offers.c.owner == owner)
                    .values(role=SeatRole.TRAINER if owner in trainers else SeatRole.VALIDATOR)
                )
        if self.ledger is not None:
            state = self.ledger.request(row.chain_request_id)
            if state.status == RequestStatus.OPEN:
                self.ledger.start(row.chain_request_id, trainers, validators)
        return saved

    # -- training -------------------------------------------------------------------------
    def train(self, rid: int) -> None:
        row = self.core.request_row(rid)
        spec = TrainingSpec(**row.spec)
        key = PublicKey.from_dict(row.public_key)
        (initial,) = unpack_vectors(row.initial_model)
        trainers, validators = self.seats(rid, row, spec)
        accepted = sorted([*trainers, *validators])
        if len(accepted) < row.requirements["owners"]:
            raise ProtocolError(
                f"only {len(accepted)} of the {row.requirements['owners']} owners it needs "
                "have joined on chain"
            )
        saved = self._seat(rid, row, trainers, validators)
        resume = load_checkpoint(json.loads(saved)) if saved else None
        writer = self._transcript(rid, row, resume)
        queue = QueueTransport(self.core.queue, rid, self.core.config.party_timeout, self.core.stop)
        transport = HoldFinalModel(queue, row.buyer)
        aggregator = Aggregator(
            transport,
            row.buyer,
            accepted,
            account=self.core.account,
            addresses={a: a for a in [row.buyer, *accepted]},
            transcript=writer,
        )
        run = _Run(
            rid,
            row,
            spec,
            key,
            initial,
            aggregator,
            transport,
            stopped=self.store.get("deadline_stops", str(rid)),
            began=(self.core.clock(), resume.round if resume is not None else 0),
        )
        try:
            record = self._rounds(run, resume)
        finally:
            for stream in (writer.public, writer.sealed):
                if stream is not None:
                    stream.close()
        self._finish(run, record, trainers, validators)

    def _transcript(self, rid: int, row: Any, resume: AnyCheckpoint | None) -> TranscriptWriter:
        """The request's transcript: reopened at the checkpoint, or begun."""
        path = self.core.transcript_path(rid)
        if resume is not None:
            writer = TranscriptWriter.reopen(path, resume.transcript_head, resume.transcript_count)
        else:
            writer = TranscriptWriter(
                public=path.open("w", encoding="ascii"),
                sealed=sealed_path_for(path).open("w", encoding="ascii"),
                keep=False,
            )
        if self.ledger is not None:  # what the transcript's final record names
            writer.chain = ChainBinding(
                chain_id_of(self.ledger) or 0,
                self.ledger.contract_address,
                row.chain_request_id,
                row.requirements,
            )
        return writer

    def _rounds(self, run: _Run, resume: AnyCheckpoint | None) -> TrainingRecord:
        """Train (from ``resume``); once more to the round it stopped at for the deadline."""
        if run.stopped is not None:  # stopped for the deadline before a restart
            rounds = int(run.stopped["round"])
            return self._train_once(run, dataclasses.replace(run.spec, rounds=rounds), resume)
        try:
            return self._train_once(run, run.spec, resume)
        except DeadlineStop as stop:
            run.stopped = {"round": stop.round}
            shorter = dataclasses.replace(run.spec, rounds=stop.round)
            return self._train_once(run, shorter, run.latest[0])

    def _train_once(
        self, run: _Run, spec: TrainingSpec, start: AnyCheckpoint | None
    ) -> TrainingRecord:
        stopped_before = run.stopped is not None

        def checkpoint(cp: AnyCheckpoint) -> None:
            if isinstance(cp, Checkpoint):  # the rounds' (the deadline stop reads it)
                run.latest[:] = [cp]
            if cp.round == 0:
                run.began = (self.core.clock(), 0)
            self.checkpoint(run.rid, cp)

        def progress(rec: RoundRecord) -> None:
            self.progress(run.rid, rec)
            if not stopped_before and run.latest:
                stop_for_deadline(self.core, run.rid, run.spec, run.aggregator, *_latest(run))

        return run.aggregator.train(
            spec,
            run.key,
            run.initial,
            len(requirement_features(run.row.requirements)),
            include_target=run.spec.model == "linear",
            progress=progress,
            checkpoint=checkpoint,
            resume=start,
        )

    def _finish(
        self, run: _Run, record: TrainingRecord, trainers: list[str], validators: list[str]
    ) -> None:
        """Hold the final model, post the result on chain, record it as FINISHED."""
        rid = run.rid
        assert record.payouts is not None and record.initial_metric is not None
        if run.transport.held is None:
            raise ProtocolError("the training ended without a final model")
        # The final model goes to the buyer only once the result is final on chain.
        message = wire.dumps(run.transport.held).decode()
        self.store.put("deliveries", str(rid), {"message": message})
        self._post_result(run.row.chain_request_id, record, SeatBook.of(trainers, validators))
        if record.dropped:
            with self.store.begin() as conn:
                conn.execute(
                    offers.update()
                    .where(offers.c.request_id == rid, offers.c.owner.in_(record.dropped))
                    .values(status=OfferStatus.FAILED, updated_at=time.time())
                )
        result = result_summary(record, trainers, validators, self.core.address, run.stopped)
        self.core.set_status(rid, Status.FINISHED, result=result)
        log.info("request %d finished after %d rounds", rid, len(record.rounds))
        self.deliver()

    def _post_result(self, cid: int, record: TrainingRecord, seats: SeatBook) -> None:
        """The metrics not posted yet, then the result, on the contract."""
        if self.ledger is None:
            return
        assert record.initial_metric is not None
        final_metric = record.rounds[-1].metric
        assert final_metric is not None
        self.ledger.post_result(
            cid,
            {k: scale_metric(value) for k, value in record.metrics.items()},
            scale_metric(record.initial_metric),
            scale_metric(final_metric),
            list(record.contribution_weights),
            bytes.fromhex(record.transcript_head),
            seats=seats,
        )

    # -- callbacks of the protocol ---------------------------------------------------------
    def progress(self, rid: int, rec: RoundRecord) -> None:
        """A round is done: publish its metric; past the deadline, the request fails."""
        self.core.event(rid, "round", {"round": rec.round, "metric": rec.metric})
        if rid in self.core.overdue:
            raise ProtocolError(f"the deadline passed during training, after round {rec.round}")

    def checkpoint(self, rid: int, cp: AnyCheckpoint) -> None:
        self.core.save_checkpoint(rid, cp)


def load_checkpoint(data: dict[str, Any]) -> AnyCheckpoint:
    """A saved checkpoint: the rounds' or the exact solve's."""
    return ExactCheckpoint.from_json(data) if is_exact(data) else Checkpoint.from_json(data)


def _latest(run: _Run) -> tuple[Checkpoint, tuple[float, int]]:
    return run.latest[0], run.began


def result_summary(
    record: TrainingRecord,
    trainers: list[str],
    validators: list[str],
    aggregator: str,
    stopped: dict[str, Any] | None,
) -> dict[str, Any]:
    """A finished request's public result, as the database and the views keep it."""
    assert record.payouts is not None
    payouts = record.payouts
    return {
        "trainers": trainers,
        "dropped": list(record.dropped),
        "validators": validators,
        "initial_metric": record.initial_metric,
        "metrics": {str(k): v for k, v in record.metrics.items()},
        "contributions": (
            dict(zip(trainers, record.contributions, strict=True)) if record.contributions else {}
        ),
        "payouts_wei": {
            party: str(wei)
            for party, wei in payouts.by_party(trainers, validators, aggregator).items()
        },
        "refund_wei": str(payouts.refund),
        "transcript_head": record.transcript_head,
        "refreshes": record.refreshes,
        "rounds": record.rounds[-1].round,
        # Set when training stopped early so that it could finish before the deadline.
        "deadline_stop": stopped,
    }
