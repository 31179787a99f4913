"""The aggregator service: its parts put together, and the few calls that span them.

:class:`AggregatorService` owns the :class:`~.core.ServiceCore` (database, queue,
chain) and the four parts built on it: the :class:`~.registry.Registry`, the
:class:`~.views.Views`, the :class:`~.runner.TrainingRunner` and the
:class:`~.watcher.ChainWatcher`. The routes use the parts; the names below are
the service's own API (the CLI, the status pages and the tests call them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.status import Status
from deltaml.roles.aggregator import RoundRecord
from deltaml.services.aggregator.core import AggregatorConfig, ServiceCore
from deltaml.services.aggregator.registry import Registry
from deltaml.services.aggregator.runner import TrainingRunner
from deltaml.services.aggregator.schemas import NewRequest, OwnerRegistration
from deltaml.services.aggregator.views import Views
from deltaml.services.aggregator.watcher import ChainWatcher
from deltaml.services.serve import guarded
from deltaml.services.store import requests

log = logging.getLogger(__name__)


class AggregatorService:
    """The registry, the views, the training runner and the watcher of one aggregator."""

    def __init__(self, config: AggregatorConfig) -> None:
        self.core = ServiceCore(config)
        self.watcher = ChainWatcher(self.core)
        self.runner = TrainingRunner(self.core, deliver=self.watcher.deliver_models)
        self.registry = Registry(self.core, start=self.runner.launch)
        self.views = Views(self.core)
        self.config = config
        self.account = self.core.account
        self.address = self.core.address
        self.store = self.core.store
        self.queue = self.core.queue
        self.ledger = self.core.ledger
        self.verifier = self.core.verifier
        self.transcripts = self.core.transcripts

    @property
    def registered(self) -> int:
        """Registered owners (what /health reports without a database query)."""
        return self.registry.registered

    # -- lifecycle ------------------------------------------------------------------------
    def resume(self) -> None:
        """After a (re)start: stale open jobs, and go on with every training in progress."""
        stale = self.queue.expire_open()
        if stale:
            log.info("%d unanswered jobs from before the restart are stale", stale)
        with self.store.begin() as conn:
            running = list(
                conn.execute(
                    sa.select(requests.c.id).where(requests.c.status == Status.IN_PROGRESS)
                ).scalars()
            )
        for rid in running:
            self.runner.launch(rid)
        self.watcher.requeue_deliveries()
        guarded("deliveries", self.watcher.deliver_models)

    def start_watcher(self, interval: float = 1.0) -> None:
        """Fail requests past their deadline; settle, withdraw the fee, deliver models."""
        self.watcher.start(interval)

    def close(self) -> None:
        self.core.stop.set()
        self.runner.join(timeout=10)
        self.store.close()

    def wait_idle(self, timeout: float) -> None:
        self.runner.join(timeout)

    # -- the watcher's tasks, one at a time (tests, the CLI) ------------------------------
    def expire_overdue(self) -> list[int]:
        return self.watcher.expire_overdue()

    def settle_due(self) -> list[int]:
        return self.watcher.settle_due()

    def withdraw_fees(self) -> int:
        return self.watcher.withdraw_fees()

    def deliver_models(self) -> int:
        return self.watcher.deliver_models()

    # -- registry -------------------------------------------------------------------------
    def register_owner(self, address: str, body: OwnerRegistration) -> dict[str, Any]:
        return self.registry.register_owner(address, body)

    def create_request(self, buyer: str, body: NewRequest) -> dict[str, Any]:
        return self.registry.create_request(buyer, body)

    def decide(self, owner: str, rid: int, accept: bool) -> dict[str, Any]:
        return self.registry.decide(owner, rid, accept)

    def cancel(self, buyer: str, rid: int) -> dict[str, Any]:
        return self.registry.cancel(buyer, rid)

    def owner_count(self) -> int:
        return self.registry.owner_count()

    # -- views ----------------------------------------------------------------------------
    def request_view(self, rid: int) -> dict[str, Any]:
        return self.views.request_view(rid)

    def list_requests(self, buyer: str | None = None) -> list[dict[str, Any]]:
        return self.views.list_requests(buyer)

    def offers_for(self, owner: str) -> list[dict[str, Any]]:
        return self.views.offers_for(owner)

    def timeline(self, rid: int) -> dict[str, Any]:
        return self.views.timeline(rid)

    def market_columns(self) -> list[str]:
        return self.views.market_columns()

    def matching_owners(self, features: list[str], target: str, min_rows: int) -> int:
        return self.views.matching_owners(features, target, min_rows)

    def arbiter_of(self, rid: int) -> str:
        return self.core.arbiter_of(rid)

    def transcript_path(self, rid: int) -> Path:
        return self.core.transcript_path(rid)

    # -- internals the tests reach (kept under their old names) ---------------------------
    def _request_row(self, rid: int) -> Any:
        return self.core.request_row(rid)

    def _set_status(self, rid: int, status: str, error: str = "", result: Any = None) -> None:
        self.core.set_status(rid, status, error, result)

    def _progress(self, rid: int, rec: RoundRecord) -> None:
        self.runner.progress(rid, rec)

    def _seats(self, rid: int, row: Any, spec: TrainingSpec) -> tuple[list[str], list[str]]:
        return self.runner.seats(rid, row, spec)
