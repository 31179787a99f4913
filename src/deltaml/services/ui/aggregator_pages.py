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

from deltaml.services.ui import format as fmt
from deltaml.services.ui.web import NavItem, WebUI

if TYPE_CHECKING:
    from deltaml.services.aggregator import AggregatorService


def aggregator_ui(service: AggregatorService) -> WebUI:
    ui = WebUI(
        "aggregator", "Aggregator status", service.address, [NavItem("Requests", "home")], None
    )
    app = ui.app

    @app.get("/", name="home", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        rows = []
        for view in reversed(service.list_requests()):
            accepted = sum(
                o["status"] not in ("WAITING", "READY", "DECLINED") for o in view["offers"]
            )
            rows.append({"view": view, "live": fmt.progress(view), "accepted": accepted})
        return ui.render(
            request, "aggregator/requests.html", {"rows": rows, "owners": service.owner_count()}
        )

    @app.get("/requests/{rid}", name="request_page", response_class=HTMLResponse)
    def request_page(request: Request, rid: int) -> Response:
        view = service.request_view(rid)
        result = view.get("result") or {}
        return ui.render(
            request,
            "aggregator/request.html",
            {
                "rid": rid,
                "view": view,
                "live": fmt.progress(view),
                "contributions": result.get("contributions") or {},
                "payouts": result.get("payouts_wei") or {},
                "final": view["status"] in ("FINISHED", "FAILED", "CANCELLED"),
            },
        )

    @app.get("/api/requests/{rid}", name="api_request")
    def api_request(rid: int) -> dict[str, Any]:
        view = service.request_view(rid)
        live = fmt.progress(view)
        live["version"] = view["status"]
        return live

    return ui
