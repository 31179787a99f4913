"""The data-owner node: keeps the data on this machine and does its encrypted work.

``deltaml owner serve --data DIR_OR_CSV --aggregator URL`` profiles each CSV
(rows, columns, types, nulls — never a value), registers them with the
aggregator and itself on the contract, and then, on a background thread, accepts
or declines the requests offered to it (by its accept policy, or by hand through
its local API), answers the protocol messages of the trainings it is in with a
:class:`deltaml.roles.DataOwner`, and withdraws what it earned once a request is
settled. Its history and earnings are kept in its own database.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from deltaml.errors import DataError, DeltaMLError, DeltaMLValueError, ProtocolError
from deltaml.learning.data import Dataset, load_dataset, profile
from deltaml.ledger.base import Ledger, RequestStatus, Role
from deltaml.roles import DataOwner
from deltaml.roles.messages import Message
from deltaml.services.party import AggregatorClient, AggregatorError, WorkLoop, api_token
from deltaml.services.serve import guard_bodies
from deltaml.services.store import Store

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

ACCEPT_POLICIES = ("all", "manual")


@dataclass
class OwnerConfig:
    account: LocalAccount
    data: list[Path]
    aggregator_url: str
    database_url: str
    work_dir: Path
    name: str = "data owner"
    #: ``all``: accept every request its data matches (and whose offered reward is at
    #: least ``min_reward_wei``); ``manual``: wait for a decision through the API.
    accept: str = "all"
    min_reward_wei: int = 0
    auto_withdraw: bool = True
    poll_seconds: float = 10.0
    #: Connect to this chain instead of the one the aggregator names.
    chain_url: str | None = None
    offers_interval: float = 1.0
    datasets: dict[str, Path] = field(default_factory=dict)


def find_csvs(paths: list[Path]) -> dict[str, Path]:
    """Every CSV named or inside a named folder, by name (the file's stem)."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(path.glob("*.csv"))
        elif path.exists():
            files = [path]
        else:
            raise DeltaMLValueError(f"{path} does not exist")
        for file in files:
            if file.stem in found:
                raise DeltaMLValueError(f"two datasets are named {file.stem!r}: rename one")
            found[file.stem] = file
    if not found:
        raise DeltaMLValueError("no CSV file found in " + ", ".join(map(str, paths)))
    return found


def dataset_profile(name: str, path: Path) -> dict[str, Any]:
    """What the aggregator may know of one dataset (no value of it)."""
    return {"name": name, **profile(load_dataset(path))}


def select_columns(path: Path, features: list[str], target: str) -> Dataset:
    """The dataset at ``path`` with exactly ``features`` (in that order) and ``target``."""
    ds = load_dataset(path, target=target)
    missing = [f for f in features if f not in ds.feature_names]
    if missing:
        raise DataError(f"{path.name} has no column(s) {', '.join(missing)}")
    idx = [ds.feature_names.index(f) for f in features]
    return Dataset(
        np.asarray(ds.X[:, idx]), ds.y, tuple(features), ds.target_name, ds.task, str(path)
    )


class OwnerNode:
    def __init__(self, config: OwnerConfig, ledger_factory: Any = None) -> None:
        self.config = config
        self.account = config.account
        self.address = str(config.account.address)
        self.datasets = config.datasets or find_csvs(config.data)
        self.profiles = [dataset_profile(n, p) for n, p in self.datasets.items()]
        self.store = Store(config.database_url)
        self.client = AggregatorClient(config.aggregator_url, config.account)
        self.loop = WorkLoop(self.client, self.handle, config.poll_seconds)
        self._ledger_factory = ledger_factory
        self.ledger: Ledger | None = None
        self.roles: dict[int, DataOwner] = {}
        self.offers: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="offers", daemon=True)
        self._lock = threading.Lock()

    # -- start and stop -------------------------------------------------------------
    def start(self) -> None:
        info = self.client.wait_ready()
        self.ledger = self._connect_ledger(info)
        if self.ledger is not None and not self.ledger.has_role(self.address, Role.DATA_OWNER):
            self.ledger.register(Role.DATA_OWNER)
        self.client.post(
            "/owners",
            {
                "name": self.config.name,
                "datasets": self.profiles,
                "min_reward_wei": self.config.min_reward_wei,
            },
        )
        log.info("registered %d dataset(s) as %s", len(self.profiles), self.address)
        self.loop.start()
        self._thread.start()

    def _connect_ledger(self, info: dict[str, Any]) -> Ledger | None:
        if self._ledger_factory is not None:
            return self._ledger_factory(info)
        url = self.config.chain_url or info.get("chain_url")
        if not info.get("contract") or not url:
            return None
        from deltaml.ledger import Web3Ledger, connect

        return Web3Ledger(connect(url), info["contract"], self.account)

    def stop(self) -> None:
        self._stop.set()
        self.loop.stop()
        self.client.close()

    # -- offers and earnings ----------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_offers()
            except DeltaMLError as exc:
                log.warning("offers: %s", exc)
            self._stop.wait(self.config.offers_interval)

    def refresh_offers(self) -> list[dict[str, Any]]:
        offers: list[dict[str, Any]] = self.client.get("/offers")
        self.offers = offers
        for offer in offers:
            rid = int(offer["request_id"])
            self.store.put("offers", str(rid), offer)
            if (
                offer["status"] == "READY"
                and self.config.accept == "all"
                and int(offer["offered_reward_wei"]) >= self.config.min_reward_wei
            ):
                self.decide(rid, True)
            if offer["status"] in ("FINISHED", "FAILED", "CANCELLED"):
                self.roles.pop(rid, None)
            if offer["status"] == "FINISHED" and self.config.auto_withdraw:
                self.withdraw(rid)
        return offers

    def decide(self, rid: int, accept: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(
            f"/requests/{rid}/{'accept' if accept else 'decline'}"
        )
        self.store.put("decisions", str(rid), {"accept": accept, "at": time.time()})
        log.info("request %d: %s", rid, "accepted" if accept else "declined")
        return result

    def withdraw(self, rid: int) -> int:
        """Withdraw this owner's credit for request ``rid`` once the contract has settled it."""
        if self.ledger is None or self.store.get("earnings", str(rid)) is not None:
            return 0
        view = self.client.get(f"/requests/{rid}")
        cid = int(view["chain_request_id"])
        state = self.ledger.request(cid)
        if state.status != RequestStatus.SETTLED or self.ledger.has_withdrawn(cid):
            return 0
        if self.ledger.claimable(cid) == 0:
            self.store.put("earnings", str(rid), {"wei": "0", "at": time.time()})
            return 0
        amount = self.ledger.withdraw(cid)
        self.store.put("earnings", str(rid), {"wei": str(amount), "at": time.time()})
        log.info("request %d: withdrew %d wei", rid, amount)
        return amount

    def earnings(self) -> dict[str, Any]:
        per = {k: int(v["wei"]) for k, v in self.store.items("earnings")}
        return {
            "total_wei": str(sum(per.values())),
            "by_request": {k: str(v) for k, v in per.items()},
        }

    # -- protocol work --------------------------------------------------------------
    def handle(self, rid: int, message: Message) -> Message:
        with self._lock:
            role = self.roles.get(rid)
            if role is None:
                role = self.roles[rid] = self._role_for(rid)
        return role.handle(message)

    def _role_for(self, rid: int) -> DataOwner:
        offer = next((o for o in self.offers if int(o["request_id"]) == rid), None)
        if offer is None:
            offer = next((o for o in self.refresh_offers() if int(o["request_id"]) == rid), None)
        if offer is None or not offer.get("dataset"):
            raise ProtocolError(f"request {rid} was not accepted by this owner")
        path = self.datasets.get(offer["dataset"])
        if path is None:
            raise ProtocolError(f"dataset {offer['dataset']!r} is no longer here")
        req = offer["requirements"]
        ds = select_columns(path, list(req["features"]), str(req["target"]))
        return DataOwner(self.address, ds.X, ds.y, account=self.account)


def create_app(node: OwnerNode) -> FastAPI:
    """The owner's local API (127.0.0.1 only), behind a bearer token in its work folder."""
    token = api_token(node.config.work_dir)

    def authorized(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {token}":
            raise HTTPException(
                401, "missing or wrong API token (see api-token in the node folder)"
            )

    app = FastAPI(title="DeltaML data owner", dependencies=[Depends(authorized)])
    guard_bodies(app)

    @app.exception_handler(DeltaMLError)
    async def _error(_request: Request, exc: DeltaMLError) -> JSONResponse:
        status = exc.status if isinstance(exc, AggregatorError) and exc.status else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/status")
    def status() -> dict[str, Any]:
        return {
            "address": node.address,
            "name": node.config.name,
            "datasets": node.profiles,
            "offers": node.offers,
            "earnings": node.earnings(),
            "jobs_done": node.loop.jobs_done,
        }

    @app.post("/offers/{rid}/accept")
    def accept(rid: int) -> dict[str, Any]:
        return node.decide(rid, True)

    @app.post("/offers/{rid}/decline")
    def decline(rid: int) -> dict[str, Any]:
        return node.decide(rid, False)

    @app.post("/offers/{rid}/withdraw")
    def withdraw(rid: int) -> dict[str, Any]:
        return {"withdrawn_wei": str(node.withdraw(rid))}

    return app
