"""The aggregator's handles and shared bookkeeping: database, queue, chain, statuses.

:class:`ServiceCore` is what the registry, the views, the training runner and the
chain watcher share. It knows nothing of HTTP: a missing request is a
:class:`~deltaml.errors.NotFoundError`, mapped to a status code in one place
(:mod:`deltaml.services.http_errors`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from deltaml.errors import DeltaMLError, NotFoundError
from deltaml.ledger.base import Ledger, RequestStatus, Role
from deltaml.protocol.status import OfferStatus, Status
from deltaml.services.auth import RequestVerifier
from deltaml.services.queue import WorkQueue
from deltaml.services.store import Store, checkpoints, events, offers, requests
from deltaml.settings import DEFAULT_PARTY_TIMEOUT_S

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from deltaml.roles.aggregator import Checkpoint, ExactCheckpoint

log = logging.getLogger(__name__)

#: An offer's statuses while the request is still to come for its owner.
_OPEN_OFFERS = (
    OfferStatus.WAITING,
    OfferStatus.READY,
    OfferStatus.INITIATED,
    OfferStatus.IN_PROGRESS,
)


@dataclass
class AggregatorConfig:
    account: LocalAccount
    database_url: str
    work_dir: Path
    ledger: Ledger | None = None
    #: Seconds a party may take to answer one protocol message before the request fails.
    party_timeout: float = DEFAULT_PARTY_TIMEOUT_S
    chain_url: str = ""
    #: No round starts unless it, the evaluation and the finish are estimated to end
    #: at least this many seconds before the request's deadline.
    deadline_margin: float = 60.0


def accepted_count(conn: sa.Connection, rid: int) -> int:
    """How many owners have accepted request ``rid`` and wait for it to start."""
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(offers)
            .where(offers.c.request_id == rid, offers.c.status == OfferStatus.INITIATED)
        ).scalar_one()
    )


class ServiceCore:
    """The database, the work queue, the chain and the locks of one aggregator."""

    def __init__(self, config: AggregatorConfig) -> None:
        self.config = config
        self.account = config.account
        self.address = str(config.account.address)
        self.store = Store(config.database_url)
        self.queue = WorkQueue(self.store)
        self.ledger = config.ledger
        self.verifier = RequestVerifier(nonces=self.store)
        self.transcripts = config.work_dir / "transcripts"
        self.transcripts.mkdir(parents=True, exist_ok=True)
        #: Set at shutdown: runners pause, the watcher ends.
        self.stop = threading.Event()
        self.lock = threading.Lock()
        #: On-chain deadlines by request id (they never change), and running requests
        #: past theirs: their runner stops at the end of the round.
        self.deadlines: dict[int, int] = {}
        self.overdue: set[int] = set()
        if self.ledger is not None and not self.ledger.has_role(self.address, Role.AGGREGATOR):
            self.ledger.register(Role.AGGREGATOR)

    def request_row(self, rid: int) -> Any:
        """Request ``rid``'s database row; :class:`NotFoundError` if there is none."""
        with self.store.begin() as conn:
            row = conn.execute(sa.select(requests).where(requests.c.id == rid)).first()
        if row is None:
            raise NotFoundError(f"no request {rid}")
        return row

    def set_status(self, rid: int, status: str, error: str = "", result: Any = None) -> None:
        """Request ``rid`` is now ``status``; the offers follow (see :func:`_offers_after`)."""
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if error:
            values["error"] = error
        if result is not None:
            values["result"] = result
        with self.store.begin() as conn:
            conn.execute(requests.update().where(requests.c.id == rid).values(**values))
            follow = _offers_after(status)
            if follow is not None:
                q = offers.update().where(offers.c.request_id == rid, offers.c.status.in_(follow))
                conn.execute(q.values(status=status, updated_at=time.time()))
        self.event(rid, "status", {"status": status, **({"error": error} if error else {})})

    def event(self, rid: int, kind: str, data: dict[str, Any]) -> None:
        """Append to request ``rid``'s public timeline."""
        with self.store.begin() as conn:
            conn.execute(
                events.insert().values(request_id=rid, at=time.time(), kind=kind, data=data)
            )

    def abort_on_chain(self, rid: int) -> None:
        """Abort request ``rid`` on chain if it is still open or running there."""
        if self.ledger is None:
            return
        row = self.request_row(rid)
        try:
            state = self.ledger.request(row.chain_request_id)
            if state.status in (RequestStatus.OPEN, RequestStatus.IN_PROGRESS):
                self.ledger.abort(row.chain_request_id)
        except DeltaMLError as exc:
            log.warning("request %d: could not abort on chain: %s", rid, exc)

    def deadline_of(self, rid: int, chain_request_id: int) -> int:
        """Request ``rid``'s on-chain deadline (read once: it never changes)."""
        assert self.ledger is not None
        if rid not in self.deadlines:
            self.deadlines[rid] = self.ledger.request(chain_request_id).deadline
        return self.deadlines[rid]

    def clock(self) -> float:
        """Now, as the next transaction will see it: a chain's latest block can lag the
        clock while nobody transacts, the next block will not."""
        chain_now = self.ledger.now() if self.ledger is not None else 0
        return max(float(chain_now), time.time())

    def arbiter_of(self, rid: int) -> str:
        """The address named on chain to resolve a dispute about request ``rid``."""
        saved = self.store.get("arbiters", str(rid))
        return str(saved["arbiter"]) if saved else ""

    def save_checkpoint(self, rid: int, cp: Checkpoint | ExactCheckpoint) -> None:
        """Save ``cp`` as request ``rid``'s checkpoint (its first publishes the initial MSE).

        The exact solve's checkpoints hold the aggregator's secrets (the mask's ``D``, the
        parts' offsets and check weights; :mod:`deltaml.roles.exact_checkpoint`), like the
        rounds' hold its rotation openings: they stay in this database, next to the sealed
        transcript, and are never sent to a party or logged."""
        if cp.first and cp.record.initial_metric is not None:
            # The initial model's MSE, public from now on (the status pages chart it).
            self.event(rid, "initial", {"metric": cp.record.initial_metric})
        data = json.dumps(cp.to_json(), separators=(",", ":"))
        with self.store.begin() as conn:
            done = conn.execute(
                checkpoints.update()
                .where(checkpoints.c.request_id == rid)
                .values(round=cp.round, data=data, updated_at=time.time())
            ).rowcount
            if not done:
                conn.execute(
                    checkpoints.insert().values(
                        request_id=rid, round=cp.round, data=data, updated_at=time.time()
                    )
                )

    def transcript_path(self, rid: int) -> Path:
        return self.transcripts / f"request-{rid}.jsonl"


def _offers_after(status: str) -> tuple[str, ...] | None:
    """Which offers take a request's new ``status`` as their own (None: no offer changes)."""
    if status == Status.IN_PROGRESS:
        return (OfferStatus.INITIATED,)
    if status == Status.FINISHED:
        return (OfferStatus.IN_PROGRESS,)
    if status in (Status.FAILED, Status.CANCELLED):
        return _OPEN_OFFERS  # the request is over for every owner still offered it
    return None
