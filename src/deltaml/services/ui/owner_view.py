"""What the data owner's pages show, built from its node: no routes, no HTTP here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deltaml.ledger.payouts import TRAINERS_PERCENT
from deltaml.services.ui import format as fmt

if TYPE_CHECKING:
    from deltaml.services.owner import OwnerNode

DECIDABLE = ("WAITING", "READY", "INITIATED")
#: Why an owner that did not take part has nothing to withdraw, by its offer's outcome.
_NOTHING_BECAUSE = {
    "NOT_SELECTED": "you accepted, but the training started with other owners.",
    "CLOSED": "the training started with other owners.",
    "DECLINED": "you declined this request.",
}


def offers_version(offers: list[dict[str, Any]]) -> str:
    """Changes whenever an offer appears or changes status, or its request does: the
    list page reloads then."""
    return ";".join(
        f"{o['request_id']}:{o['status']}:{o.get('request_status', '')}" for o in offers
    )


def outcome(offer: dict[str, Any]) -> str:
    """The offer's status as this owner should read it (``NOT_SELECTED``, ``CLOSED``)."""
    return fmt.offer_outcome(offer["status"], offer.get("request_status"), offer.get("role"))


def can_decide(offer: dict[str, Any]) -> bool:
    """Accept / Decline only while the request still looks for owners."""
    return offer["status"] in DECIDABLE and offer.get("request_status", "OPEN") == "OPEN"


def pool_wei(deposit_wei: Any) -> int:
    """The trainers' share of a deposit: what an offer's reward is "up to"."""
    return int(deposit_wei) * TRAINERS_PERCENT // 100


def offers_context(node: OwnerNode) -> dict[str, Any]:
    """The offers page: every offer with its outcome and reward, the earnings."""
    offers = list(node.offers)
    rows = [
        {
            **o,
            "outcome": outcome(o),
            "can_decide": can_decide(o),
            "pool_wei": pool_wei(o["deposit_wei"]),
        }
        for o in offers
    ]
    return {
        "offers": rows,
        "version": offers_version(offers),
        "earnings": node.earnings(),
        "pending_wei": node.pending_earnings(),
        "datasets": node.profiles,
        "accepts_itself": node.config.accept == "all",
        "min_reward_wei": node.config.min_reward_wei,
    }


def decided_text(rid: int, accept: bool, state: str) -> str:
    """What the owner reads after accepting or declining request ``rid``."""
    if not accept:
        return f"You declined request {rid}."
    if state == "INITIATED":
        return f"You accepted request {rid}: training starts when enough owners have."
    if state == "NOT_SELECTED":
        return (
            f"You accepted request {rid}, but it had already started with other "
            "owners: you were not selected."
        )
    return f"You accepted request {rid}: training has started."


def _payment_for(state: str, status: str, payment: dict[str, Any]) -> dict[str, Any]:
    """``payment`` worded for an owner that is not paid (not seated, or the request ended)."""
    if payment["state"] == "claimable":
        return payment
    if state in _NOTHING_BECAUSE:
        why = _NOTHING_BECAUSE[state]
    elif status in ("FAILED", "CANCELLED"):
        ended = "was cancelled" if status == "CANCELLED" else "failed"
        why = f"the request {ended}, so nobody is paid; the buyer takes its deposit back."
    else:
        return payment
    return {**payment, "state": "none", "explanation": "Nothing to withdraw: " + why}


def escrow_state(view: dict[str, Any], payment: dict[str, Any]) -> str:
    """The settlement as :func:`fmt.escrow_text` reads it, from this owner's side."""
    if view["status"] in ("FAILED", "CANCELLED"):
        return ""
    if payment["state"] == "awaiting_approval":
        return "awaiting"
    if payment["state"] in ("claimable", "withdrawn") or (
        view["status"] == "FINISHED" and (view.get("result") or {}).get("fee_withdrawn")
    ):
        return "settled"
    return ""


def training_context(node: OwnerNode, offer: dict[str, Any]) -> dict[str, Any]:
    """The page of one training this owner was offered."""
    rid = int(offer["request_id"])
    view = node.client.get(f"/requests/{rid}")
    result = view.get("result") or {}
    me = node.address
    role = offer.get("role") or next(
        (o["role"] for o in view.get("offers", []) if o["owner"] == me), ""
    )
    state = fmt.offer_outcome(offer["status"], view["status"], role)
    payment = _payment_for(state, view["status"], node.payment(rid, view))
    contributions = result.get("contributions") or {}
    return {
        "rid": rid,
        "offer": offer,
        "outcome": state,
        "view": view,
        "live": fmt.progress(view),
        "role": role,
        "contribution": contributions.get(me),
        "share": fmt.trainer_shares(contributions).get(me),
        "earned_wei": (result.get("payouts_wei") or {}).get(me),
        "earned_how": fmt.earned_explanation(view, me, role),
        "pool_wei": pool_wei(view["deposit_wei"]),
        "payment": payment,
        "escrow": fmt.escrow_text(view["status"], escrow_state(view, payment)),
        "final": view["status"] in fmt.FINAL,
        # What reading this owner's file for the request did (counts, never values),
        # or why this owner's file could not serve it.
        "data_notes": node.request_notes.get(rid, []),
        "refused": (node.store.get("refused", str(rid)) or {}).get("reason", ""),
    }
