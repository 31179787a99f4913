"""``/health`` and ``/info``: on the event loop, touching neither a thread nor the database,
so that they answer whatever the pool and the database are busy with."""

from __future__ import annotations

from fastapi import APIRouter

from deltaml.services.aggregator.routes.deps import ServiceDep
from deltaml.services.aggregator.schemas import Health, Info

router = APIRouter(tags=["status"])


@router.get("/health", response_model=Health)
async def health(service: ServiceDep) -> Health:
    return Health(ok=True, owners=service.registered)


@router.get("/info", response_model=Info)
async def info(service: ServiceDep) -> Info:
    ledger = service.ledger
    return Info(
        address=service.address,
        chain_url=service.config.chain_url,
        contract=ledger.contract_address if ledger is not None else None,
    )
