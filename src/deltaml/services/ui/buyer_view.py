"""What the buyer's pages show, built from its node: no routes, no HTTP here.

The routes (:mod:`.buyer_pages`) call these with the :class:`~deltaml.services.buyer.
BuyerNode`; each function reads the node (its aggregator client, its ledger) and
returns the plain values a template renders.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from deltaml.errors import DeltaMLError
from deltaml.ledger.base import RequestStatus
from deltaml.services.ui import format as fmt

if TYPE_CHECKING:
    from deltaml.services.buyer.node import BuyerNode

log = logging.getLogger(__name__)


def live_version(view: dict[str, Any]) -> str:
    """Changes when the page needs more than its live numbers redrawn (a reload)."""
    settlement = view.get("settlement") or {}
    return "|".join(
        [
            str(view.get("status")),
            str(bool(view.get("model_ready"))),
            str(settlement.get("verified")),
            str(settlement.get("approved")),
            str(settlement.get("refund_wei") or settlement.get("reclaimed_wei") or ""),
        ]
    )


def list_version(views: list[dict[str, Any]]) -> str:
    """Changes when a request appears, or one changes in what the list shows."""
    return ";".join(f"{v.get('id')}:{v.get('rounds_done', 0)}:{live_version(v)}" for v in views)


def participants(
    view: dict[str, Any], withdrawn: dict[str, bool], names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each owner that took part or accepted, with its contribution, share and payment.

    An owner that accepted after the training had started is listed as not selected;
    owners that were only offered the request (or declined it) are not listed.
    """
    result = view.get("result") or {}
    contributions = result.get("contributions") or {}
    shares = fmt.trainer_shares(contributions)
    payouts = result.get("payouts_wei") or {}
    rows = []
    for offer in view.get("offers", []):
        owner = offer["owner"]
        role = offer.get("role") or ""
        if not role and offer["status"] != "INITIATED" and owner not in payouts:
            continue
        rows.append(
            {
                "address": owner,
                "label": fmt.owner_label(owner, names or {}),
                "role": role,
                "status": fmt.offer_outcome(offer["status"], view.get("status"), role),
                "contribution": contributions.get(owner),
                "share": shares.get(owner),
                "payment_wei": payouts.get(owner),
                "withdrawn": withdrawn.get(owner),
            }
        )
    rows.sort(
        key=lambda r: (
            r["status"] == "NOT_SELECTED",
            r["role"] != "trainer",
            -(r["contribution"] or 0.0),
            r["address"],
        )
    )
    return rows


def escrow_state(view: dict[str, Any]) -> str:
    """The settlement as :func:`fmt.escrow_text` reads it."""
    settlement = view.get("settlement") or {}
    if settlement.get("reclaimed_wei") is not None:
        return "refunded"
    if settlement.get("approved"):
        return "settled"
    if view.get("status") == "FINISHED":
        return "awaiting"
    return ""


def market(
    node: BuyerNode, features: list[str], target: str, min_rows: int
) -> dict[str, Any] | None:
    """The registered column names and the owners that could serve such a request,
    or None when the aggregator cannot say."""
    params = {"features": ",".join(features), "target": target, "min_rows": min_rows}
    try:
        found = node.client.get("/market", params=params)
    except DeltaMLError:
        return None
    return found if isinstance(found, dict) and "columns" in found else None


def market_text(found: dict[str, Any], rows: int) -> str:
    """How many owners could serve a request, in a sentence."""
    matching = found.get("matching")
    if matching is None:
        n = int(found.get("owners") or 0)
        return f"{n} data owner{'s' if n != 1 else ''} registered."
    return (
        f"{matching} owner{' has' if matching == 1 else 's have'} these columns and at "
        f"least {rows} row{'s' if rows != 1 else ''}."
    )


def unservable(spec: dict[str, Any], found: dict[str, Any] | None) -> str:
    """Why no request should be escrowed for ``spec`` ("" if enough owners could serve it)."""
    matching = (found or {}).get("matching")
    if matching is None or matching >= spec["owners"]:
        return ""
    columns = ", ".join([*spec["features"], spec["target"]])
    who = "No data owner has" if matching == 0 else f"Only {matching} owner(s) have"
    return (
        f"{who} the columns {columns} and at least {spec['min_rows']} rows; this request "
        f"needs {spec['owners']}. Nothing was escrowed."
    )


def chain_events(node: BuyerNode, view: dict[str, Any]) -> list[Any]:
    """The contract's record of the request (none without a contract)."""
    if node.ledger is None:
        return []
    try:
        return node.ledger.history(int(view["chain_request_id"]))
    except (DeltaMLError, OSError, KeyError, ValueError) as exc:
        log.warning("request %s: contract history unavailable: %s", view.get("id"), exc)
        return []


def challenge(node: BuyerNode, view: dict[str, Any]) -> dict[str, Any] | None:
    """The challenge window as the contract has it (None without a contract).

    ``state``: ``before`` (no result posted yet), ``open`` (approve or dispute until
    ``ends_at``), ``closed`` (past ``ends_at``: anyone may settle), ``disputed`` (the
    arbiter decides until ``resolution_ends_at``), ``settled`` or ``ended`` (cancelled
    or failed).
    """
    if node.ledger is None or view.get("chain_request_id") is None:
        return None
    try:
        state = node.ledger.request(int(view["chain_request_id"]))
        now = node.ledger.now()
    except (DeltaMLError, OSError, ValueError) as exc:
        log.warning("request %s: contract state unavailable: %s", view.get("id"), exc)
        return None
    ends_at = state.challenge_ends_at
    words = {
        RequestStatus.SETTLED: "settled",
        RequestStatus.DISPUTED: "disputed",
        RequestStatus.CANCELLED: "ended",
        RequestStatus.FAILED: "ended",
    }
    if state.status in words:
        kind = words[state.status]
    elif ends_at is None:
        kind = "before"
    else:
        kind = "open" if now < ends_at else "closed"
    return {
        "state": kind,
        "window_s": state.challenge_window_s,
        "ends_at": ends_at,
        "resolution_ends_at": state.resolution_ends_at,
        "left_s": max(0, ends_at - now) if ends_at is not None else None,
    }


def _withdrawn(node: BuyerNode, rid: int, settlement: Any, payouts: dict[str, Any]) -> dict:
    if not (settlement and settlement.get("approved") and payouts):
        return {}
    try:
        return node.withdrawn(rid, list(payouts))
    except DeltaMLError:
        return {}


def _timeline(node: BuyerNode, rid: int) -> dict[str, Any]:
    try:
        timeline = node.client.get(f"/requests/{rid}/timeline")
    except DeltaMLError:
        return {}
    return timeline if isinstance(timeline, dict) else {}


def can_approve(view: dict[str, Any]) -> bool:
    """The model comes only after the settlement: approval does not wait for it."""
    settlement = view.get("settlement") or {}
    return bool(
        view.get("status") == "FINISHED"
        and settlement.get("verified")
        and not settlement.get("approved")
    )


def request_context(node: BuyerNode, rid: int) -> dict[str, Any]:
    """Everything the page of request ``rid`` shows."""
    view = node.overview(rid)
    result = view.get("result") or {}
    payouts = result.get("payouts_wei") or {}
    settlement = view.get("settlement") or None
    withdrawn = _withdrawn(node, rid, settlement, payouts)
    aggregator = view.get("aggregator", "")
    timeline = _timeline(node, rid)
    names = timeline.get("names") or {}
    events = timeline.get("events") or []
    offers = view.get("offers", [])
    parties = {node.address: "You (the buyer)", aggregator: "The aggregator"}
    return {
        "rid": rid,
        "view": view,
        "live": fmt.progress(view),
        "version": live_version(view),
        "participants": participants(view, withdrawn, names),
        "offered": len(offers),
        "have_data": sum(o["status"] in ("READY", "INITIATED") for o in offers),
        "accepted": sum(o["status"] == "INITIATED" for o in offers),
        "escrow": fmt.escrow_text(str(view.get("status")), escrow_state(view)),
        "challenge": challenge(node, view),
        "timeline": fmt.timeline_rows(events, view, names),
        "chain": fmt.chain_rows(chain_events(node, view), names, parties),
        "duration_s": fmt.run_duration(events),
        "aggregator": aggregator,
        "aggregator_fee_wei": payouts.get(aggregator),
        "aggregator_withdrawn": withdrawn.get(aggregator),
        "paid_wei": sum(int(v) for v in payouts.values()),
        "refund_wei": result.get("refund_wei"),
        "settlement": settlement,
        "requirements": view.get("requirements") or {},
        "spec": view.get("spec") or {},
        "final": view.get("status") in fmt.FINAL,
        "can_approve": can_approve(view),
    }
