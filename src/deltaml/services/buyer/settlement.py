"""The buyer's settlement: verify the evidence, approve or dispute, take back what is due.

A background thread looks at each of the buyer's requests until it is settled:
once the result is on chain it verifies the public transcript against the
contract and approves the result (or disputes it with the hash of the reason),
then withdraws its refund; a request that will not finish (failed, cancelled,
past its deadline) has its deposit reclaimed, whatever the aggregator says.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from deltaml.ledger.base import Ledger, RequestState, RequestStatus
from deltaml.protocol.status import Status
from deltaml.services.party import approve_or_dispute
from deltaml.services.serve import guarded

if TYPE_CHECKING:
    from deltaml.services.buyer.node import BuyerNode

log = logging.getLogger(__name__)


class Settlement:
    """Settles the requests of one buyer node (see the module's docstring)."""

    def __init__(self, node: BuyerNode) -> None:
        self.node = node
        self.store = node.store
        self._stop = threading.Event()
        # One settle at a time: the approve button and the watcher read the verdict
        # and write the settlement record; interleaved, the watcher's older "not
        # approved yet" could overwrite the approval just recorded.
        self._settling = threading.RLock()
        self._thread = threading.Thread(target=self._watch, name="settlement", daemon=True)

    @property
    def ledger(self) -> Ledger | None:
        return self.node.ledger  # set when the node starts

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.store.items("requests"):
                rid = int(key)
                if self.store.get("settlement", key) is not None:
                    continue
                guarded(
                    f"request {rid}: settlement",
                    functools.partial(self.settle, rid, approve=self.node.config.auto_approve),
                )
            self._stop.wait(self.node.config.watch_interval)

    def overdue(self, state: RequestState) -> bool:
        """Whether the contract lets the buyer reclaim an unfinished request: its
        deadline has passed (the next block's time is at least the clock's)."""
        assert self.ledger is not None
        unfinished = state.status in (RequestStatus.OPEN, RequestStatus.IN_PROGRESS)
        return unfinished and max(self.ledger.now(), int(time.time())) > state.deadline

    def settle(self, rid: int, approve: bool = True) -> dict[str, Any] | None:
        """Once the result is on chain: verify the evidence, then approve it (or, on a
        failed check, dispute it with the hash of the reason), then withdraw the refund.

        The final model comes from the aggregator only once the result is settled on
        chain. Past the deadline of a request that has not finished on chain, the
        deposit is reclaimed whatever the aggregator says, or even if it does not answer.
        """
        with self._settling:
            return self._settle(rid, approve)

    def _settle(self, rid: int, approve: bool) -> dict[str, Any] | None:
        saved = self.node.saved(rid)
        if self.ledger is not None:
            cid = int(saved["chain_request_id"])
            if self.overdue(self.ledger.request(cid)):
                return self.reclaim(rid, {"status": Status.FAILED, "chain_request_id": cid})
        view = self.node.client.get(f"/requests/{rid}")
        if view["status"] in (Status.FAILED, Status.CANCELLED):
            return self.reclaim(rid, view)
        if view["status"] != Status.FINISHED:
            return None
        if self.ledger is None:
            return self._settle_without_chain(rid)
        return self._settle_on_chain(rid, view, approve)

    def _settle_without_chain(self, rid: int) -> dict[str, Any] | None:
        if self.store.get("models", str(rid)) is None:
            return None  # without a contract the model comes at once
        report = self.node.verify(rid)
        local = {"verified": report.ok, "failures": [str(f) for f in report.failures]}
        self.store.put("settlement", str(rid), local)
        return local

    def _settle_on_chain(
        self, rid: int, view: dict[str, Any], approve: bool
    ) -> dict[str, Any] | None:
        assert self.ledger is not None
        cid = int(view["chain_request_id"])
        verdict = self.store.get("verdicts", str(rid))
        if verdict is None or (approve and not verdict.get("approved") and verdict["verified"]):
            verdict = self._judge(rid, cid, view, approve)
            if verdict is None:
                return None
        state = self.ledger.request(cid)
        outcome: dict[str, Any] = dict(verdict)
        if state.status == RequestStatus.FAILED:  # the arbiter voided the result
            return self.reclaim(rid, {"status": Status.FAILED, "chain_request_id": cid})
        if state.status == RequestStatus.FINISHED and verdict["verified"] and not approve:
            # Verified, left to be approved by hand (the approve endpoint).
            self.store.put("settlement", str(rid), outcome)
            return outcome
        if state.status != RequestStatus.SETTLED:
            # Waiting for the other approvals, the window or the arbiter: the verdict
            # so far (the settlement is recorded once the refund is withdrawn).
            return outcome
        if not self.ledger.has_withdrawn(cid):
            outcome["refund_wei"] = str(
                self.ledger.withdraw(cid) if self.ledger.claimable(cid) else 0
            )
        self.store.put("settlement", str(rid), outcome)
        log.info("request %d: settled", rid)
        return outcome

    def _judge(
        self, rid: int, cid: int, view: dict[str, Any], approve: bool
    ) -> dict[str, Any] | None:
        """Verify the public transcript and the contract's record of it; approve the
        result on chain if both hold (and ``approve``), dispute it if they do not."""
        assert self.ledger is not None
        state = self.ledger.request(cid)
        if state.status != RequestStatus.FINISHED:
            if state.status in (RequestStatus.SETTLED, RequestStatus.DISPUTED):
                verdict = {"verified": False, "failures": [], "approved": False}
                verdict["note"] = f"the result was {state.status.name} before this buyer checked it"
                self.store.put("verdicts", str(rid), verdict)
                return verdict
            return None
        verdict = approve_or_dispute(
            self.ledger,
            cid,
            self.node.verify(rid),
            view["result"]["transcript_head"],
            approve=approve,
            who="this buyer",
        )
        self.store.put("verdicts", str(rid), verdict)
        return verdict

    def reclaim(self, rid: int, view: dict[str, Any]) -> dict[str, Any] | None:
        """Take the deposit back from a request that will not finish; record the refund
        once it is in (until then the settlement thread tries again)."""
        if self.ledger is None:
            self.store.put("settlement", str(rid), {"status": view["status"]})
            return None
        cid = int(view["chain_request_id"])
        state = self.ledger.request(cid)
        if state.status == RequestStatus.OPEN and view["status"] == Status.CANCELLED:
            self.ledger.cancel(cid)  # the contract sends the deposit back at once
        elif self.overdue(state) or (
            state.status == RequestStatus.FAILED and self.ledger.claimable(cid)
        ):
            self.ledger.reclaim(cid)
        elif not self.ledger.has_withdrawn(cid):
            return None
        refund = self.ledger.request(cid).refund_wei
        outcome = {"status": view["status"], "reclaimed_wei": str(refund)}
        self.store.put("settlement", str(rid), outcome)
        log.info("request %d ended %s; deposit reclaimed", rid, view["status"])
        return outcome
