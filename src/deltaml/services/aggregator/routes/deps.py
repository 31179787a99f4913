"""What the aggregator's routes depend on: the service, and the signer of a call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request

if TYPE_CHECKING:
    from deltaml.services.aggregator.service import AggregatorService


def get_service(request: Request) -> AggregatorService:
    """The service behind this app (``create_app`` puts it in the app's state)."""
    return cast("AggregatorService", request.app.state.service)


async def signed_sender(request: Request) -> str:
    """The address that signed the call (verified before its body was parsed), or a 401."""
    return cast(str, await request.app.state.signed_party(request))


ServiceDep = Annotated["AggregatorService", Depends(get_service)]
#: The signer's address: every call but the public views names one.
Caller = Annotated[str, Depends(signed_sender)]
