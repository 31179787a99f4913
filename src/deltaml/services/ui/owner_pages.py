"""The data owner's pages: offered requests, datasets, one page per training, earnings.

========================================  =============================================
``GET /ui/``                              offered requests (status, reward), accept /
                                          decline, total earnings
``POST /ui/offers/{id}/accept|decline``   decide on an offer
``GET /ui/datasets``                      the datasets offered and their profiles
``POST /ui/datasets``                     add a CSV (checked; re-registered with the
                                          aggregator)
``GET /ui/requests/{id}``                 a training: role, rounds, MSE chart,
                                          contribution, earnings, withdraw
``POST /ui/requests/{id}/withdraw``       withdraw the earnings from the contract
``GET /ui/api/offers``                    statuses, for the live list
``GET /ui/api/requests/{id}``             progress, for the live chart
========================================  =============================================

The routes are an :class:`~fastapi.APIRouter` of small handlers; the node, the UI
and the session come in as dependencies (:data:`Owner`, :data:`UIDep`,
:data:`SessionDep`, :data:`Offer` for a page about one offered request). A new
page is one more handler here (and a template); what it shows is a plain function
of the node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from deltaml.errors import DeltaMLError
from deltaml.services.ui import format as fmt
from deltaml.services.ui import owner_view as ov
from deltaml.services.ui.sessions import LoginConfig, Session
from deltaml.services.ui.web import FormDep, NavItem, SessionDep, UIDep, WebUI, page_node

if TYPE_CHECKING:
    from deltaml.services.owner import OwnerNode

#: The largest CSV the page takes.
MAX_UPLOAD_BYTES = 64 * 2**20
# Kept importable from here.
offers_version = ov.offers_version
outcome = ov.outcome
can_decide = ov.can_decide

#: The owner's node, as a page's dependency.
Owner = Annotated["OwnerNode", Depends(page_node)]
router = APIRouter()


def offer_of(rid: int, node: Owner) -> dict[str, Any]:
    """The offer of request ``rid`` (a page's dependency; 404 if it was never offered)."""
    offer = next((o for o in node.offers if int(o["request_id"]) == rid), None)
    if offer is None:
        raise HTTPException(404, f"Request {rid} was not offered to this node.")
    return offer


#: The offer a page is about.
Offer = Annotated[dict[str, Any], Depends(offer_of)]


@router.get("/", name="home", response_class=HTMLResponse)
def home(request: Request, ui: UIDep, session: SessionDep, node: Owner) -> Response:
    return ui.render(request, "owner/offers.html", ov.offers_context(node), session=session)


@router.get("/api/offers", name="api_offers")
def api_offers(_session: SessionDep, node: Owner) -> dict[str, Any]:
    offers = list(node.offers)
    return {
        "version": offers_version(offers),
        "offers": [{"request_id": o["request_id"], "status": o["status"]} for o in offers],
    }


async def _decide(
    request: Request, ui: WebUI, session: Session | None, node: OwnerNode, rid: int, accept: bool
) -> Response:
    try:
        await run_in_threadpool(node.decide, rid, accept)
        offers = await run_in_threadpool(node.refresh_offers)
    except DeltaMLError as exc:
        ui.flash(session, "error", f"Request {rid}: {fmt.message(exc)}")
    else:
        now = next((o for o in offers if int(o["request_id"]) == rid), None)
        ui.flash(session, "ok", ov.decided_text(rid, accept, outcome(now) if now else ""))
    return ui.redirect(request, "home")


@router.post("/offers/{rid}/accept", name="accept")
async def accept(
    request: Request,
    rid: int,
    ui: UIDep,
    session: SessionDep,
    _form: FormDep,
    node: Owner,
    _offer: Offer,
) -> Response:
    return await _decide(request, ui, session, node, rid, True)


@router.post("/offers/{rid}/decline", name="decline")
async def decline(
    request: Request,
    rid: int,
    ui: UIDep,
    session: SessionDep,
    _form: FormDep,
    node: Owner,
    _offer: Offer,
) -> Response:
    return await _decide(request, ui, session, node, rid, False)


def _datasets_page(
    request: Request, ui: WebUI, session: Session | None, node: OwnerNode, **more: Any
) -> Response:
    context = {"datasets": node.profiles, "max_mib": MAX_UPLOAD_BYTES // 2**20, **more}
    status_code = 400 if more.get("errors") else 200
    return ui.render(
        request, "owner/datasets.html", context, session=session, status_code=status_code
    )


@router.get("/datasets", name="datasets", response_class=HTMLResponse)
def datasets(request: Request, ui: UIDep, session: SessionDep, node: Owner) -> Response:
    return _datasets_page(request, ui, session, node)


async def _added(node: OwnerNode, name: str, upload: Any) -> tuple[dict[str, Any] | None, str, str]:
    """The profile of an uploaded CSV, or None, the form field at fault and why."""
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None, "file", "Choose a CSV file to add."
    content = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        return None, "file", f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB."
    try:
        profile = await run_in_threadpool(node.add_dataset, name, upload.filename, content)
    except DeltaMLError as exc:
        field = "name" if str(exc).startswith("dataset name") else "file"
        return None, field, fmt.message(exc)
    return profile, "", ""


@router.post("/datasets", name="add_dataset")
async def add_dataset(request: Request, ui: UIDep, session: SessionDep, node: Owner) -> Response:
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_UPLOAD_BYTES + 64 * 1024:
        raise HTTPException(413, f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB.")
    form = await ui.form(request, session)
    name = str(form.get("name") or "").strip()
    profile, field, error = await _added(node, name, form.get("file"))
    if profile is None:
        return _datasets_page(request, ui, session, node, errors={field: error}, name=name)
    ui.flash(
        session,
        "ok",
        f"Dataset {profile['name']} added ({profile['rows']} rows) and offered to the aggregator.",
    )
    return ui.redirect(request, "datasets")


@router.get("/requests/{rid}", name="training", response_class=HTMLResponse)
def training(
    request: Request, ui: UIDep, session: SessionDep, node: Owner, offer: Offer
) -> Response:
    try:
        context = ov.training_context(node, offer)
    except DeltaMLError as exc:
        raise HTTPException(502, fmt.message(exc)) from None
    return ui.render(request, "owner/training.html", context, session=session)


@router.get("/api/requests/{rid}", name="api_training")
def api_training(rid: int, _session: SessionDep, node: Owner, _offer: Offer) -> dict[str, Any]:
    try:
        view = node.client.get(f"/requests/{rid}")
    except DeltaMLError as exc:
        raise HTTPException(502, fmt.message(exc)) from None
    live = fmt.progress(view)
    live["version"] = view["status"]
    return live


@router.post("/requests/{rid}/withdraw", name="withdraw")
async def withdraw(
    request: Request,
    rid: int,
    ui: UIDep,
    session: SessionDep,
    _form: FormDep,
    node: Owner,
    _offer: Offer,
) -> Response:
    try:
        amount = await run_in_threadpool(node.withdraw, rid)
    except DeltaMLError as exc:
        ui.flash(session, "error", f"Withdrawal failed: {fmt.message(exc)}")
    else:
        if amount:
            ui.flash(session, "ok", f"Withdrew {fmt.eth(amount)} to {node.address}.")
        else:
            state = await run_in_threadpool(node.payment, rid)
            ui.flash(session, "info", state["explanation"])
    return ui.redirect(request, "training", rid=rid)


def owner_ui(node: OwnerNode, login: LoginConfig | None) -> WebUI:
    """The data owner's web UI: :data:`router` serving ``node``."""
    nav = [NavItem("Requests", "home"), NavItem("Datasets", "datasets")]
    ui = WebUI("owner", f"Data owner · {node.config.name}", node.address, nav, login)
    return ui.serve(router, node)
