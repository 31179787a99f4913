"""The aggregator's queue of work for the parties, and the transport that uses it.

Owners and buyers open no port: they fetch their work from the aggregator
(long-polling ``GET /work``) and post their replies. The aggregator's protocol
code is unchanged: :class:`QueueTransport` turns each of its requests into a job
in the store and waits for the reply. Jobs are written before they are offered, so
a restarted aggregator knows which it had sent; those still open at a restart are
marked stale and their late replies refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool

from deltaml.errors import BusyError, ConflictError, DeltaMLError, NotFoundError, ProtocolError
from deltaml.protocol.messages import Message
from deltaml.services import wire
from deltaml.services.store import Store, jobs
from deltaml.transport.base import PartyTimeout, Transport


class JobError(DeltaMLError):
    """A call the queue cannot take: one of the three kinds below."""


class UnknownJob(JobError, NotFoundError):
    """No such job, or not this party's."""


class JobClosed(JobError, ConflictError):
    """The job no longer waits for a reply (answered, stale, timed out)."""


class TooManyPolls(JobError, BusyError):
    """A party, or all together, hold as many long-polls as the queue allows."""


@dataclass(frozen=True)
class Job:
    id: int
    request_id: int
    kind: str
    payload: str


#: Open long-polls one address may hold (a node runs one work loop), and in all.
MAX_POLLS_PER_PARTY = 4
MAX_POLLS = 2000
#: A waiting long-poll looks at the database at least this often (a missed wake-up).
_RECHECK_SECONDS = 5.0


class WorkQueue:
    """Jobs by party, in the store; waiting is on a condition, the truth in the database.

    Parties long-poll with :meth:`take_async`: the wait is an ``asyncio`` event that
    :meth:`put` sets from whichever thread queues the job, so a waiting poll holds no
    thread. At most :data:`MAX_POLLS_PER_PARTY` polls per address and
    :data:`MAX_POLLS` in all wait at once; beyond, :class:`TooManyPolls`.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_polls_per_party: int = MAX_POLLS_PER_PARTY,
        max_polls: int = MAX_POLLS,
    ) -> None:
        self.store = store
        self._changed = threading.Condition()
        self.max_polls_per_party = max_polls_per_party
        self.max_polls = max_polls
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._polls = 0
        self._waiters_lock = threading.Lock()

    def _wake(self, party: str) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters.get(party, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def take_async(self, party: str, wait_seconds: float) -> Job | None:
        """:meth:`take` for the event loop: the database in a thread, the wait in none."""
        party = party.lower()
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        with self._waiters_lock:
            mine = self._waiters.setdefault(party, set())
            if len(mine) >= self.max_polls_per_party:
                if not mine:
                    del self._waiters[party]
                raise TooManyPolls(
                    f"{party} already has {len(mine)} open long-polls: at most "
                    f"{self.max_polls_per_party}",
                )
            if self._polls >= self.max_polls:
                if not mine:
                    del self._waiters[party]
                raise TooManyPolls("too many open long-polls: try again later")
            mine.add(entry)
            self._polls += 1
        try:
            deadline = time.monotonic() + max(0.0, wait_seconds)
            while True:
                event.clear()
                job = await run_in_threadpool(self.try_take, party)
                left = deadline - time.monotonic()
                if job is not None or left <= 0:
                    return job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, _RECHECK_SECONDS))
        finally:
            with self._waiters_lock:
                self._polls -= 1
                mine = self._waiters.get(party, set())
                mine.discard(entry)
                if not mine:
                    self._waiters.pop(party, None)

    def try_take(self, party: str) -> Job | None:
        """The party's oldest queued job, now taken, or None."""
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(jobs.c.id, jobs.c.request_id, jobs.c.kind, jobs.c.payload)
                .where(jobs.c.party == party.lower(), jobs.c.status == "queued")
                .order_by(jobs.c.id)
                .limit(1)
            ).first()
            if row is None:
                return None
            taken = conn.execute(
                jobs.update()
                .where(jobs.c.id == row.id, jobs.c.status == "queued")
                .values(status="taken", taken_at=time.time())
            ).rowcount
            if not taken:  # another poll of the same party took it first
                return None
            return Job(row.id, row.request_id, row.kind, row.payload)

    def put(self, request_id: int, party: str, message: Message) -> int:
        payload = wire.dumps(message).decode("utf-8")
        with self.store.begin() as conn:
            job_id = conn.execute(
                jobs.insert().values(
                    request_id=request_id,
                    party=party.lower(),
                    kind=message.kind,
                    payload=payload,
                    status="queued",
                    created_at=time.time(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        with self._changed:
            self._changed.notify_all()
        self._wake(party.lower())
        return int(job_id)

    def take(self, party: str, wait_seconds: float) -> Job | None:
        """The party's oldest queued job (now taken), waiting up to ``wait_seconds`` for one."""
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            job = self.try_take(party)
            if job is not None:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._changed:
                self._changed.wait(min(left, 1.0))

    def check_open(self, job_id: int, party: str) -> None:
        """Refuse (404/409) unless ``job_id`` is ``party``'s and waits for its reply.

        Cheap, and called before a reply is parsed: a stranger's body is never parsed.
        """
        with self.store.begin() as conn:
            self._check_open(conn, job_id, party)

    @staticmethod
    def _check_open(conn: sa.Connection, job_id: int, party: str) -> None:
        row = conn.execute(
            sa.select(jobs.c.party, jobs.c.status).where(jobs.c.id == job_id)
        ).first()
        if row is None or row.party != party.lower():
            raise UnknownJob(f"no job {job_id} for {party}")
        if row.status != "taken":
            raise JobClosed(f"job {job_id} is {row.status}: it is no longer waiting for a reply")

    def reply(self, job_id: int, party: str, reply: str, *, failed: bool = False) -> None:
        """Store the party's reply (or, with ``failed``, its error message) to ``job_id``."""
        with self.store.begin() as conn:
            self._check_open(conn, job_id, party)
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(status="failed" if failed else "done", reply=reply, done_at=time.time())
            )
        with self._changed:
            self._changed.notify_all()

    def wait(
        self, job_ids: Sequence[int], timeout: float, stop: threading.Event | None = None
    ) -> list[str]:
        """The replies to ``job_ids`` in order; raises if a party failed or timed out."""
        deadline = time.monotonic() + timeout
        pending = set(job_ids)
        replies: dict[int, str] = {}
        while pending:
            with self.store.begin() as conn:
                rows = conn.execute(
                    sa.select(
                        jobs.c.id, jobs.c.party, jobs.c.kind, jobs.c.status, jobs.c.reply
                    ).where(jobs.c.id.in_(pending), jobs.c.status.in_(("done", "failed")))
                ).all()
            for row in rows:
                if row.status == "failed":
                    raise ProtocolError(f"{row.party} could not do {row.kind}: {row.reply}")
                replies[row.id] = row.reply
                pending.discard(row.id)
            if not pending:
                break
            if stop is not None and stop.is_set():
                raise ProtocolError("the aggregator is stopping")
            left = deadline - time.monotonic()
            if left <= 0:
                with self.store.begin() as conn:
                    late = conn.execute(
                        sa.select(jobs.c.party).where(jobs.c.id.in_(pending))
                    ).scalars()
                    parties = sorted(set(late))
                    conn.execute(jobs.update().where(jobs.c.id.in_(pending)).values(status="stale"))
                raise PartyTimeout(parties, timeout)
            with self._changed:
                self._changed.wait(min(left, 1.0))
        return [replies[j] for j in job_ids]

    def expire_open(self, request_id: int | None = None) -> int:
        """Mark every open job (of one request, or all) stale; returns how many."""
        query = jobs.update().where(jobs.c.status.in_(("queued", "taken")))
        if request_id is not None:
            query = query.where(jobs.c.request_id == request_id)
        with self.store.begin() as conn:
            count = conn.execute(query.values(status="stale")).rowcount
        with self._changed:
            self._changed.notify_all()
        return int(count)


class QueueTransport(Transport):
    """The aggregator's side of the protocol over the work queue; party ids are addresses."""

    def __init__(
        self,
        queue: WorkQueue,
        request_id: int,
        timeout: float,
        stop: threading.Event | None = None,
    ) -> None:
        self.queue = queue
        self.request_id = request_id
        self.timeout = timeout
        self.stop = stop

    def request(self, party_id: str, message: Message) -> Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, Message]]) -> list[Message]:
        ids = [self.queue.put(self.request_id, party, msg) for party, msg in requests]
        try:
            replies = self.queue.wait(ids, self.timeout, self.stop)
        except PartyTimeout as exc:  # name the parties as the caller does (the queue lowercases)
            named = {party.lower(): party for party, _ in requests}
            raise PartyTimeout([named.get(p, p) for p in exc.parties], self.timeout) from None
        return [wire.loads(r.encode("utf-8")) for r in replies]
