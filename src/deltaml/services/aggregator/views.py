"""Read-only views of the aggregator's state: what the API and the status pages show.

Nothing here is more than the public rules let anyone see: a request's public
parameters, statuses and published numbers; an owner's own offers; column names
(never values) of the registered datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from deltaml.crypto import PublicKey
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import ConflictError, NotFoundError
from deltaml.ledger.payouts import TRAINERS_PERCENT
from deltaml.protocol.status import Status
from deltaml.services.aggregator.core import ServiceCore
from deltaml.services.aggregator.registry import matching_dataset
from deltaml.services.store import checkpoints, events, offers, owners, requests


class Views:
    """Queries over the aggregator's database; they change nothing."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core
        self.store = core.store

    def request_view(self, rid: int) -> dict[str, Any]:
        """What anyone may see of a request: public parameters, statuses, published numbers."""
        row = self.core.request_row(rid)
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
            "aggregator": self.core.address,
            "chain_request_id": row.chain_request_id,
            "spec": row.spec,
            "requirements": row.requirements,
            "deposit_wei": row.deposit_wei,
            "arbiter": self.core.arbiter_of(rid),
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

    def published_transcript(self, rid: int) -> Path:
        """Request ``rid``'s public transcript, once the result is on chain (before that
        it is still being written)."""
        row = self.core.request_row(rid)
        if row.status != Status.FINISHED:
            raise ConflictError(
                f"request {rid} is {row.status}: its transcript is published once "
                "the result is on chain"
            )
        path = self.core.transcript_path(rid)
        if not path.exists():
            raise NotFoundError(f"request {rid} has no transcript yet")
        return path

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
        return [self._offer_view(r) for r in rows]

    def _offer_view(self, r: Any) -> dict[str, Any]:
        # What the trainers' share is worth per owner if every trainer earns alike.
        per_owner = int(r.deposit_wei) * TRAINERS_PERCENT // 100 // max(1, r.requirements["owners"])
        return {
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
            "arbiter": self.core.arbiter_of(r.request_id),
            "offered_reward_wei": str(per_owner),
        }

    def timeline(self, rid: int) -> dict[str, Any]:
        """What happened to request ``rid``, in order, and the names of the owners offered it.

        Each event is ``{"at": seconds, "kind": ..., **data}``: ``created``, ``accepted`` /
        ``declined`` (an owner), ``status`` (the request's), ``initial`` and ``round``
        (a published MSE): nothing the public view does not already show, with its time.
        """
        self.core.request_row(rid)
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
