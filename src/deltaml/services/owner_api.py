"""The data owner's local API (127.0.0.1, bearer token) and, with a login, its web pages."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from deltaml.services.owner import OwnerNode
from deltaml.services.party import (
    local_api,
)
from deltaml.services.ui.sessions import LoginConfig


def create_app(node: OwnerNode, login: LoginConfig | None = None) -> FastAPI:
    """The owner's local API (127.0.0.1 only), behind a bearer token in its work folder.

    With ``login``, the web UI too, at ``/ui`` (it has its own login: see
    :mod:`deltaml.services.ui`).
    """
    app = local_api("DeltaML data owner", node.config.work_dir)

    @app.get("/status")
    def status() -> dict[str, Any]:
        return {
            "address": node.address,
            "name": node.config.name,
            "datasets": node.profiles,
            "unusable": node.unusable,
            "offers": node.offers,
            # Per request: empty cells filled, unknown levels counted as other (counts only).
            "request_notes": {str(k): v for k, v in node.request_notes.items()},
            "earnings": node.earnings(),
            "jobs_done": node.loop.jobs_done,
        }

    @app.post("/offers/{rid}/accept")
    def accept(rid: int) -> dict[str, Any]:
        return node.decide(rid, True)

    @app.post("/offers/{rid}/decline")
    def decline(rid: int) -> dict[str, Any]:
        return node.decide(rid, False)

    @app.post("/offers/{rid}/withdraw")
    def withdraw(rid: int) -> dict[str, Any]:
        return {"withdrawn_wei": str(node.withdraw(rid))}

    if login is not None:
        from deltaml.services.ui import mount, owner_ui

        mount(app, owner_ui(node, login))
    return app
