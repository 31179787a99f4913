"""services/http_errors.py: the one place where domain errors become HTTP statuses."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from deltaml.errors import (
    BusyError,
    ConflictError,
    DeltaMLError,
    DeltaMLValueError,
    ForbiddenError,
    LedgerError,
    NotFoundError,
    UnsupportedError,
)
from deltaml.services.http_errors import http_status, install_error_handlers, install_page_errors
from deltaml.services.party import AggregatorError
from deltaml.services.queue import JobClosed, TooManyPolls, UnknownJob


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no request 3"), 404),
        (ForbiddenError("not yours"), 403),
        (ConflictError("too late"), 409),
        (BusyError("later"), 429),
        (UnsupportedError("no onnx"), 501),
        (DeltaMLValueError("bad"), 400),
        (LedgerError("NotAggregator"), 400),
        (UnknownJob("no job 1"), 404),
        (JobClosed("job 1 is done"), 409),
        (TooManyPolls("too many"), 429),
        # A refusal relayed from the aggregator keeps its status; none known: 400.
        (AggregatorError("refused", 409), 409),
        (AggregatorError("cannot reach it"), 400),
    ],
)
def test_each_error_has_its_status(error: DeltaMLError, status: int) -> None:
    assert http_status(error) == status


def test_errors_also_are_the_matching_builtins() -> None:
    assert isinstance(NotFoundError("x"), LookupError)
    assert isinstance(ForbiddenError("x"), PermissionError)
    assert str(ForbiddenError("request 3 is not yours")) == "request 3 is not yours"
    assert isinstance(UnsupportedError("x"), NotImplementedError)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/missing")
    def missing() -> None:
        raise NotFoundError("no request 7")

    @app.get("/late")
    def late() -> None:
        raise ConflictError("request 7 is FINISHED: too late to decide")

    return app


def test_the_api_answers_the_status_and_the_one_line_message() -> None:
    with TestClient(_app()) as client:
        missing = client.get("/missing")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no request 7"}
        late = client.get("/late")
        assert late.status_code == 409 and "too late" in late.json()["detail"]


def test_pages_render_a_domain_error_as_their_own_error_page() -> None:
    ui = FastAPI()

    @ui.exception_handler(StarletteHTTPException)
    async def page(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"page": exc.status_code, "text": exc.detail}, exc.status_code)

    install_page_errors(ui)

    @ui.get("/requests/{rid}")
    def request_page(rid: int) -> None:
        if rid == 0:
            raise HTTPException(418, "the page's own")
        raise NotFoundError(f"no request {rid}")

    with TestClient(ui) as client:
        shown = client.get("/requests/5")
        assert shown.status_code == 404
        assert shown.json() == {"page": 404, "text": "no request 5"}
        assert client.get("/requests/0").json() == {"page": 418, "text": "the page's own"}
