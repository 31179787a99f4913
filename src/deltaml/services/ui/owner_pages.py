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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from deltaml.errors import DeltaMLError
from deltaml.ledger.payouts import TRAINERS_PERCENT
from deltaml.services.ui import format as fmt
from deltaml.services.ui.sessions import LoginConfig
from deltaml.services.ui.web import NavItem, WebUI

if TYPE_CHECKING:
    from deltaml.services.owner import OwnerNode

#: The largest CSV the page takes.
MAX_UPLOAD_BYTES = 64 * 2**20
DECIDABLE = ("WAITING", "READY", "INITIATED")


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


def owner_ui(node: OwnerNode, login: LoginConfig | None) -> WebUI:
    ui = WebUI(
        "owner",
        f"Data owner · {node.config.name}",
        node.address,
        [NavItem("Requests", "home"), NavItem("Datasets", "datasets")],
        login,
    )
    app = ui.app

    def offer_of(rid: int) -> dict[str, Any]:
        offer = next((o for o in node.offers if int(o["request_id"]) == rid), None)
        if offer is None:
            raise HTTPException(404, f"Request {rid} was not offered to this node.")
        return offer

    @app.get("/", name="home", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        session = ui.session(request)
        offers = list(node.offers)
        earnings = node.earnings()
        pending = node.pending_earnings()
        rows = [
            {
                **o,
                "outcome": outcome(o),
                "can_decide": can_decide(o),
                "pool_wei": int(o["deposit_wei"]) * TRAINERS_PERCENT // 100,
            }
            for o in offers
        ]
        return ui.render(
            request,
            "owner/offers.html",
            {
                "offers": rows,
                "version": offers_version(offers),
                "earnings": earnings,
                "pending_wei": pending,
                "datasets": node.profiles,
                "accepts_itself": node.config.accept == "all",
                "min_reward_wei": node.config.min_reward_wei,
            },
            session=session,
        )

    @app.get("/api/offers", name="api_offers")
    def api_offers(request: Request) -> dict[str, Any]:
        ui.session(request)
        offers = list(node.offers)
        return {
            "version": offers_version(offers),
            "offers": [{"request_id": o["request_id"], "status": o["status"]} for o in offers],
        }

    async def decide(request: Request, rid: int, accept: bool) -> Response:
        session = ui.session(request)
        await ui.form(request, session)
        offer_of(rid)
        try:
            await run_in_threadpool(node.decide, rid, accept)
            offers = await run_in_threadpool(node.refresh_offers)
        except DeltaMLError as exc:
            ui.flash(session, "error", f"Request {rid}: {fmt.message(exc)}")
        else:
            now = next((o for o in offers if int(o["request_id"]) == rid), None)
            state = outcome(now) if now else ""
            if not accept:
                text = f"You declined request {rid}."
            elif state == "INITIATED":
                text = f"You accepted request {rid}: training starts when enough owners have."
            elif state == "NOT_SELECTED":
                text = (
                    f"You accepted request {rid}, but it had already started with other "
                    "owners: you were not selected."
                )
            else:
                text = f"You accepted request {rid}: training has started."
            ui.flash(session, "ok", text)
        return ui.redirect(request, "home")

    @app.post("/offers/{rid}/accept", name="accept")
    async def accept(request: Request, rid: int) -> Response:
        return await decide(request, rid, True)

    @app.post("/offers/{rid}/decline", name="decline")
    async def decline(request: Request, rid: int) -> Response:
        return await decide(request, rid, False)

    @app.get("/datasets", name="datasets", response_class=HTMLResponse)
    def datasets(request: Request) -> Response:
        session = ui.session(request)
        return ui.render(
            request,
            "owner/datasets.html",
            {"datasets": node.profiles, "max_mib": MAX_UPLOAD_BYTES // 2**20},
            session=session,
        )

    @app.post("/datasets", name="add_dataset")
    async def add_dataset(request: Request) -> Response:
        session = ui.session(request)
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_UPLOAD_BYTES + 64 * 1024:
            raise HTTPException(413, f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB.")
        form = await ui.form(request, session)
        upload = form.get("file")
        name = str(form.get("name") or "").strip()
        error, field = "", "file"
        profile = None
        if not isinstance(upload, UploadFile) or not upload.filename:
            error = "Choose a CSV file to add."
        else:
            content = await upload.read(MAX_UPLOAD_BYTES + 1)
            if len(content) > MAX_UPLOAD_BYTES:
                error = f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB."
            else:
                try:
                    profile = await run_in_threadpool(
                        node.add_dataset, name, upload.filename, content
                    )
                except DeltaMLError as exc:
                    error = fmt.message(exc)
                    field = "name" if str(exc).startswith("dataset name") else "file"
        if profile is None:
            return ui.render(
                request,
                "owner/datasets.html",
                {
                    "datasets": node.profiles,
                    "max_mib": MAX_UPLOAD_BYTES // 2**20,
                    "errors": {field: error},
                    "name": name,
                },
                session=session,
                status_code=400,
            )
        ui.flash(
            session,
            "ok",
            f"Dataset {profile['name']} added ({profile['rows']} rows) and offered to the "
            "aggregator.",
        )
        return ui.redirect(request, "datasets")

    def training_context(rid: int) -> dict[str, Any]:
        offer = offer_of(rid)
        view = node.client.get(f"/requests/{rid}")
        result = view.get("result") or {}
        me = node.address
        payment = node.payment(rid, view)
        role = offer.get("role") or next(
            (o["role"] for o in view.get("offers", []) if o["owner"] == me), ""
        )
        state = fmt.offer_outcome(offer["status"], view["status"], role)
        if state in ("NOT_SELECTED", "CLOSED", "DECLINED") and payment["state"] != "claimable":
            payment = {
                **payment,
                "state": "none",
                "explanation": "Nothing to withdraw: "
                + {
                    "NOT_SELECTED": "you accepted, but the training started with other owners.",
                    "CLOSED": "the training started with other owners.",
                    "DECLINED": "you declined this request.",
                }[state],
            }
        elif view["status"] in ("FAILED", "CANCELLED") and payment["state"] != "claimable":
            ended = "was cancelled" if view["status"] == "CANCELLED" else "failed"
            payment = {
                **payment,
                "state": "none",
                "explanation": f"Nothing to withdraw: the request {ended}, so nobody is paid; "
                "the buyer takes its deposit back.",
            }
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
            "pool_wei": int(view["deposit_wei"]) * TRAINERS_PERCENT // 100,
            "payment": payment,
            "escrow": fmt.escrow_text(view["status"], escrow_state(view, payment)),
            "final": view["status"] in fmt.FINAL,
        }

    def escrow_state(view: dict[str, Any], payment: dict[str, Any]) -> str:
        if view["status"] in ("FAILED", "CANCELLED"):
            return ""
        if payment["state"] == "awaiting_approval":
            return "awaiting"
        if payment["state"] in ("claimable", "withdrawn") or (
            view["status"] == "FINISHED" and (view.get("result") or {}).get("fee_withdrawn")
        ):
            return "settled"
        return ""

    @app.get("/requests/{rid}", name="training", response_class=HTMLResponse)
    def training(request: Request, rid: int) -> Response:
        session = ui.session(request)
        try:
            context = training_context(rid)
        except DeltaMLError as exc:
            raise HTTPException(502, fmt.message(exc)) from None
        return ui.render(request, "owner/training.html", context, session=session)

    @app.get("/api/requests/{rid}", name="api_training")
    def api_training(request: Request, rid: int) -> dict[str, Any]:
        ui.session(request)
        offer_of(rid)
        try:
            view = node.client.get(f"/requests/{rid}")
        except DeltaMLError as exc:
            raise HTTPException(502, fmt.message(exc)) from None
        live = fmt.progress(view)
        live["version"] = view["status"]
        return live

    @app.post("/requests/{rid}/withdraw", name="withdraw")
    async def withdraw(request: Request, rid: int) -> Response:
        session = ui.session(request)
        await ui.form(request, session)
        offer_of(rid)
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

    return ui
