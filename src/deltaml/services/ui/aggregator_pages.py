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

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from deltaml.errors import DeltaMLError
from deltaml.ledger.base import RequestStatus
from deltaml.services.ui import format as fmt
from deltaml.services.ui.web import NavItem, UIDep, WebUI, page_node

if TYPE_CHECKING:
    from deltaml.services.aggregator.service import AggregatorService


def taking_part(view: dict[str, Any]) -> int:
    """Owners seated in the training, or (while it looks for owners) that have accepted."""
    return sum(
        bool(o.get("role")) or (view["status"] == "OPEN" and o["status"] == "INITIATED")
        for o in view["offers"]
    )


def list_version(views: list[dict[str, Any]]) -> str:
    """Changes when a request appears, changes status, gains an owner or a round."""
    return ";".join(f"{v['id']}:{v['status']}:{taking_part(v)}:{v['rounds_done']}" for v in views)


#: The aggregator service, as a page's dependency.
Service = Annotated["AggregatorService", Depends(page_node)]
router = APIRouter()


@router.get("/", name="home", response_class=HTMLResponse)
def home(request: Request, ui: UIDep, service: Service) -> Response:
    views = list(reversed(service.list_requests()))
    rows = [
        {"view": view, "live": fmt.progress(view), "accepted": taking_part(view)} for view in views
    ]
    context = {"rows": rows, "owners": service.owner_count(), "version": list_version(views)}
    return ui.render(request, "aggregator/requests.html", context)


@router.get("/api/requests", name="api_requests")
def api_requests(service: Service) -> dict[str, Any]:
    return {"version": list_version(service.list_requests())}


def chain_events(service: AggregatorService, view: dict[str, Any]) -> list[Any]:
    """The contract's record of the request (none without a contract)."""
    if service.ledger is None:
        return []
    try:
        return service.ledger.history(int(view["chain_request_id"]))
    except (DeltaMLError, OSError, ValueError):
        return []


def chain_settlement(service: AggregatorService, view: dict[str, Any]) -> str:
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


def request_context(service: AggregatorService, rid: int) -> dict[str, Any]:
    """Everything the public page of request ``rid`` shows."""
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
    parties = {view["buyer"]: "The buyer", service.address: "The aggregator"}
    return {
        "rid": rid,
        "view": view,
        "offers": offers,
        "live": fmt.progress(view),
        "contributions": result.get("contributions") or {},
        "shares": fmt.trainer_shares(result.get("contributions") or {}),
        "payouts": result.get("payouts_wei") or {},
        "final": view["status"] in fmt.FINAL,
        "escrow": fmt.escrow_text(view["status"], chain_settlement(service, view)),
        "timeline": fmt.timeline_rows(history["events"], view, names),
        "chain": fmt.chain_rows(chain_events(service, view), names, parties),
        "transcript_bytes": transcript.stat().st_size if transcript.exists() else None,
    }


@router.get("/requests/{rid}", name="request_page", response_class=HTMLResponse)
def request_page(request: Request, rid: int, ui: UIDep, service: Service) -> Response:
    return ui.render(request, "aggregator/request.html", request_context(service, rid))


@router.get("/api/requests/{rid}", name="api_request")
def api_request(rid: int, service: Service) -> dict[str, Any]:
    view = service.request_view(rid)
    live = fmt.progress(view)
    live["version"] = view["status"]
    return live


def aggregator_ui(service: AggregatorService) -> WebUI:
    """The aggregator's public status pages: :data:`router` serving ``service``."""
    nav = [NavItem("Requests", "home")]
    return WebUI("aggregator", "Aggregator status", service.address, nav, None).serve(
        router, service
    )
