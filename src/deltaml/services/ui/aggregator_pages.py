"""The aggregator's read-only status pages: what ``GET /requests`` already makes public.

========================================  =============================================
``GET /ui/``                              every request: status, owners, rounds, MSE
``GET /ui/requests/{id}``                 one request: live MSE chart, offers,
                                          contributions and payments
``GET /ui/api/requests/{id}``             progress, for the live chart
========================================  =============================================

No login: nothing here is more than the public JSON views show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from deltaml.errors import DeltaMLError
from deltaml.ledger.base import RequestStatus
from deltaml.services.ui import format as fmt
from deltaml.services.ui.web import NavItem, WebUI

if TYPE_CHECKING:
    from deltaml.services.aggregator import AggregatorService


def taking_part(view: dict[str, Any]) -> int:
    """Owners seated in the training, or (while it looks for owners) that have accepted."""
    return sum(
        bool(o.get("role")) or (view["status"] == "OPEN" and o["status"] == "INITIATED")
        for o in view["offers"]
    )


def list_version(views: list[dict[str, Any]]) -> str:
    """Changes when a request appears, changes status, gains an owner or a round."""
    return ";".join(f"{v['id']}:{v['status']}:{taking_part(v)}:{v['rounds_done']}" for v in views)


def aggregator_ui(service: AggregatorService) -> WebUI:
    ui = WebUI(
        "aggregator", "Aggregator status", service.address, [NavItem("Requests", "home")], None
    )
    app = ui.app

    @app.get("/", name="home", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        views = list(reversed(service.list_requests()))
        rows = [
            {"view": view, "live": fmt.progress(view), "accepted": taking_part(view)}
            for view in views
        ]
        return ui.render(
            request,
            "aggregator/requests.html",
            {"rows": rows, "owners": service.owner_count(), "version": list_version(views)},
        )

    @app.get("/api/requests", name="api_requests")
    def api_requests() -> dict[str, Any]:
        return {"version": list_version(service.list_requests())}

    @app.get("/requests/{rid}", name="request_page", response_class=HTMLResponse)
    def request_page(request: Request, rid: int) -> Response:
        view = service.request_view(rid)
        result = view.get("result") or {}
        history = service.timeline(rid)
        names = history["names"]
        transcript = service.transcript_path(rid)
        offers = [
            {
                **o,
                "label": fmt.owner_label(o["owner"], names),
                "outcome": fmt.offer_outcome(o["status"], view["status"], o["role"]),
            }
            for o in view["offers"]
        ]
        return ui.render(
            request,
            "aggregator/request.html",
            {
                "rid": rid,
                "view": view,
                "offers": offers,
                "live": fmt.progress(view),
                "contributions": result.get("contributions") or {},
                "shares": fmt.trainer_shares(result.get("contributions") or {}),
                "payouts": result.get("payouts_wei") or {},
                "final": view["status"] in fmt.FINAL,
                "escrow": fmt.escrow_text(view["status"], chain_settlement(view)),
                "timeline": fmt.timeline_rows(history["events"], view, names),
                "chain": fmt.chain_rows(
                    chain_events(view),
                    names,
                    {view["buyer"]: "The buyer", service.address: "The aggregator"},
                ),
                "transcript_bytes": transcript.stat().st_size if transcript.exists() else None,
            },
        )

    def chain_events(view: dict[str, Any]) -> list[Any]:
        """The contract's record of the request (none without a contract)."""
        if service.ledger is None:
            return []
        try:
            return service.ledger.history(int(view["chain_request_id"]))
        except (DeltaMLError, OSError, ValueError):
            return []

    def chain_settlement(view: dict[str, Any]) -> str:
        """``settled`` once the contract has paid out a finished request."""
        if view["status"] != "FINISHED" or service.ledger is None:
            return ""
        if (view.get("result") or {}).get("fee_withdrawn"):
            return "settled"
        try:
            state = service.ledger.request(int(view["chain_request_id"]))
        except DeltaMLError:
            return ""
        return "settled" if state.status == RequestStatus.SETTLED else "awaiting"

    @app.get("/api/requests/{rid}", name="api_request")
    def api_request(rid: int) -> dict[str, Any]:
        view = service.request_view(rid)
        live = fmt.progress(view)
        live["version"] = view["status"]
        return live

    return ui
