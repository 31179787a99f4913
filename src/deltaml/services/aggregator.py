"""The aggregator service: the one public endpoint of a marketplace (FastAPI).

It keeps the registry of data owners and their dataset profiles, takes the
buyers' requests (checking the escrow on the contract), offers each request to
the owners whose data matches, and once enough have accepted, runs the training:
the protocol of :class:`deltaml.roles.Aggregator`, its messages queued for the
parties to fetch (:mod:`deltaml.services.queue`), every completed round
checkpointed so that a restart goes on from there. It posts the metrics and the
result on the contract; the buyer approves and every payee withdraws by itself.

Every call but the public status pages is signed by its sender's Ethereum key
(:mod:`deltaml.services.auth`); the signer's address is who it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from deltaml.crypto import PublicKey
from deltaml.crypto.paillier import key_fingerprint
from deltaml.crypto.serialization import unpack_vectors
from deltaml.errors import DeltaMLError, DeltaMLValueError, ProtocolError
from deltaml.evidence.chain import chain_id_of
from deltaml.evidence.published import is_evaluated, last_round
from deltaml.evidence.transcript import ChainBinding, TranscriptWriter, sealed_path_for
from deltaml.ledger.base import Ledger, RequestStatus, Role
from deltaml.ledger.payouts import TRAINERS_PERCENT, scale_metric
from deltaml.marketplace import spec_hash
from deltaml.protocol.merkle import SeatBook
from deltaml.protocol.spec import (
    MAX_BIGINT,
    MAX_NAME,
    REQUIREMENT_FIELDS,
    SpecError,
    check_requirements,
    check_training_spec,
)
from deltaml.protocol.status import OfferStatus, SeatRole, Status
from deltaml.roles import messages as m
from deltaml.roles.aggregator import (
    Aggregator,
    Checkpoint,
    RoundRecord,
    TrainingRecord,
    split_roles,
)
from deltaml.roles.messages import TrainingSpec
from deltaml.services import wire
from deltaml.services.auth import RequestVerifier, signed_party
from deltaml.services.queue import JobError, QueueTransport, WorkQueue
from deltaml.services.serve import guard_bodies, guarded
from deltaml.services.store import Store, checkpoints, events, jobs, offers, owners, requests
from deltaml.transport.base import Transport

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = logging.getLogger(__name__)

#: Statuses of a request as each data owner sees it (DESIGN.md, lifecycle).
OFFER_STATUSES = tuple(OfferStatus)
LONG_POLL_MAX_SECONDS = 30.0
#: Gas sent with a ``settle`` that cannot be estimated yet (it needs about 40 000).
SETTLE_GAS = 150_000
#: Largest ``POST /requests`` body: the initial model holds one ciphertext per feature
#: (at most 1000 features, ~1.4 KB each with a 4096-bit key), plus the key and spec.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


@dataclass
class AggregatorConfig:
    account: LocalAccount
    database_url: str
    work_dir: Path
    ledger: Ledger | None = None
    #: Seconds a party may take to answer one protocol message before the request fails.
    party_timeout: float = 120.0
    chain_url: str = ""
    #: No round starts unless it, the evaluation and the finish are estimated to end
    #: at least this many seconds before the request's deadline.
    deadline_margin: float = 60.0


class DeadlineStop(Exception):
    """Training stops after ``round``: the next one could not finish before the deadline."""

    def __init__(self, round_: int) -> None:
        super().__init__(f"stopping after round {round_} for the deadline")
        self.round = round_


class HoldFinalModel(Transport):
    """Passes every message on but the buyer's ``FinalModel``, which it keeps: the
    service sends it only once the result is final on chain (fair exchange)."""

    def __init__(self, inner: Transport, buyer: str) -> None:
        self.inner = inner
        self.buyer = buyer
        self.held: m.FinalModel | None = None

    def request(self, party_id: str, message: m.Message) -> m.Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, m.Message]]) -> list[m.Message]:
        finals = [
            i
            for i, (party, msg) in enumerate(requests)
            if isinstance(msg, m.FinalModel) and party.lower() == self.buyer.lower()
        ]
        if not finals:
            return self.inner.request_all(requests)
        if len(requests) > 1:
            raise ProtocolError("the final model goes to the buyer alone")
        self.held = requests[0][1]  # type: ignore[assignment]
        return [m.Ack("held until the result is final on chain")]


# -- request bodies ---------------------------------------------------------------------
#: Bounds of what the database and the contract hold: ids are 32-bit in PostgreSQL's
#: ``integer`` columns; counts, rows and seeds 63-bit (``bigint``); the contract keeps
#: the deposit in 128 bits and rounds in 32.
MAX_DB_ID = 2**31 - 1
MAX_WEI = 2**256 - 1

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
#: A non-negative id as the database holds it (path parameters).
DbId = Annotated[int, PathParam(ge=0, le=MAX_DB_ID)]


class ColumnProfile(BaseModel):
    """One column of a dataset profile: its name and type, never its values."""

    model_config = ConfigDict(extra="ignore")

    name: StrictStr = Field(min_length=1, max_length=MAX_NAME)
    role: StrictStr = Field(default="", max_length=20)
    type: StrictStr = Field(default="", max_length=20)
    nulls: StrictInt = Field(default=0, ge=0, le=MAX_BIGINT)


class DatasetProfile(BaseModel):
    name: Name
    rows: StrictInt = Field(ge=0, le=MAX_BIGINT)
    target: str = Field(default="", max_length=MAX_NAME)
    task: str = Field(default="", max_length=40)
    columns: list[ColumnProfile] = Field(max_length=10_000)


class OwnerRegistration(BaseModel):
    name: Name
    datasets: list[DatasetProfile] = Field(max_length=100)
    min_reward_wei: StrictInt = Field(default=0, ge=0, le=MAX_WEI)


def _check_requirements(value: Any) -> Any:
    """The ranges of :func:`deltaml.protocol.spec.check_requirements` (a 422 naming the field)."""
    if isinstance(value, dict):
        try:
            check_requirements({k: v for k, v in value.items() if k in REQUIREMENT_FIELDS})
        except SpecError as exc:
            raise ValueError(f"requirements.{exc.field}: {exc}") from None
    return value


class Requirements(BaseModel):
    """What an owner's dataset must have; ranges checked by the protocol's request spec."""

    model_config = ConfigDict(strict=True)

    features: list[str]
    target: str
    min_rows: int = 1
    #: Training starts when this many owners have accepted.
    owners: int
    #: A logistic request's (negative, positive) labels; every owner codes its target so.
    classes: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def check_ranges(cls, value: Any) -> Any:
        return _check_requirements(value)


def check_spec(value: Any) -> dict[str, Any]:
    """``value`` unchanged (the buyer's hash covers it as sent) if its fields are those
    of a ``TrainingSpec`` within the protocol's ranges
    (:func:`deltaml.protocol.spec.check_training_spec`).

    Raises ``ValueError`` naming the first field out of range (FastAPI: a 422).
    """
    try:
        check_training_spec(value)
    except SpecError as exc:
        raise ValueError(f"spec.{exc.field}: {exc}") from None
    return value


class NewRequest(BaseModel):
    chain_request_id: StrictInt = Field(ge=0, le=MAX_BIGINT)
    spec: Annotated[dict[str, Any], AfterValidator(check_spec)]
    requirements: Requirements
    public_key: dict[str, Annotated[str, Field(max_length=4096)]] = Field(max_length=8)
    initial_model: dict[str, Any]


class Decision(BaseModel):
    dataset: str = ""


class FailureReport(BaseModel):
    error: str = Field(max_length=2000)


def request_hash(spec: dict[str, Any], requirements: dict[str, Any]) -> bytes:
    """What the buyer's ``createRequest`` commits to: the spec and the requirements."""
    return spec_hash({"spec": spec, "requirements": requirements})


def _accepted(conn: sa.Connection, rid: int) -> int:
    """How many owners have accepted request ``rid`` and wait for it to start."""
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(offers)
            .where(offers.c.request_id == rid, offers.c.status == OfferStatus.INITIATED)
        ).scalar_one()
    )


def matching_dataset(profile: dict[str, Any], req: dict[str, Any]) -> str | None:
    """The first of an owner's datasets that has every column the request needs, or None."""
    wanted = [*req["features"], req["target"]]
    for ds in profile.get("datasets", []):
        # Profiles are typed on the way in; a row stored before that is skipped, not a 500.
        columns = {
            c["name"]: c
            for c in ds.get("columns", [])
            if isinstance(c, dict) and isinstance(c.get("name"), str)
        }
        if ds.get("rows", 0) < req["min_rows"]:
            continue
        if not all(name in columns and not columns[name].get("nulls") for name in wanted):
            continue
        # A text column can only be the target of a request that names its classes.
        text = {name for name in wanted if columns[name].get("type") == "text"}
        if text - {req["target"]} or (text and not req.get("classes")):
            continue
        return str(ds["name"])
    return None


class AggregatorService:
    """State, chain and training threads behind the HTTP API."""

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
        self._stop = threading.Event()
        self._runners: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        #: On-chain deadlines by request id (they never change), and running requests
        #: past theirs: their runner stops at the end of the round.
        self._deadlines: dict[int, int] = {}
        self._overdue: set[int] = set()
        #: Registered owners (what /health reports without a database query).
        self.registered = self.owner_count()
        if self.ledger is not None and not self.ledger.has_role(self.address, Role.AGGREGATOR):
            self.ledger.register(Role.AGGREGATOR)

    # -- lifecycle ------------------------------------------------------------------
    def resume(self) -> None:
        """After a (re)start: stale open jobs, and go on with every training in progress."""
        stale = self.queue.expire_open()
        if stale:
            log.info("%d unanswered jobs from before the restart are stale", stale)
        with self.store.begin() as conn:
            ids = conn.execute(
                sa.select(requests.c.id).where(requests.c.status == Status.IN_PROGRESS)
            ).scalars()
            running = list(ids)
        for rid in running:
            self._launch(rid)
        # A final model queued before the restart went stale with its job: queue it again.
        for key, delivery in self.store.items("deliveries"):
            job = delivery.get("queued")
            if job:
                with self.store.begin() as conn:
                    status = conn.execute(
                        sa.select(jobs.c.status).where(jobs.c.id == int(job))
                    ).scalar_one_or_none()
                if status != "done":
                    self.store.put("deliveries", key, {"message": delivery["message"]})
        guarded("deliveries", self.deliver_models)

    def start_watcher(self, interval: float = 1.0) -> None:
        """Fail requests past their deadline; withdraw the fee of every settled one."""

        def watch() -> None:
            while not self._stop.wait(interval):
                guarded("deadlines", self.expire_overdue)
                guarded("fees", self.withdraw_fees)
                guarded("settlements", self.settle_due)
                guarded("deliveries", self.deliver_models)

        threading.Thread(target=watch, name="watcher", daemon=True).start()

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
            if row.id not in self._deadlines:
                self._deadlines[row.id] = self.ledger.request(row.chain_request_id).deadline
            if now <= self._deadlines[row.id]:
                continue
            overdue.append(row.id)
            if row.status == Status.IN_PROGRESS:
                self._overdue.add(row.id)
                continue
            with self.store.begin() as conn:
                accepted = _accepted(conn, row.id)
                needed = conn.execute(
                    sa.select(requests.c.requirements).where(requests.c.id == row.id)
                ).scalar_one()["owners"]
            self._abort_on_chain(row.id)
            self._set_status(
                row.id,
                Status.FAILED,
                error=f"the deadline passed with {accepted} of the {needed} owners it needs",
            )
            log.info("request %d failed: deadline passed while open", row.id)
        return overdue

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
            state = self.ledger.request(row.chain_request_id)
            if state.status == RequestStatus.FINISHED:
                ends, windows = state.challenge_ends_at, 1
            elif state.status == RequestStatus.DISPUTED:
                ends, windows = state.resolution_ends_at, 2
            else:
                continue
            if ends is None:
                continue
            # The chain's clock (its latest block) stands still while nobody sends a
            # transaction, and a development chain's may run ahead of this machine's
            # (time travel): the window has passed by the chain's clock, or by this
            # machine's since the result was posted (``updated_at``).
            waited = time.time() - float(row.updated_at or time.time())
            if self.ledger.now() <= ends and waited <= windows * state.challenge_window_s:
                continue
            try:
                self._settle_late(row.chain_request_id, ends)
            except DeltaMLError as exc:  # the chain's clock may lag: next time
                log.debug("request %d: not settled yet: %s", row.id, exc)
                continue
            settled.append(row.id)
            log.info("request %d: settled on chain after its window", row.id)
        return settled

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
            self.account,
            gas_limit=SETTLE_GAS,
            check_code=False,
        )
        fixed._lock = self.ledger._lock
        fixed.settle(cid)

    def withdraw_fees(self) -> int:
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

    def close(self) -> None:
        self._stop.set()
        for thread in list(self._runners.values()):
            thread.join(timeout=10)
        self.store.close()

    def _launch(self, request_id: int) -> None:
        with self._lock:
            if request_id in self._runners and self._runners[request_id].is_alive():
                return
            thread = threading.Thread(
                target=self._run, args=(request_id,), name=f"request-{request_id}", daemon=True
            )
            self._runners[request_id] = thread
            thread.start()

    def wait_idle(self, timeout: float) -> None:
        for thread in list(self._runners.values()):
            thread.join(timeout)

    # -- registry ---------------------------------------------------------------------
    def register_owner(self, address: str, body: OwnerRegistration) -> dict[str, Any]:
        profile = {"datasets": [d.model_dump() for d in body.datasets]}
        for attempt in range(3):
            try:
                self._register(address, body.name, profile, str(body.min_reward_wei))
                break
            except sa.exc.IntegrityError:
                # The same owner registering twice at once: the other call inserted
                # the row (or an offer) first. Once more, it is an update.
                if attempt == 2:
                    raise
        log.info("owner %s registered %d dataset(s)", address, len(body.datasets))
        return {"address": address, "datasets": len(body.datasets)}

    def _register(
        self, address: str, name: str, profile: dict[str, Any], min_reward_wei: str
    ) -> None:
        now = time.time()
        with self.store.begin() as conn:
            known = conn.execute(
                sa.select(owners.c.address).where(owners.c.address == address)
            ).first()
            values = {
                "name": name,
                "profile": profile,
                "min_reward_wei": min_reward_wei,
                "last_seen": now,
            }
            if known:
                conn.execute(owners.update().where(owners.c.address == address).values(**values))
            else:
                conn.execute(owners.insert().values(address=address, registered_at=now, **values))
            open_requests = conn.execute(
                sa.select(requests.c.id, requests.c.requirements).where(
                    requests.c.status == Status.OPEN
                )
            ).all()
            for row in open_requests:
                self._offer(conn, row.id, address, profile, row.requirements)
        if not known:
            with self._lock:
                self.registered += 1

    def _offer(
        self, conn: sa.Connection, rid: int, owner: str, profile: dict[str, Any], req: Any
    ) -> None:
        """Offer request ``rid`` to ``owner`` (or refresh its offer): READY if it has the data."""
        dataset = matching_dataset(profile, req)
        current = conn.execute(
            sa.select(offers.c.status).where(offers.c.request_id == rid, offers.c.owner == owner)
        ).scalar_one_or_none()
        status = OfferStatus.READY if dataset else OfferStatus.WAITING
        if current is None:
            conn.execute(
                offers.insert().values(
                    request_id=rid,
                    owner=owner,
                    status=status,
                    dataset=dataset or "",
                    updated_at=time.time(),
                )
            )
        elif current in (OfferStatus.WAITING, OfferStatus.READY):
            conn.execute(
                offers.update()
                .where(offers.c.request_id == rid, offers.c.owner == owner)
                .values(status=status, dataset=dataset or "", updated_at=time.time())
            )

    # -- requests ---------------------------------------------------------------------
    def create_request(self, buyer: str, body: NewRequest) -> dict[str, Any]:
        try:
            spec = TrainingSpec(**body.spec)
        except TypeError as exc:
            raise DeltaMLValueError(f"spec: {exc}") from None
        req = body.requirements.model_dump(exclude_none=True)
        key = PublicKey.from_dict(body.public_key)
        (initial,) = unpack_vectors(body.initial_model)
        if initial.public_key != key:
            raise DeltaMLValueError("initial_model is not encrypted under public_key")
        if len(initial) != len(req["features"]) + 1:
            raise DeltaMLValueError("initial_model needs one weight per feature plus the intercept")
        deposit = spec.deposit_wei
        if self.ledger is not None:
            self._refuse_reused_escrow(body.chain_request_id)
            state = self.ledger.request(body.chain_request_id)
            problems = []
            if state.buyer.lower() != buyer.lower():
                problems.append("was not created by you")
            if state.aggregator.lower() != self.address.lower():
                problems.append(f"does not name this aggregator ({self.address})")
            if state.status != RequestStatus.OPEN:
                problems.append(f"is {state.status.name}, not OPEN")
            if state.deposit_wei != deposit:
                problems.append(f"escrows {state.deposit_wei} wei, the spec says {deposit}")
            if state.spec_hash != request_hash(body.spec, req):
                problems.append("commits to another spec (hash differs)")
            if state.key_hash != key_fingerprint(key):
                problems.append("commits to another Paillier key (fingerprint differs)")
            if problems:
                raise DeltaMLValueError(
                    f"on-chain request {body.chain_request_id} " + "; ".join(problems)
                )
        now = time.time()
        with self._lock, self.store.begin() as conn:
            if self.ledger is not None:
                self._refuse_reused_escrow(body.chain_request_id, conn)
            rid = int(
                conn.execute(
                    requests.insert().values(
                        buyer=buyer,
                        chain_request_id=body.chain_request_id,
                        spec=dataclasses.asdict(spec),
                        requirements=req,
                        public_key=body.public_key,
                        initial_model=body.initial_model,
                        deposit_wei=str(deposit),
                        status=Status.OPEN,
                        error="",
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            for row in conn.execute(sa.select(owners.c.address, owners.c.profile)).all():
                self._offer(conn, rid, row.address, row.profile, req)
        if self.ledger is not None:
            # Who resolves a dispute: shown to the owners before they join.
            self.store.put("arbiters", str(rid), {"arbiter": state.arbiter})
        self._event(rid, "created", {"buyer": buyer})
        log.info("request %d created by %s", rid, buyer)
        return {"id": rid, "status": Status.OPEN}

    def _refuse_reused_escrow(self, cid: int, conn: sa.Connection | None = None) -> None:
        """One escrow pays for one training: a chain request id is taken once."""

        def taken(c: sa.Connection) -> int | None:
            return c.execute(
                sa.select(requests.c.id).where(requests.c.chain_request_id == cid).limit(1)
            ).scalar_one_or_none()

        if conn is not None:
            known = taken(conn)
        else:
            with self.store.begin() as c:
                known = taken(c)
        if known is not None:
            raise HTTPException(
                409,
                f"on-chain request {cid} already pays for request {known}: one escrow, "
                "one training",
            )

    def _check_accepter(self, owner: str, rid: int) -> None:
        """Only a data owner registered on the contract, that joined this very request
        there with its own account, may take a seat."""
        if self.ledger is None:
            return
        if not self.ledger.has_role(owner, Role.DATA_OWNER):
            raise HTTPException(
                403,
                f"{owner} is not registered on the contract as a data owner: register there first",
            )
        cid = self._request_row(rid).chain_request_id
        if not self.ledger.has_joined(cid, owner):
            raise HTTPException(
                409,
                f"join on-chain request {cid} (its spec and key hashes) with your own "
                "account before you accept",
            )

    def arbiter_of(self, rid: int) -> str:
        """The address named on chain to resolve a dispute about request ``rid``."""
        saved = self.store.get("arbiters", str(rid))
        return str(saved["arbiter"]) if saved else ""

    def decide(self, owner: str, rid: int, accept: bool) -> dict[str, Any]:
        if accept:
            self._check_accepter(owner, rid)
        with self.store.begin() as conn:
            offer = conn.execute(
                sa.select(offers.c.status).where(
                    offers.c.request_id == rid, offers.c.owner == owner
                )
            ).scalar_one_or_none()
            if offer is None:
                raise HTTPException(404, f"request {rid} was not offered to {owner}")
            if accept and offer == OfferStatus.WAITING:
                raise HTTPException(409, "none of your datasets has what this request needs")
            if offer not in (OfferStatus.READY, OfferStatus.INITIATED, OfferStatus.WAITING):
                raise HTTPException(409, f"request {rid} is {offer} for you: too late to decide")
            current = conn.execute(
                sa.select(requests.c.status).where(requests.c.id == rid)
            ).scalar_one()
            if current != Status.OPEN:
                # The seats are fixed when training starts (and on chain): no late seat.
                raise HTTPException(409, f"request {rid} is {current}: too late to decide")
            status = OfferStatus.INITIATED if accept else OfferStatus.DECLINED
            conn.execute(
                offers.update()
                .where(offers.c.request_id == rid, offers.c.owner == owner)
                .values(status=status, updated_at=time.time())
            )
            accepted = _accepted(conn, rid)
            row = conn.execute(
                sa.select(requests.c.requirements, requests.c.status).where(requests.c.id == rid)
            ).one()
        self._event(rid, "accepted" if accept else "declined", {"owner": owner})
        if accept and row.status == Status.OPEN and accepted >= row.requirements["owners"]:
            self._set_status(rid, Status.IN_PROGRESS)
            self._launch(rid)
        return {"request_id": rid, "status": status}

    def cancel(self, buyer: str, rid: int) -> dict[str, Any]:
        row = self._request_row(rid)
        if row.buyer.lower() != buyer.lower():
            raise HTTPException(403, f"request {rid} is not yours")
        if row.status != Status.OPEN:
            raise HTTPException(409, f"request {rid} is {row.status}: only an OPEN request cancels")
        self._set_status(rid, Status.CANCELLED)
        return {"request_id": rid, "status": Status.CANCELLED}

    def _request_row(self, rid: int) -> Any:
        with self.store.begin() as conn:
            row = conn.execute(sa.select(requests).where(requests.c.id == rid)).first()
        if row is None:
            raise HTTPException(404, f"no request {rid}")
        return row

    def _set_status(self, rid: int, status: str, error: str = "", result: Any = None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if error:
            values["error"] = error
        if result is not None:
            values["result"] = result
        with self.store.begin() as conn:
            conn.execute(requests.update().where(requests.c.id == rid).values(**values))
            if status in (Status.IN_PROGRESS, Status.FINISHED, Status.FAILED, Status.CANCELLED):
                q = offers.update().where(offers.c.request_id == rid)
                if status == Status.IN_PROGRESS:
                    q = q.where(offers.c.status == OfferStatus.INITIATED)
                elif status == Status.FINISHED:
                    q = q.where(offers.c.status == OfferStatus.IN_PROGRESS)
                else:  # the request is over for every owner still offered it
                    q = q.where(
                        offers.c.status.in_(
                            (
                                OfferStatus.WAITING,
                                OfferStatus.READY,
                                OfferStatus.INITIATED,
                                OfferStatus.IN_PROGRESS,
                            )
                        )
                    )
                conn.execute(q.values(status=status, updated_at=time.time()))
        self._event(rid, "status", {"status": status, **({"error": error} if error else {})})

    def _event(self, rid: int, kind: str, data: dict[str, Any]) -> None:
        with self.store.begin() as conn:
            conn.execute(
                events.insert().values(request_id=rid, at=time.time(), kind=kind, data=data)
            )

    # -- training ---------------------------------------------------------------------
    def _run(self, rid: int) -> None:
        try:
            self._train(rid)
        except Exception as exc:  # a request fails; the service goes on
            if self._stop.is_set():
                log.info("request %d paused by shutdown", rid)
                return
            message = str(exc) if isinstance(exc, DeltaMLError) else type(exc).__name__
            log.warning("request %d failed: %s", rid, message)
            if not isinstance(exc, DeltaMLError):
                log.exception("request %d: unexpected error", rid)
            self._abort_on_chain(rid)
            self._set_status(rid, Status.FAILED, error=message)

    def _abort_on_chain(self, rid: int) -> None:
        if self.ledger is None:
            return
        row = self._request_row(rid)
        try:
            state = self.ledger.request(row.chain_request_id)
            if state.status in (RequestStatus.OPEN, RequestStatus.IN_PROGRESS):
                self.ledger.abort(row.chain_request_id)
        except DeltaMLError as exc:
            log.warning("request %d: could not abort on chain: %s", rid, exc)

    def _seats(self, rid: int, row: Any, spec: TrainingSpec) -> tuple[list[str], list[str]]:
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

    def _train(self, rid: int) -> None:
        row = self._request_row(rid)
        spec = TrainingSpec(**row.spec)
        key = PublicKey.from_dict(row.public_key)
        (initial,) = unpack_vectors(row.initial_model)
        trainers, validators = self._seats(rid, row, spec)
        accepted = sorted([*trainers, *validators])
        if len(accepted) < row.requirements["owners"]:
            raise ProtocolError(
                f"only {len(accepted)} of the {row.requirements['owners']} owners it needs "
                "have joined on chain"
            )
        with self.store.begin() as conn:
            saved = conn.execute(
                sa.select(checkpoints.c.data).where(checkpoints.c.request_id == rid)
            ).scalar_one_or_none()
            for owner in accepted:
                conn.execute(
                    offers.update()
                    .where(offers.c.request_id == rid, offers.c.owner == owner)
                    .values(role=SeatRole.TRAINER if owner in trainers else SeatRole.VALIDATOR)
                )
        if self.ledger is not None:
            state = self.ledger.request(row.chain_request_id)
            if state.status == RequestStatus.OPEN:
                self.ledger.start(row.chain_request_id, trainers, validators)
        path = self.transcript_path(rid)
        resume = Checkpoint.from_json(json.loads(saved)) if saved else None
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
        queue = QueueTransport(self.queue, rid, self.config.party_timeout, self._stop)
        transport = HoldFinalModel(queue, row.buyer)
        addresses = {a: a for a in [row.buyer, *accepted]}
        aggregator = Aggregator(
            transport,
            row.buyer,
            accepted,
            account=self.account,
            addresses=addresses,
            transcript=writer,
        )
        n_features = len(row.requirements["features"])
        stopped = self.store.get("deadline_stops", str(rid))
        latest: list[Checkpoint] = []
        # When (by the chain's clock) and after which round this runner began training.
        began = (self._clock(), resume.round if resume is not None else 0)

        def checkpoint(cp: Checkpoint) -> None:
            nonlocal began
            latest[:] = [cp]
            if cp.round == 0:
                began = (self._clock(), 0)
            self._checkpoint(rid, cp)

        def progress(rec: RoundRecord) -> None:
            self._progress(rid, rec)
            if stopped is None and latest:
                self._stop_for_deadline(rid, spec, aggregator, latest[0], began)

        def run(run_spec: TrainingSpec, start: Checkpoint | None) -> TrainingRecord:
            return aggregator.train(
                run_spec,
                key,
                initial,
                n_features,
                include_target=spec.model == "linear",
                progress=progress,
                checkpoint=checkpoint,
                resume=start,
            )

        try:
            if stopped is not None:  # stopped for the deadline before a restart
                record = run(dataclasses.replace(spec, rounds=int(stopped["round"])), resume)
            else:
                try:
                    record = run(spec, resume)
                except DeadlineStop as stop:
                    stopped = {"round": stop.round}
                    record = run(dataclasses.replace(spec, rounds=stop.round), latest[0])
        finally:
            for stream in (writer.public, writer.sealed):
                if stream is not None:
                    stream.close()
        assert record.payouts is not None and record.initial_metric is not None
        final_metric = record.rounds[-1].metric
        assert final_metric is not None
        if transport.held is None:
            raise ProtocolError("the training ended without a final model")
        # The final model goes to the buyer only once the result is final on chain.
        self.store.put("deliveries", str(rid), {"message": wire.dumps(transport.held).decode()})
        if self.ledger is not None:
            cid = row.chain_request_id
            evidence = bytes.fromhex(record.transcript_head)
            posted = self.ledger.request(cid).last_round
            for rec in record.rounds:
                if rec.metric is not None and rec.round > posted:
                    self.ledger.post_metric(cid, rec.round, scale_metric(rec.metric), evidence)
            self.ledger.finish(
                cid,
                scale_metric(record.initial_metric),
                scale_metric(final_metric),
                list(record.contribution_weights),
                evidence,
                seats=SeatBook.of(trainers, validators),
            )
        if record.dropped:
            with self.store.begin() as conn:
                conn.execute(
                    offers.update()
                    .where(offers.c.request_id == rid, offers.c.owner.in_(record.dropped))
                    .values(status=OfferStatus.FAILED, updated_at=time.time())
                )
        result = {
            "trainers": trainers,
            "dropped": list(record.dropped),
            "validators": validators,
            "initial_metric": record.initial_metric,
            "metrics": {str(k): v for k, v in record.metrics.items()},
            "contributions": (
                dict(zip(trainers, record.contributions, strict=True))
                if record.contributions
                else {}
            ),
            "payouts_wei": {
                **{t: str(p) for t, p in zip(trainers, record.payouts.trainers, strict=True)},
                **{v: str(p) for v, p in zip(validators, record.payouts.validators, strict=True)},
                self.address: str(record.payouts.aggregator),
            },
            "refund_wei": str(record.payouts.refund),
            "transcript_head": record.transcript_head,
            "refreshes": record.refreshes,
            "rounds": record.rounds[-1].round,
            # Set when training stopped early so that it could finish before the deadline.
            "deadline_stop": stopped,
        }
        self._set_status(rid, Status.FINISHED, result=result)
        log.info("request %d finished after %d rounds", rid, len(record.rounds))
        self.deliver_models()

    def _clock(self) -> float:
        """Now, as the next transaction will see it: a chain's latest block can lag the
        clock while nobody transacts, the next block will not."""
        chain_now = self.ledger.now() if self.ledger is not None else 0
        return max(float(chain_now), time.time())

    def _stop_for_deadline(
        self,
        rid: int,
        spec: TrainingSpec,
        aggregator: Aggregator,
        cp: Checkpoint,
        began: tuple[float, int],
    ) -> None:
        """Stop after round ``cp.round`` if training to the next evaluated round, and then
        finishing, could pass the deadline less the margin (estimated from the rounds so
        far). Training then finishes with the rounds done: a signed ``DeadlineStop``
        record in the transcript says where and why, and the payment rule is unchanged."""
        if self.ledger is None or not cp.record.rounds:
            return
        k, rounds = cp.round, spec.rounds
        if k >= rounds or not is_evaluated(k, rounds, spec.eval_every):
            return  # only an evaluated round can be the last one
        if last_round(rounds, spec.target_improvement, cp.record.published) <= k:
            return  # it stops here anyway
        following = next(
            j for j in range(k + 1, rounds + 1) if is_evaluated(j, rounds, spec.eval_every)
        )
        now = self._clock()
        timed = [r.seconds for r in cp.record.rounds]
        per_round = sum(timed) / len(timed)
        if k > began[1]:  # the rounds this runner trained, by the clock of the chain
            per_round = max(per_round, (now - began[0]) / (k - began[1]))
        # The rounds to the next metric, then the contributions, the final model and
        # the chain's transactions (about one more round), and the margin.
        needed = (following - k + 1) * per_round + self.config.deadline_margin
        row = self._request_row(rid)
        deadline = self._deadlines.get(rid)
        if deadline is None:
            deadline = self._deadlines[rid] = self.ledger.request(row.chain_request_id).deadline
        if now + needed <= deadline:
            return
        body = {
            "round": k,
            "deadline": deadline,
            "at": int(now),
            "round_seconds": round(per_round, 3),
            "margin_seconds": self.config.deadline_margin,
            "next_evaluated_round": following,
        }
        aggregator.evidence.own("DeadlineStop", body)
        cp.transcript_head = aggregator.evidence.head
        cp.transcript_count = aggregator.evidence.writer.count
        self._checkpoint(rid, cp)
        self.store.put("deadline_stops", str(rid), body)
        self._event(rid, "deadline_stop", body)
        log.warning(
            "request %d: stopping after round %d: round %d could not finish %.0f s "
            "before the deadline",
            rid,
            k,
            following,
            self.config.deadline_margin,
        )
        raise DeadlineStop(k)

    def deliver_models(self) -> int:
        """Queue the final model for each buyer whose request is settled on chain (at
        once without a chain): the buyer gets the model only once the result is final."""
        done = 0
        for key, delivery in self.store.items("deliveries"):
            if delivery.get("queued"):
                continue
            rid = int(key)
            row = self._request_row(rid)
            if self.ledger is not None:
                state = self.ledger.request(row.chain_request_id)
                if state.status != RequestStatus.SETTLED:
                    continue
            message = wire.loads(delivery["message"].encode("utf-8"))
            job = self.queue.put(rid, row.buyer, message)
            self.store.put("deliveries", key, {**delivery, "queued": job})
            self._event(rid, "model_delivered", {"job": job})
            log.info("request %d: settled; final model queued for the buyer", rid)
            done += 1
        return done

    def _progress(self, rid: int, rec: RoundRecord) -> None:
        self._event(rid, "round", {"round": rec.round, "metric": rec.metric})
        if rid in self._overdue:
            raise ProtocolError(f"the deadline passed during training, after round {rec.round}")

    def _checkpoint(self, rid: int, cp: Checkpoint) -> None:
        if cp.round == 0 and cp.record.initial_metric is not None:
            # The initial model's MSE, public from now on (the status pages chart it).
            self._event(rid, "initial", {"metric": cp.record.initial_metric})
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

    # -- views ------------------------------------------------------------------------
    def request_view(self, rid: int) -> dict[str, Any]:
        """What anyone may see of a request: public parameters, statuses, published numbers."""
        row = self._request_row(rid)
        with self.store.begin() as conn:
            offer_rows = conn.execute(
                sa.select(offers.c.owner, offers.c.status, offers.c.role).where(
                    offers.c.request_id == rid
                )
            ).all()
            rounds = conn.execute(
                sa.select(events.c.data)
                .where(events.c.request_id == rid, events.c.kind == "round")
                .order_by(events.c.id)
            ).scalars()
            progress = {int(d["round"]): d["metric"] for d in rounds}
            initial = conn.execute(
                sa.select(events.c.data)
                .where(events.c.request_id == rid, events.c.kind == "initial")
                .order_by(events.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            done = conn.execute(
                sa.select(checkpoints.c.round).where(checkpoints.c.request_id == rid)
            ).scalar_one_or_none()
        return {
            "id": rid,
            "status": row.status,
            "error": row.error,
            "buyer": row.buyer,
            "aggregator": self.address,
            "chain_request_id": row.chain_request_id,
            "spec": row.spec,
            "requirements": row.requirements,
            "deposit_wei": row.deposit_wei,
            "arbiter": self.arbiter_of(rid),
            "rounds_done": done or 0,
            # The validation MSE of the initial model (round 0), once measured.
            "initial_metric": initial["metric"] if initial else None,
            "metrics": [
                {"round": k, "mse": v} for k, v in sorted(progress.items()) if v is not None
            ],
            "offers": [{"owner": o.owner, "status": o.status, "role": o.role} for o in offer_rows],
            "result": row.result,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }

    def owner_count(self) -> int:
        with self.store.begin() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(owners)).scalar_one())

    def list_requests(self, buyer: str | None = None) -> list[dict[str, Any]]:
        with self.store.begin() as conn:
            q = sa.select(requests.c.id).order_by(requests.c.id)
            if buyer is not None:
                q = q.where(requests.c.buyer == buyer)
            ids = list(conn.execute(q).scalars())
        return [self.request_view(i) for i in ids]

    def offers_for(self, owner: str) -> list[dict[str, Any]]:
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(
                    offers,
                    requests.c.spec,
                    requests.c.requirements,
                    requests.c.deposit_wei,
                    requests.c.status.label("request_status"),
                    requests.c.chain_request_id,
                    requests.c.public_key,
                )
                .join(requests, requests.c.id == offers.c.request_id)
                .where(offers.c.owner == owner)
                .order_by(offers.c.request_id)
            ).all()
        return [
            {
                "request_id": r.request_id,
                "status": r.status,
                "dataset": r.dataset,
                "role": r.role,
                "spec": r.spec,
                "requirements": r.requirements,
                "deposit_wei": r.deposit_wei,
                # The request's own status: an offer accepted but left INITIATED after
                # the request started is one whose owner was not selected.
                "request_status": r.request_status,
                # The buyer's key (crypto.paillier.key_fingerprint); the chain's keyHash wins.
                "key_fingerprint": key_fingerprint(PublicKey.from_dict(r.public_key)).hex(),
                "chain_request_id": r.chain_request_id,
                "public_key": r.public_key,
                "arbiter": self.arbiter_of(r.request_id),
                # What the trainers' share is worth per owner if every trainer earns alike.
                "offered_reward_wei": str(
                    int(r.deposit_wei) * TRAINERS_PERCENT // 100 // max(1, r.requirements["owners"])
                ),
            }
            for r in rows
        ]

    # -- read-only views for the web pages ----------------------------------------------
    def timeline(self, rid: int) -> dict[str, Any]:
        """What happened to request ``rid``, in order, and the names of the owners offered it.

        Each event is ``{"at": seconds, "kind": ..., **data}``: ``created``, ``accepted`` /
        ``declined`` (an owner), ``status`` (the request's), ``initial`` and ``round``
        (a published MSE): nothing the public view does not already show, with its time.
        """
        self._request_row(rid)
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(events.c.at, events.c.kind, events.c.data)
                .where(events.c.request_id == rid)
                .order_by(events.c.id)
            ).all()
            names = conn.execute(
                sa.select(owners.c.address, owners.c.name)
                .join(offers, offers.c.owner == owners.c.address)
                .where(offers.c.request_id == rid)
            ).all()
        return {
            "events": [{**(r.data or {}), "at": r.at, "kind": r.kind} for r in rows],
            "names": {n.address: n.name for n in names},
        }

    def market_columns(self) -> list[str]:
        """Every column name of every registered dataset (names only), sorted."""
        with self.store.begin() as conn:
            profiles = conn.execute(sa.select(owners.c.profile)).scalars().all()
        return sorted(
            {
                str(c.get("name"))
                for p in profiles
                for ds in (p or {}).get("datasets", [])
                for c in ds.get("columns", [])
                if c.get("name")
            }
        )

    def matching_owners(self, features: list[str], target: str, min_rows: int) -> int:
        """How many registered owners have a dataset a request for these columns could use."""
        req = {"features": features, "target": target, "min_rows": min_rows}
        with self.store.begin() as conn:
            profiles = conn.execute(sa.select(owners.c.profile)).scalars().all()
        return sum(matching_dataset(p or {}, req) is not None for p in profiles)


def create_app(service: AggregatorService) -> FastAPI:
    """The HTTP API of ``service``; OpenAPI at ``/docs``."""
    app = FastAPI(
        title="DeltaML aggregator",
        description="Registry, requests, offers and the work queue of a DeltaML marketplace. "
        "Every call except the public views is signed with the caller's Ethereum key.",
        version="1",
    )
    # Bodies: 1 MiB by default; the two routes that carry ciphertexts may take more.
    guard_bodies(
        app,
        [
            ("POST", r"/requests", MAX_REQUEST_BYTES),
            ("POST", r"/work/[0-9]+", wire.MAX_WIRE_BYTES),
        ],
        # Every POST is signed: checked before FastAPI parses the body.
        verifier=service.verifier,
    )
    # The signer's address; ``= party`` rather than Annotated: annotations are strings here.
    party = Depends(signed_party(service.verifier))

    @app.exception_handler(DeltaMLError)
    async def _user_error(_request: Request, exc: DeltaMLError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(JobError)
    async def _job_error(_request: Request, exc: JobError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    # /health and /info run on the event loop and touch neither a thread nor the
    # database: they answer whatever the pool and the database are busy with.
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "owners": service.registered}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        ledger = service.ledger
        return {
            "address": service.address,
            "chain_url": service.config.chain_url,
            "contract": ledger.contract_address if ledger is not None else None,
        }

    @app.post("/owners")
    def register_owner(body: OwnerRegistration, who: str = party) -> dict[str, Any]:
        return service.register_owner(who, body)

    @app.get("/offers")
    def my_offers(who: str = party) -> list[dict[str, Any]]:
        return service.offers_for(who)

    @app.post("/requests")
    def new_request(body: NewRequest, who: str = party) -> dict[str, Any]:
        return service.create_request(who, body)

    @app.get("/requests")
    def list_requests(
        buyer: Annotated[str | None, Query(max_length=42)] = None,
    ) -> list[dict[str, Any]]:
        return service.list_requests(buyer)

    @app.get("/requests/{rid}")
    def get_request(rid: DbId) -> dict[str, Any]:
        return service.request_view(rid)

    @app.post("/requests/{rid}/accept")
    def accept(rid: DbId, who: str = party) -> dict[str, Any]:
        return service.decide(who, rid, True)

    @app.post("/requests/{rid}/decline")
    def decline(rid: DbId, who: str = party) -> dict[str, Any]:
        return service.decide(who, rid, False)

    @app.post("/requests/{rid}/cancel")
    def cancel(rid: DbId, who: str = party) -> dict[str, Any]:
        return service.cancel(who, rid)

    @app.get("/requests/{rid}/timeline")
    def request_timeline(rid: int) -> dict[str, Any]:
        return service.timeline(rid)

    @app.get("/market")
    def market(
        who: str = party,
        features: str = "",
        target: str = "",
        min_rows: Annotated[int, Query(ge=1)] = 1,
    ) -> dict[str, Any]:
        """For a buyer writing a request: the registered column names, and how many
        owners could serve a request for ``features`` (comma-separated) and ``target``."""
        wanted = [f.strip() for f in features.split(",") if f.strip()]
        matching = (
            service.matching_owners(wanted, target.strip(), min_rows)
            if wanted and target.strip()
            else None
        )
        return {
            "columns": service.market_columns(),
            "owners": service.owner_count(),
            "matching": matching,
        }

    @app.get("/requests/{rid}/transcript")
    def transcript(rid: DbId) -> FileResponse:
        """The public transcript (the sealed companion never leaves the aggregator).

        Only once the result is on chain: before that it is still being written.
        It names the final model by its digest only (the ciphertexts are sealed), so
        reading it gives nobody the model before settlement.
        """
        row = service._request_row(rid)
        if row.status != Status.FINISHED:
            raise HTTPException(
                409,
                f"request {rid} is {row.status}: its transcript is published once "
                "the result is on chain",
            )
        path = service.transcript_path(rid)
        if not path.exists():
            raise HTTPException(404, f"request {rid} has no transcript yet")
        return FileResponse(path, media_type="application/x-ndjson", filename=path.name)

    @app.get("/work")
    async def fetch_work(
        who: str = party, wait: Annotated[float, Query(ge=0, le=LONG_POLL_MAX_SECONDS)] = 20.0
    ) -> Response:
        """A queued job, waiting up to ``wait`` s; the wait holds no thread (429 past caps)."""
        job = await service.queue.take_async(who, wait)
        if job is None:
            return Response(status_code=204)
        return Response(
            content=job.payload,
            media_type="application/json",
            headers={"X-DeltaML-Job": str(job.id), "X-DeltaML-Request": str(job.request_id)},
        )

    @app.post("/work/{job_id}")
    async def reply(job_id: DbId, request: Request, who: str = party) -> dict[str, Any]:
        body = await request.body()  # bounded by guard_bodies, signature checked by ``party``
        # Whose job it is first (a cheap look-up), then parse — off the event loop: a
        # reply may be tens of MiB. A malformed reply gets a clear 400 now.
        await run_in_threadpool(service.queue.check_open, job_id, who)
        await run_in_threadpool(wire.loads, body)
        await run_in_threadpool(service.queue.reply, job_id, who, body.decode("utf-8"))
        return {"job": job_id, "accepted": True}

    @app.post("/work/{job_id}/error")
    def report_failure(job_id: DbId, body: FailureReport, who: str = party) -> dict[str, Any]:
        service.queue.reply(job_id, who, body.error, failed=True)
        return {"job": job_id, "accepted": True}

    from deltaml.services.ui import aggregator_ui, mount

    mount(app, aggregator_ui(service))  # read-only status pages at /ui
    return app
