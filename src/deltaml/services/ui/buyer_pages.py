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
``GET /ui/requests/{id}/model.onnx``        the trained model as ONNX
``GET /ui/api/requests/{id}``               progress, for the live page
==========================================  ===========================================
"""

from __future__ import annotations

import json
import logging
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

FINAL = fmt.FINAL
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
        views = list(reversed(node.status()))
        rows = [{"view": view, "live": fmt.progress(view)} for view in views]
        return ui.render(
            request,
            "buyer/requests.html",
            {"rows": rows, "version": list_version(views)},
            session=session,
        )

    @app.get("/api/requests", name="api_requests")
    def api_requests(request: Request) -> dict[str, Any]:
        ui.session(request)
        return {"version": list_version(list(reversed(node.status())))}

    def market(features: list[str], target: str, min_rows: int) -> dict[str, Any] | None:
        """The registered column names and the owners that could serve such a request,
        or None when the aggregator cannot say."""
        params = {"features": ",".join(features), "target": target, "min_rows": min_rows}
        try:
            found = node.client.get("/market", params=params)
        except DeltaMLError:
            return None
        return found if isinstance(found, dict) and "columns" in found else None

    def form_page(
        request: Request,
        session: Any,
        form: Any = None,
        errors: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        known = market([], "", 1)
        return ui.render(
            request,
            "buyer/new.html",
            {
                "fields": {f.name: f for f in FIELDS},
                "values": form_values(form),
                "errors": errors or {},
                "key_sizes": key_sizes(node.config.allow_test_keys),
                "columns": (known or {}).get("columns") or [],
                "registered": (known or {}).get("owners"),
            },
            session=session,
            status_code=status_code,
        )

    def refuse(request: Request, session: Any, form: Any, errors: dict[str, str]) -> Response:
        """A failed submit: back to the form by a redirect (a reload does not post again)."""
        if session is None:
            return form_page(request, session, form, errors, 400)
        ui.stash(session, "new_request", (form_values(form), errors))
        return ui.redirect(request, "new_request")

    @app.get("/requests/new", name="new_request", response_class=HTMLResponse)
    def new_request(request: Request) -> Response:
        session = ui.session(request)
        kept = ui.unstash(session, "new_request")
        if kept is None:
            return form_page(request, session)
        values, errors = kept
        return form_page(request, session, values, errors)

    @app.get("/api/market", name="api_market")
    def api_market(
        request: Request, features: str = "", target: str = "", min_rows: str = "1"
    ) -> dict[str, Any]:
        ui.session(request)
        wanted = [f.strip() for f in features.split(",") if f.strip()]
        try:
            rows = max(1, int(min_rows))
        except ValueError:
            rows = 1
        found = market(wanted, target.strip(), rows)
        if found is None:
            return {"text": "", "matching": None}
        matching = found.get("matching")
        if matching is None:
            n = int(found.get("owners") or 0)
            text = f"{n} data owner{'s' if n != 1 else ''} registered."
        else:
            text = (
                f"{matching} owner{' has' if matching == 1 else 's have'} these columns and at "
                f"least {rows} row{'s' if rows != 1 else ''}."
            )
        return {"text": text, "matching": matching}

    @app.post("/requests", name="create_request")
    async def create_request(request: Request) -> Response:
        session = ui.session(request)
        form = await ui.form(request, session)
        spec, errors = validate_request_form(form, node.config.allow_test_keys)
        if spec is None:
            return refuse(request, session, form, errors)
        found = await run_in_threadpool(
            market, list(spec["features"]), str(spec["target"]), int(spec["min_rows"])
        )
        matching = (found or {}).get("matching")
        if matching is not None and matching < spec["owners"]:
            columns = ", ".join([*spec["features"], spec["target"]])
            who = "No data owner has" if matching == 0 else f"Only {matching} owner(s) have"
            return refuse(
                request,
                session,
                form,
                {
                    "_form": f"{who} the columns {columns} and at least {spec['min_rows']} "
                    f"rows; this request needs {spec['owners']}. Nothing was escrowed."
                },
            )
        try:
            created = await run_in_threadpool(node.create_request, spec)
        except DeltaMLError as exc:
            return refuse(request, session, form, {"_form": fmt.message(exc)})
        rid = int(created["id"])
        ui.flash(
            session,
            "ok",
            f"Request {rid} created and {fmt.eth(spec['deposit_wei'])} escrowed; "
            "it is being offered to the data owners.",
        )
        return ui.redirect(request, "request_page", rid=rid)

    def chain_events(view: dict[str, Any]) -> list[Any]:
        """The contract's record of the request (none without a contract)."""
        if node.ledger is None:
            return []
        try:
            return node.ledger.history(int(view["chain_request_id"]))
        except (DeltaMLError, OSError, KeyError, ValueError) as exc:
            log.warning("request %s: contract history unavailable: %s", view.get("id"), exc)
            return []

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
        try:
            timeline = node.client.get(f"/requests/{rid}/timeline")
        except DeltaMLError:
            timeline = {}
        if not isinstance(timeline, dict):
            timeline = {}
        names = timeline.get("names") or {}
        offers = view.get("offers", [])
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
            "timeline": fmt.timeline_rows(timeline.get("events") or [], view, names),
            "chain": fmt.chain_rows(
                chain_events(view),
                names,
                {node.address: "You (the buyer)", aggregator: "The aggregator"},
            ),
            "duration_s": fmt.run_duration(timeline.get("events") or []),
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

    @app.get("/requests/{rid}/model.onnx", name="model_onnx")
    def model_onnx(request: Request, rid: int) -> Response:
        ui.session(request)
        return Response(
            node.model_onnx(rid),
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="deltaml-model-{rid}.onnx"',
                "Cache-Control": "no-store",
            },
        )

    return ui
