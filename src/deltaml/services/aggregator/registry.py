"""The marketplace side of the aggregator: owners, their offers, buyers' requests.

Owners register dataset profiles; each open request is offered to every owner
(READY if one of its datasets has what the request needs, WAITING otherwise);
owners accept or decline; with enough acceptances the request starts (the
:class:`Registry` calls its ``start`` callback: the training runner).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from deltaml.crypto import PublicKey
from deltaml.crypto.paillier import key_fingerprint
from deltaml.crypto.serialization import unpack_vectors
from deltaml.errors import ConflictError, DeltaMLValueError, ForbiddenError, NotFoundError
from deltaml.ledger.base import RequestState, RequestStatus, Role
from deltaml.protocol.messages import TrainingSpec
from deltaml.protocol.rules import request_hash
from deltaml.protocol.spec import requirement_features
from deltaml.protocol.status import OfferStatus, Status
from deltaml.services.aggregator.core import ServiceCore, accepted_count
from deltaml.services.aggregator.schemas import NewRequest, OwnerRegistration
from deltaml.services.store import offers, owners, requests

log = logging.getLogger(__name__)


def matching_dataset(profile: dict[str, Any], req: dict[str, Any]) -> str | None:
    """The first of an owner's datasets that has every column the request needs, or None.

    A column with empty cells matches only if the request lets it be missing, a text
    column only if it is the request's categorical column (or the target of a request
    that names its classes).
    """
    wanted = [*req["features"], req["target"]]
    may_be_missing = set(req.get("missing") or ())
    categorical = set(req.get("categorical") or {})
    for ds in profile.get("datasets", []):
        # Profiles are typed on the way in; a row stored before that is skipped, not a 500.
        columns = {
            c["name"]: c
            for c in ds.get("columns", [])
            if isinstance(c, dict) and isinstance(c.get("name"), str)
        }
        if ds.get("rows", 0) < req["min_rows"]:
            continue
        if not all(
            name in columns and (not columns[name].get("nulls") or name in may_be_missing)
            for name in wanted
        ):
            continue
        text = {name for name in wanted if columns[name].get("type") == "text"} - categorical
        if text - {req["target"]} or (text and not req.get("classes")):
            continue
        return str(ds["name"])
    return None


def escrow_problems(
    state: RequestState,
    buyer: str,
    aggregator: str,
    deposit_wei: int,
    request_digest: bytes,
    key: PublicKey,
) -> list[str]:
    """What is wrong with the on-chain request a buyer says pays for its request."""
    checks = [
        (state.buyer.lower() == buyer.lower(), "was not created by you"),
        (
            state.aggregator.lower() == aggregator.lower(),
            f"does not name this aggregator ({aggregator})",
        ),
        (state.status == RequestStatus.OPEN, f"is {state.status.name}, not OPEN"),
        (
            state.deposit_wei == deposit_wei,
            f"escrows {state.deposit_wei} wei, the spec says {deposit_wei}",
        ),
        (state.spec_hash == request_digest, "commits to another spec (hash differs)"),
        (
            state.key_hash == key_fingerprint(key),
            "commits to another Paillier key (fingerprint differs)",
        ),
    ]
    return [problem for ok, problem in checks if not ok]


class Registry:
    """Owners, offers and requests in the aggregator's database."""

    def __init__(self, core: ServiceCore, start: Callable[[int], None]) -> None:
        self.core = core
        self.store = core.store
        self.ledger = core.ledger
        #: Called with a request's id once enough owners have accepted it.
        self.start = start
        #: Registered owners (what /health reports without a database query).
        self.registered = self.owner_count()

    def owner_count(self) -> int:
        with self.store.begin() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(owners)).scalar_one())

    # -- owners -------------------------------------------------------------------------
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
            with self.core.lock:
                self.registered += 1

    @staticmethod
    def _offer(
        conn: sa.Connection, rid: int, owner: str, profile: dict[str, Any], req: Any
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

    # -- requests -----------------------------------------------------------------------
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
        if len(initial) != len(requirement_features(req)) + 1:
            raise DeltaMLValueError("initial_model needs one weight per feature plus the intercept")
        arbiter = self._check_escrow(buyer, body, spec, req, key)
        now = time.time()
        with self.core.lock, self.store.begin() as conn:
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
                        deposit_wei=str(spec.deposit_wei),
                        status=Status.OPEN,
                        error="",
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            for row in conn.execute(sa.select(owners.c.address, owners.c.profile)).all():
                self._offer(conn, rid, row.address, row.profile, req)
        if arbiter is not None:
            # Who resolves a dispute: shown to the owners before they join.
            self.store.put("arbiters", str(rid), {"arbiter": arbiter})
        self.core.event(rid, "created", {"buyer": buyer})
        log.info("request %d created by %s", rid, buyer)
        return {"id": rid, "status": Status.OPEN}

    def _check_escrow(
        self,
        buyer: str,
        body: NewRequest,
        spec: TrainingSpec,
        req: dict[str, Any],
        key: PublicKey,
    ) -> str | None:
        """Refuse a request whose escrow does not pay for exactly it; its arbiter if it does
        (``None`` without a chain)."""
        if self.ledger is None:
            return None
        self._refuse_reused_escrow(body.chain_request_id)
        state = self.ledger.request(body.chain_request_id)
        problems = escrow_problems(
            state, buyer, self.core.address, spec.deposit_wei, request_hash(body.spec, req), key
        )
        if problems:
            raise DeltaMLValueError(
                f"on-chain request {body.chain_request_id} " + "; ".join(problems)
            )
        return state.arbiter

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
            raise ConflictError(
                f"on-chain request {cid} already pays for request {known}: one escrow, one training"
            )

    def _check_accepter(self, owner: str, rid: int) -> None:
        """Only a data owner registered on the contract, that joined this very request
        there with its own account, may take a seat."""
        if self.ledger is None:
            return
        if not self.ledger.has_role(owner, Role.DATA_OWNER):
            raise ForbiddenError(
                f"{owner} is not registered on the contract as a data owner: register there first"
            )
        cid = self.core.request_row(rid).chain_request_id
        if not self.ledger.has_joined(cid, owner):
            raise ConflictError(
                f"join on-chain request {cid} (its spec and key hashes) with your own "
                "account before you accept"
            )

    def decide(self, owner: str, rid: int, accept: bool) -> dict[str, Any]:
        if accept:
            self._check_accepter(owner, rid)
        with self.store.begin() as conn:
            offer = conn.execute(
                sa.select(offers.c.status).where(
                    offers.c.request_id == rid, offers.c.owner == owner
                )
            ).scalar_one_or_none()
            _check_decision(conn, rid, owner, offer, accept)
            status = OfferStatus.INITIATED if accept else OfferStatus.DECLINED
            conn.execute(
                offers.update()
                .where(offers.c.request_id == rid, offers.c.owner == owner)
                .values(status=status, updated_at=time.time())
            )
            accepted = accepted_count(conn, rid)
            row = conn.execute(
                sa.select(requests.c.requirements, requests.c.status).where(requests.c.id == rid)
            ).one()
        self.core.event(rid, "accepted" if accept else "declined", {"owner": owner})
        if accept and row.status == Status.OPEN and accepted >= row.requirements["owners"]:
            self.core.set_status(rid, Status.IN_PROGRESS)
            self.start(rid)
        return {"request_id": rid, "status": status}

    def cancel(self, buyer: str, rid: int) -> dict[str, Any]:
        row = self.core.request_row(rid)
        if row.buyer.lower() != buyer.lower():
            raise ForbiddenError(f"request {rid} is not yours")
        if row.status != Status.OPEN:
            raise ConflictError(f"request {rid} is {row.status}: only an OPEN request cancels")
        self.core.set_status(rid, Status.CANCELLED)
        return {"request_id": rid, "status": Status.CANCELLED}


def _check_decision(
    conn: sa.Connection, rid: int, owner: str, offer: str | None, accept: bool
) -> None:
    """Refuse a decision on an offer that does not exist, or that is no longer open."""
    if offer is None:
        raise NotFoundError(f"request {rid} was not offered to {owner}")
    if accept and offer == OfferStatus.WAITING:
        raise ConflictError("none of your datasets has what this request needs")
    if offer not in (OfferStatus.READY, OfferStatus.INITIATED, OfferStatus.WAITING):
        raise ConflictError(f"request {rid} is {offer} for you: too late to decide")
    current = conn.execute(sa.select(requests.c.status).where(requests.c.id == rid)).scalar_one()
    if current != Status.OPEN:
        # The seats are fixed when training starts (and on chain): no late seat.
        raise ConflictError(f"request {rid} is {current}: too late to decide")
