"""The chain watcher: deadlines, settlements, the aggregator's fee, model deliveries.

One background thread, once a second: fail the requests past their on-chain
deadline, settle the finished ones whose challenge window has passed, withdraw
the aggregator's fee of the settled ones, and queue each buyer's final model once
its result is final on chain. A failing pass is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import sqlalchemy as sa

from deltaml.errors import DeltaMLError
from deltaml.ledger.base import RequestStatus
from deltaml.protocol.status import Status
from deltaml.services import wire
from deltaml.services.aggregator.core import ServiceCore, accepted_count
from deltaml.services.serve import guarded
from deltaml.services.store import jobs, requests

log = logging.getLogger(__name__)

#: Gas sent with a ``settle`` that cannot be estimated yet (it needs about 40 000).
SETTLE_GAS = 150_000


class ChainWatcher:
    """What the aggregator does on its own, by the clock and the chain."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self.store = core.store
        self.ledger = core.ledger

    def start(self, interval: float = 1.0) -> None:
        """Watch on a daemon thread until the service stops."""

        def watch() -> None:
            while not self.core.stop.wait(interval):
                self.once()

        threading.Thread(target=watch, name="watcher", daemon=True).start()

    def once(self) -> None:
        """One pass: every task, each on its own (a failure is logged, not raised)."""
        guarded("deadlines", self.expire_overdue)
        guarded("fees", self.withdraw_fees)
        guarded("settlements", self.settle_due)
        guarded("deliveries", self.deliver_models)

    # -- deadlines ------------------------------------------------------------------------
    def expire_overdue(self) -> list[int]:
        """Fail every open or running request whose on-chain deadline has passed.

        An open one is aborted on chain at once, so the buyer can reclaim its
        deposit; a running one stops at the end of its current round (its runner
        then aborts it). Returns the ids found overdue.
        """
        if self.ledger is None:
            return []
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(requests.c.id, requests.c.chain_request_id, requests.c.status).where(
                    requests.c.status.in_((Status.OPEN, Status.IN_PROGRESS))
                )
            ).all()
        if not rows:
            return []
        # A chain's latest block can lag the clock while nobody transacts; the next
        # block will not: whichever is later is when the next transaction runs.
        now = max(self.ledger.now(), int(time.time()))
        overdue = []
        for row in rows:
            if now <= self.core.deadline_of(row.id, row.chain_request_id):
                continue
            overdue.append(row.id)
            if row.status == Status.IN_PROGRESS:
                self.core.overdue.add(row.id)
            else:
                self._fail_open(row.id)
        return overdue

    def _fail_open(self, rid: int) -> None:
        with self.store.begin() as conn:
            accepted = accepted_count(conn, rid)
            needed = conn.execute(
                sa.select(requests.c.requirements).where(requests.c.id == rid)
            ).scalar_one()["owners"]
        self.core.abort_on_chain(rid)
        self.core.set_status(
            rid,
            Status.FAILED,
            error=f"the deadline passed with {accepted} of the {needed} owners it needs",
        )
        log.info("request %d failed: deadline passed while open", rid)

    # -- settlement -----------------------------------------------------------------------
    def settle_due(self) -> list[int]:
        """Settle every finished request whose challenge window has passed without a
        dispute (or whose dispute the arbiter left unresolved: it is then void).
        Anyone may; the aggregator does it so that its fee and the owners' pay come."""
        if self.ledger is None:
            return []
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(requests.c.id, requests.c.chain_request_id, requests.c.updated_at).where(
                    requests.c.status == Status.FINISHED
                )
            ).all()
        settled = []
        for row in rows:
            ends = self._window_passed(row)
            if ends is None:
                continue
            try:
                self._settle_late(row.chain_request_id, ends)
            except DeltaMLError as exc:  # the chain's clock may lag: next time
                log.debug("request %d: not settled yet: %s", row.id, exc)
                continue
            settled.append(row.id)
            log.info("request %d: settled on chain after its window", row.id)
        return settled

    def _window_passed(self, row: Any) -> int | None:
        """When the challenge (or dispute) window of a finished request ended, if it has."""
        assert self.ledger is not None
        state = self.ledger.request(row.chain_request_id)
        if state.status == RequestStatus.FINISHED:
            ends, windows = state.challenge_ends_at, 1
        elif state.status == RequestStatus.DISPUTED:
            ends, windows = state.resolution_ends_at, 2
        else:
            return None
        if ends is None:
            return None
        # The chain's clock (its latest block) stands still while nobody sends a
        # transaction, and a development chain's may run ahead of this machine's
        # (time travel): the window has passed by the chain's clock, or by this
        # machine's since the result was posted (``updated_at``).
        waited = time.time() - float(row.updated_at or time.time())
        if self.ledger.now() <= ends and waited <= windows * state.challenge_window_s:
            return None
        return int(ends)

    def _settle_late(self, cid: int, ends: int) -> None:
        """``settle`` once the clock has passed ``ends``. A dev chain mines only when
        sent a transaction, so its latest block can be older than ``ends``: a gas
        estimate runs at that block's time and is refused. Then send with fixed gas
        (on this ledger's lock, so nonces stay in order): the block it is mined in
        has the clock's time."""
        assert self.ledger is not None
        if self.ledger.now() > ends:
            self.ledger.settle(cid)
            return
        from deltaml.ledger.web3_ledger import Web3Ledger

        if not isinstance(self.ledger, Web3Ledger):
            self.ledger.settle(cid)
            return
        fixed = Web3Ledger(
            self.ledger.chain,
            self.ledger.contract_address,
            self.core.account,
            gas_limit=SETTLE_GAS,
            check_code=False,
        )
        fixed._lock = self.ledger._lock
        fixed.settle(cid)

    def withdraw_fees(self) -> int:
        """Withdraw the aggregator's fee of every settled request (once each)."""
        if self.ledger is None:
            return 0
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(requests.c.id, requests.c.chain_request_id, requests.c.result).where(
                    requests.c.status == Status.FINISHED
                )
            ).all()
        total = 0
        for row in rows:
            if (row.result or {}).get("fee_withdrawn"):
                continue
            state = self.ledger.request(row.chain_request_id)
            if state.status != RequestStatus.SETTLED:
                continue
            cid = row.chain_request_id
            if not self.ledger.has_withdrawn(cid) and self.ledger.claimable(cid):
                total += self.ledger.withdraw(cid)
            with self.store.begin() as conn:
                conn.execute(
                    requests.update()
                    .where(requests.c.id == row.id)
                    .values(result={**row.result, "fee_withdrawn": True})
                )
        return total

    # -- deliveries -----------------------------------------------------------------------
    def deliver_models(self) -> int:
        """Queue the final model for each buyer whose request is settled on chain (at
        once without a chain): the buyer gets the model only once the result is final."""
        done = 0
        for key, delivery in self.store.items("deliveries"):
            if delivery.get("queued"):
                continue
            rid = int(key)
            row = self.core.request_row(rid)
            if self.ledger is not None:
                state = self.ledger.request(row.chain_request_id)
                if state.status != RequestStatus.SETTLED:
                    continue
            message = wire.loads(delivery["message"].encode("utf-8"))
            job = self.core.queue.put(rid, row.buyer, message)
            self.store.put("deliveries", key, {**delivery, "queued": job})
            self.core.event(rid, "model_delivered", {"job": job})
            log.info("request %d: settled; final model queued for the buyer", rid)
            done += 1
        return done

    def requeue_deliveries(self) -> None:
        """After a restart: a final model queued before it went stale with its job."""
        for key, delivery in self.store.items("deliveries"):
            job = delivery.get("queued")
            if not job:
                continue
            with self.store.begin() as conn:
                status = conn.execute(
                    sa.select(jobs.c.status).where(jobs.c.id == int(job))
                ).scalar_one_or_none()
            if status != "done":
                self.store.put("deliveries", key, {"message": delivery["message"]})
