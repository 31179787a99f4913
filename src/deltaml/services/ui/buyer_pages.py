"""The model buyer's pages: its requests, a form for a new one, one live page per request.

==========================================  ===========================================
``GET /ui/``                                the buyer's requests with status and MSE
``GET /ui/requests/new``                    the request form
``POST /ui/requests``                       create it (checked field by field)
``GET /ui/requests/{id}``                   live status and MSE chart, improvement,
                                            contributions and payments, evidence,
                                            challenge window, approve, model download
``POST /ui/requests/{id}/approve``          approve the settlement on the contract
``POST /ui/requests/{id}/cancel``           cancel an open request (deposit refunded)
``GET /ui/requests/{id}/model.json``        the trained model (``TrainedModel`` JSON)
``GET /ui/requests/{id}/model.onnx``        the trained model as ONNX
``GET /ui/api/requests/{id}``               progress, for the live page
==========================================  ===========================================

The routes are an :class:`~fastapi.APIRouter` of small handlers; the node, the UI
and the login session come in as dependencies (:data:`Buyer`, :data:`UIDep`,
:data:`SessionDep`), and what a page shows is built in :mod:`.buyer_view`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from deltaml.errors import DeltaMLError
from deltaml.services.ui import buyer_view as bv
from deltaml.services.ui import format as fmt
from deltaml.services.ui.forms import FIELDS, form_values, key_sizes, validate_request_form
from deltaml.services.ui.sessions import LoginConfig, Session
from deltaml.services.ui.web import FormDep, NavItem, SessionDep, UIDep, WebUI, page_node

if TYPE_CHECKING:
    from deltaml.services.buyer.node import BuyerNode

# Kept importable from here (tests and other pages use them).
live_version = bv.live_version
list_version = bv.list_version
participants = bv.participants
escrow_state = bv.escrow_state

#: The buyer's node, as a page's dependency.
Buyer = Annotated["BuyerNode", Depends(page_node)]
router = APIRouter()


@router.get("/", name="home", response_class=HTMLResponse)
def home(request: Request, ui: UIDep, session: SessionDep, node: Buyer) -> Response:
    views = list(reversed(node.status()))
    rows = [{"view": view, "live": fmt.progress(view)} for view in views]
    context = {"rows": rows, "version": list_version(views)}
    return ui.render(request, "buyer/requests.html", context, session=session)


@router.get("/api/requests", name="api_requests")
def api_requests(_session: SessionDep, node: Buyer) -> dict[str, Any]:
    return {"version": list_version(list(reversed(node.status())))}


def _form_page(
    request: Request,
    ui: WebUI,
    session: Session | None,
    node: BuyerNode,
    kept: tuple[Any, dict[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    form, errors = kept or (None, {})
    known = bv.market(node, [], "", 1) or {}
    context = {
        "fields": {f.name: f for f in FIELDS},
        "values": form_values(form),
        "errors": errors,
        "key_sizes": key_sizes(node.config.allow_test_keys),
        "columns": known.get("columns") or [],
        "registered": known.get("owners"),
    }
    return ui.render(request, "buyer/new.html", context, session=session, status_code=status_code)


def _refuse(
    request: Request,
    ui: WebUI,
    session: Session | None,
    node: BuyerNode,
    form: Any,
    errors: dict[str, str],
) -> Response:
    """A failed submit: back to the form by a redirect (a reload does not post again)."""
    if session is None:
        return _form_page(request, ui, session, node, (form, errors), 400)
    ui.stash(session, "new_request", (form_values(form), errors))
    return ui.redirect(request, "new_request")


@router.get("/requests/new", name="new_request", response_class=HTMLResponse)
def new_request(request: Request, ui: UIDep, session: SessionDep, node: Buyer) -> Response:
    return _form_page(request, ui, session, node, ui.unstash(session, "new_request"))


@router.get("/api/market", name="api_market")
def api_market(
    _session: SessionDep, node: Buyer, features: str = "", target: str = "", min_rows: str = "1"
) -> dict[str, Any]:
    wanted = [f.strip() for f in features.split(",") if f.strip()]
    try:
        rows = max(1, int(min_rows))
    except ValueError:
        rows = 1
    found = bv.market(node, wanted, target.strip(), rows)
    if found is None:
        return {"text": "", "matching": None}
    return {"text": bv.market_text(found, rows), "matching": found.get("matching")}


@router.post("/requests", name="create_request")
async def create_request(
    request: Request, ui: UIDep, session: SessionDep, form: FormDep, node: Buyer
) -> Response:
    spec, errors = validate_request_form(form, node.config.allow_test_keys)
    if spec is None:
        return _refuse(request, ui, session, node, form, errors)
    found = await run_in_threadpool(
        bv.market, node, list(spec["features"]), str(spec["target"]), int(spec["min_rows"])
    )
    why_not = bv.unservable(spec, found)
    if why_not:
        return _refuse(request, ui, session, node, form, {"_form": why_not})
    try:
        created = await run_in_threadpool(node.create_request, spec)
    except DeltaMLError as exc:
        return _refuse(request, ui, session, node, form, {"_form": fmt.message(exc)})
    rid = int(created["id"])
    ui.flash(
        session,
        "ok",
        f"Request {rid} created and {fmt.eth(spec['deposit_wei'])} escrowed; "
        "it is being offered to the data owners.",
    )
    return ui.redirect(request, "request_page", rid=rid)


@router.get("/requests/{rid}", name="request_page", response_class=HTMLResponse)
def request_page(
    request: Request, rid: int, ui: UIDep, session: SessionDep, node: Buyer
) -> Response:
    context = bv.request_context(node, rid)
    return ui.render(request, "buyer/request.html", context, session=session)


@router.get("/api/requests/{rid}", name="api_request")
def api_request(rid: int, _session: SessionDep, node: Buyer) -> dict[str, Any]:
    view = node.overview(rid)
    live = fmt.progress(view)
    live["version"] = live_version(view)
    return live


def _approval_message(outcome: dict[str, Any] | None) -> tuple[str, str]:
    if outcome is None:
        return "info", "Nothing to approve yet: the training is not over."
    if not outcome.get("approved"):
        return "error", "Not approved: the evidence does not verify."
    refund = outcome.get("refund_wei")
    return "ok", (
        "Settlement approved: the participants can withdraw their payments"
        + (f"; {fmt.eth(refund)} refunded to you." if refund else ".")
    )


@router.post("/requests/{rid}/approve", name="approve")
async def approve(
    request: Request, rid: int, ui: UIDep, session: SessionDep, _form: FormDep, node: Buyer
) -> Response:
    try:
        outcome = await run_in_threadpool(node.settle, rid, True)
    except DeltaMLError as exc:
        ui.flash(session, "error", f"Not approved: {fmt.message(exc)}")
    else:
        ui.flash(session, *_approval_message(outcome))
    return ui.redirect(request, "request_page", rid=rid)


@router.post("/requests/{rid}/cancel", name="cancel")
async def cancel(
    request: Request, rid: int, ui: UIDep, session: SessionDep, _form: FormDep, node: Buyer
) -> Response:
    try:
        await run_in_threadpool(node.cancel, rid)
    except DeltaMLError as exc:
        ui.flash(session, "error", f"Not cancelled: {fmt.message(exc)}")
    else:
        ui.flash(session, "ok", f"Request {rid} cancelled: the deposit is being refunded.")
    return ui.redirect(request, "request_page", rid=rid)


def _download(content: str | bytes, media_type: str, filename: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/requests/{rid}/model.json", name="model")
def model(rid: int, _session: SessionDep, node: Buyer) -> Response:
    text = json.dumps(node.model_json(rid), indent=2)
    return _download(text, "application/json", f"deltaml-model-{rid}.json")


@router.get("/requests/{rid}/model.onnx", name="model_onnx")
def model_onnx(rid: int, _session: SessionDep, node: Buyer) -> Response:
    return _download(node.model_onnx(rid), "application/octet-stream", f"deltaml-model-{rid}.onnx")


def buyer_ui(node: BuyerNode, login: LoginConfig | None) -> WebUI:
    """The buyer's web UI: :data:`router` serving ``node``."""
    nav = [NavItem("Requests", "home"), NavItem("New request", "new_request")]
    return WebUI("buyer", "Model buyer", node.address, nav, login).serve(router, node)
