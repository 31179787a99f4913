"""The aggregator's HTTP API: one router per resource (:func:`create_app` puts them together)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from deltaml.services import wire
from deltaml.services.aggregator.routes import owners, requests, status, work
from deltaml.services.aggregator.routes.work import LONG_POLL_MAX_SECONDS
from deltaml.services.auth import signed_party
from deltaml.services.http_errors import install_error_handlers, install_page_errors
from deltaml.services.serve import guard_bodies

if TYPE_CHECKING:
    from deltaml.services.aggregator.service import AggregatorService

__all__ = ["LONG_POLL_MAX_SECONDS", "MAX_REQUEST_BYTES", "create_app"]

#: Largest ``POST /requests`` body: the initial model holds one ciphertext per feature
#: (at most 1000 features, ~1.4 KB each with a 4096-bit key), plus the key and spec.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


def create_app(service: AggregatorService) -> FastAPI:
    """The HTTP API of ``service``; OpenAPI at ``/docs``."""
    app = FastAPI(
        title="DeltaML aggregator",
        description="Registry, requests, offers and the work queue of a DeltaML marketplace. "
        "Every call except the public views is signed with the caller's Ethereum key.",
        version="1",
    )
    app.state.service = service
    app.state.signed_party = signed_party(service.verifier)
    # Bodies: 1 MiB by default; the two routes that carry ciphertexts may take more.
    guard_bodies(
        app,
        [
            ("POST", r"/requests", MAX_REQUEST_BYTES),
            ("POST", r"/work/[0-9]+", wire.MAX_WIRE_BYTES),
        ],
        # Every POST is signed: checked before FastAPI parses the body.
        verifier=service.verifier,
    )
    install_error_handlers(app)
    for module in (status, owners, requests, work):
        app.include_router(module.router)

    from deltaml.services.ui import aggregator_ui, mount

    ui = aggregator_ui(service)  # read-only status pages at /ui
    install_page_errors(ui.app)
    mount(app, ui)
    return app
