"""The buyer node's local API (127.0.0.1 only), behind a bearer token in its work folder."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from deltaml.errors import DeltaMLValueError
from deltaml.services.party import local_api

if TYPE_CHECKING:
    from deltaml.services.buyer.node import BuyerNode
    from deltaml.services.ui.sessions import LoginConfig


def get_node(request: Request) -> BuyerNode:
    """The node behind this app (``create_app`` puts it in the app's state)."""
    return cast("BuyerNode", request.app.state.node)


NodeDep = Annotated["BuyerNode", Depends(get_node)]
router = APIRouter()


@router.get("/status")
def status(node: NodeDep) -> dict[str, Any]:
    return {"address": node.address, "requests": node.status()}


@router.post("/requests")
async def create(request: Request, node: NodeDep) -> dict[str, Any]:
    try:
        doc = json.loads(await request.body())
    except ValueError:
        raise DeltaMLValueError("the request spec must be JSON") from None
    import anyio

    return await anyio.to_thread.run_sync(node.create_request, doc)


@router.get("/requests/{rid}/model")
def model(rid: int, node: NodeDep) -> dict[str, Any]:
    return node.model_json(rid)


@router.get("/requests/{rid}/model.onnx")
def model_onnx(rid: int, node: NodeDep) -> Response:
    return Response(
        node.model_onnx(rid),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="deltaml-model-{rid}.onnx"'},
    )


@router.post("/requests/{rid}/approve")
def approve(rid: int, node: NodeDep) -> dict[str, Any]:
    return node.settle(rid, approve=True) or {"detail": "not finished yet"}


def create_app(node: BuyerNode, login: LoginConfig | None = None) -> FastAPI:
    """The buyer's local API, behind a bearer token in its work folder.

    With ``login``, the web UI too, at ``/ui`` (it has its own login: see
    :mod:`deltaml.services.ui`).
    """
    app = local_api("DeltaML model buyer", node.config.work_dir)
    app.state.node = node
    app.include_router(router)
    if login is not None:
        from deltaml.services.http_errors import install_page_errors
        from deltaml.services.ui import buyer_ui, mount

        ui = buyer_ui(node, login)
        install_page_errors(ui.app)
        mount(app, ui)
    return app
