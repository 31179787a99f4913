"""Training requests: created by buyers, accepted or declined by owners, viewed by anyone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from deltaml.services.aggregator.routes.deps import Caller, ServiceDep
from deltaml.services.aggregator.schemas import (
    Cancelled,
    DbId,
    Decided,
    NewRequest,
    RequestCreated,
    RequestView,
    Timeline,
)

router = APIRouter(prefix="/requests", tags=["requests"])


@router.post("", response_model=RequestCreated)
def new_request(body: NewRequest, who: Caller, service: ServiceDep) -> dict[str, Any]:
    return service.create_request(who, body)


@router.get("", response_model=list[RequestView])
def list_requests(
    service: ServiceDep,
    buyer: Annotated[str | None, Query(max_length=42)] = None,
) -> list[dict[str, Any]]:
    return service.list_requests(buyer)


@router.get("/{rid}", response_model=RequestView)
def get_request(rid: DbId, service: ServiceDep) -> dict[str, Any]:
    return service.request_view(rid)


@router.post("/{rid}/accept", response_model=Decided)
def accept(rid: DbId, who: Caller, service: ServiceDep) -> dict[str, Any]:
    return service.decide(who, rid, True)


@router.post("/{rid}/decline", response_model=Decided)
def decline(rid: DbId, who: Caller, service: ServiceDep) -> dict[str, Any]:
    return service.decide(who, rid, False)


@router.post("/{rid}/cancel", response_model=Cancelled)
def cancel(rid: DbId, who: Caller, service: ServiceDep) -> dict[str, Any]:
    return service.cancel(who, rid)


@router.get("/{rid}/timeline", response_model=Timeline)
def request_timeline(rid: int, service: ServiceDep) -> dict[str, Any]:
    return service.timeline(rid)


@router.get("/{rid}/transcript")
def transcript(rid: DbId, service: ServiceDep) -> FileResponse:
    """The public transcript (the sealed companion never leaves the aggregator).

    Only once the result is on chain: before that it is still being written.
    It names the final model by its digest only (the ciphertexts are sealed), so
    reading it gives nobody the model before settlement.
    """
    path = service.views.published_transcript(rid)
    return FileResponse(path, media_type="application/x-ndjson", filename=path.name)
