"""Domain errors as HTTP responses: the one place that maps them to status codes.

Service methods raise the errors of :mod:`deltaml.errors` and know nothing of
HTTP; every app of a node installs :func:`install_error_handlers`, and a node's
web pages :func:`install_page_errors`, which render the same status as an error
page. An error that carries the status of a service it relayed (``status``, as
:class:`~deltaml.services.party.AggregatorError` does) keeps that status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaml.errors import (
    BusyError,
    ConflictError,
    DeltaMLError,
    ForbiddenError,
    NotFoundError,
    UnsupportedError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

#: The first class that matches gives the status; any other DeltaMLError is a 400.
STATUS_BY_ERROR: tuple[tuple[type[DeltaMLError], int], ...] = (
    (NotFoundError, 404),
    (ForbiddenError, 403),
    (ConflictError, 409),
    (BusyError, 429),
    (UnsupportedError, 501),
)


def http_status(exc: DeltaMLError) -> int:
    """The HTTP status code that answers ``exc``."""
    relayed = getattr(exc, "status", 0)
    if isinstance(relayed, int) and 400 <= relayed < 600:
        return relayed
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def install_error_handlers(app: FastAPI) -> None:
    """Answer every :class:`~deltaml.errors.DeltaMLError` with ``{"detail": message}``."""
    from fastapi.responses import JSONResponse
    from starlette.requests import Request

    async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DeltaMLError)
        return JSONResponse({"detail": str(exc)}, status_code=http_status(exc))

    app.add_exception_handler(DeltaMLError, _domain_error)


def install_page_errors(app: FastAPI) -> None:
    """In a web UI app: a domain error is the UI's own error page (or JSON under ``/api/``).

    It hands the error, as an HTTP exception with its status, to the handler the UI
    installed for those, so that both look the same.
    """
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response

    async def _domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DeltaMLError)
        page = app.exception_handlers[HTTPException]
        response = page(request, HTTPException(http_status(exc), str(exc)))
        if not isinstance(response, Response):
            response = await response
        assert isinstance(response, Response)
        return response

    app.add_exception_handler(DeltaMLError, _domain_error)
