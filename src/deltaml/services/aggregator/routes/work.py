"""The work queue: owners and buyers long-poll their protocol messages and post replies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from deltaml.services import wire
from deltaml.services.aggregator.routes.deps import Caller, ServiceDep
from deltaml.services.aggregator.schemas import DbId, FailureReport, ReplyAccepted

#: The longest a ``GET /work`` waits for a job.
LONG_POLL_MAX_SECONDS = 30.0

router = APIRouter(prefix="/work", tags=["work"])


@router.get("")
async def fetch_work(
    who: Caller,
    service: ServiceDep,
    wait: Annotated[float, Query(ge=0, le=LONG_POLL_MAX_SECONDS)] = 20.0,
) -> Response:
    """A queued job, waiting up to ``wait`` s; the wait holds no thread (429 past caps)."""
    job = await service.queue.take_async(who, wait)
    if job is None:
        return Response(status_code=204)
    return Response(
        content=job.payload,
        media_type="application/json",
        headers={"X-DeltaML-Job": str(job.id), "X-DeltaML-Request": str(job.request_id)},
    )


@router.post("/{job_id}", response_model=ReplyAccepted)
async def reply(job_id: DbId, request: Request, who: Caller, service: ServiceDep) -> dict[str, Any]:
    body = await request.body()  # bounded by guard_bodies, signature checked by ``Caller``
    # Whose job it is first (a cheap look-up), then parse — off the event loop: a
    # reply may be tens of MiB. A malformed reply gets a clear 400 now.
    await run_in_threadpool(service.queue.check_open, job_id, who)
    await run_in_threadpool(wire.loads, body)
    await run_in_threadpool(service.queue.reply, job_id, who, body.decode("utf-8"))
    return {"job": job_id, "accepted": True}


@router.post("/{job_id}/error", response_model=ReplyAccepted)
def report_failure(
    job_id: DbId, body: FailureReport, who: Caller, service: ServiceDep
) -> dict[str, Any]:
    service.queue.reply(job_id, who, body.error, failed=True)
    return {"job": job_id, "accepted": True}
