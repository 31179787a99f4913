"""The model buyer's pages: its requests, a form for a new one, one live page per request.

==========================================  ===========================================
``GET /ui/``                                the buyer's requests with status and MSE
``GET /ui/requests/new``                    the request form
``POST /ui/requests``                       create it (checked field by field)
``GET /ui/requests/{id}``                   live status and MSE chart, improvement,
                                            contributions and payments, evidence,
                                            approve, model download
``POST /ui/requests/{id}/approve``          approve the settlement on the contract
``POST /ui/requests/{id}/cancel``           cancel an open request (deposit refunded)
``GET /ui/requests/{id}/model.json``        the trained model (``TrainedModel`` JSON)
``GET /ui/api/requests/{id}``               progress, for the live page
==========================================  ===========================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from deltaml.errors import DeltaMLError
from deltaml.services.ui import format as fmt
from deltaml.services.ui.forms import FIELDS, form_values, key_sizes, validate_request_form
from deltaml.services.ui.sessions import LoginConfig
from deltaml.services.ui.web import NavItem, WebUI

if TYPE_CHECKING:
    from deltaml.services.buyer import BuyerNode

FINAL = ("FINISHED", "FAILED", "CANCELLED")


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


def participants(view: dict[str, Any], withdrawn: dict[str, bool]) -> list[dict[str, Any]]:
    """Each owner that took part (or was offered it), with its contribution and payment."""
    result = view.get("result") or {}
    contributions = result.get("contributions") or {}
    payouts = result.get("payouts_wei") or {}
    rows = []
    for offer in view.get("offers", []):
        owner = offer["owner"]
        if offer["status"] in ("WAITING", "READY", "DECLINED") and owner not in payouts:
            continue
        rows.append(
            {
                "address": owner,
                "role": offer.get("role") or "",
                "status": offer["status"],
                "contribution": contributions.get(owner),
                "payment_wei": payouts.get(owner),
                "withdrawn": withdrawn.get(owner),
            }
        )
    rows.sort(key=lambda r: (r["role"] != "trainer", -(r["contribution"] or 0.0), r["address"]))
    return rows


def buyer_ui(node: BuyerNode, login: LoginConfig | None) -> WebUI:
    ui = WebUI(
        "buyer",
        "Model buyer",
        node.address,
        [NavItem("Requests", "home"), NavItem("New request", "new_request")],
        login,
    )
    app = ui.app

    @app.get("/", name="home", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        session = ui.session(request)
        rows = []
        for view in reversed(node.status()):
            rows.append({"view": view, "live": fmt.progress(view)})
        return ui.render(request, "buyer/requests.html", {"rows": rows}, session=session)

    def form_page(
        request: Request,
        session: Any,
        form: Any = None,
        errors: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        return ui.render(
            request,
            "buyer/new.html",
            {
                "fields": {f.name: f for f in FIELDS},
                "values": form_values(form),
                "errors": errors or {},
                "key_sizes": key_sizes(node.config.allow_test_keys),
            },
            session=session,
            status_code=status_code,
        )

    @app.get("/requests/new", name="new_request", response_class=HTMLResponse)
    def new_request(request: Request) -> Response:
        return form_page(request, ui.session(request))

    @app.post("/requests", name="create_request")
    async def create_request(request: Request) -> Response:
        session = ui.session(request)
        form = await ui.form(request, session)
        spec, errors = validate_request_form(form, node.config.allow_test_keys)
        if spec is None:
            return form_page(request, session, form, errors, 400)
        try:
            created = await run_in_threadpool(node.create_request, spec)
        except DeltaMLError as exc:
            return form_page(request, session, form, {"_form": fmt.message(exc)}, 400)
        rid = int(created["id"])
        ui.flash(
            session,
            "ok",
            f"Request {rid} created and {fmt.eth(spec['deposit_wei'])} escrowed; "
            "it is being offered to the data owners.",
        )
        return ui.redirect(request, "request_page", rid=rid)

    def page_context(rid: int) -> dict[str, Any]:
        view = node.overview(rid)
        result = view.get("result") or {}
        payouts = result.get("payouts_wei") or {}
        settlement = view.get("settlement") or None
        withdrawn: dict[str, bool] = {}
        if settlement and settlement.get("approved") and payouts:
            try:
                withdrawn = node.withdrawn(rid, list(payouts))
            except DeltaMLError:
                withdrawn = {}
        aggregator = view.get("aggregator", "")
        paid_wei = sum(int(v) for v in payouts.values())
        return {
            "rid": rid,
            "view": view,
            "live": fmt.progress(view),
            "version": live_version(view),
            "participants": participants(view, withdrawn),
            "aggregator": aggregator,
            "aggregator_fee_wei": payouts.get(aggregator),
            "aggregator_withdrawn": withdrawn.get(aggregator),
            "paid_wei": paid_wei,
            "refund_wei": result.get("refund_wei"),
            "settlement": settlement,
            "requirements": view.get("requirements") or {},
            "spec": view.get("spec") or {},
            "final": view.get("status") in FINAL,
            "can_approve": bool(
                # The model comes only after the settlement: approval does not wait for it.
                view.get("status") == "FINISHED"
                and settlement
                and settlement.get("verified")
                and not settlement.get("approved")
            ),
        }

    @app.get("/requests/{rid}", name="request_page", response_class=HTMLResponse)
    def request_page(request: Request, rid: int) -> Response:
        session = ui.session(request)
        return ui.render(request, "buyer/request.html", page_context(rid), session=session)

    @app.get("/api/requests/{rid}", name="api_request")
    def api_request(request: Request, rid: int) -> dict[str, Any]:
        ui.session(request)
        view = node.overview(rid)
        live = fmt.progress(view)
        live["version"] = live_version(view)
        return live

    @app.post("/requests/{rid}/approve", name="approve")
    async def approve(request: Request, rid: int) -> Response:
        session = ui.session(request)
        await ui.form(request, session)
        try:
            outcome = await run_in_threadpool(node.settle, rid, True)
        except DeltaMLError as exc:
            ui.flash(session, "error", f"Not approved: {fmt.message(exc)}")
        else:
            if outcome is None:
                ui.flash(session, "info", "Nothing to approve yet: the training is not over.")
            elif outcome.get("approved"):
                refund = outcome.get("refund_wei")
                ui.flash(
                    session,
                    "ok",
                    "Settlement approved: the participants can withdraw their payments"
                    + (f"; {fmt.eth(refund)} refunded to you." if refund else "."),
                )
            else:
                ui.flash(session, "error", "Not approved: the evidence does not verify.")
        return ui.redirect(request, "request_page", rid=rid)

    @app.post("/requests/{rid}/cancel", name="cancel")
    async def cancel(request: Request, rid: int) -> Response:
        session = ui.session(request)
        await ui.form(request, session)
        try:
            await run_in_threadpool(node.cancel, rid)
        except DeltaMLError as exc:
            ui.flash(session, "error", f"Not cancelled: {fmt.message(exc)}")
        else:
            ui.flash(session, "ok", f"Request {rid} cancelled: the deposit is being refunded.")
        return ui.redirect(request, "request_page", rid=rid)

    @app.get("/requests/{rid}/model.json", name="model")
    def model(request: Request, rid: int) -> Response:
        ui.session(request)
        return Response(
            json.dumps(node.model_json(rid), indent=2),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="deltaml-model-{rid}.json"',
                "Cache-Control": "no-store",
            },
        )

    return ui
