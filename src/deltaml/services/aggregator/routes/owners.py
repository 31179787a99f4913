"""Data owners: registration, their offers, and what the market holds (for buyers)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from deltaml.services.aggregator.routes.deps import Caller, ServiceDep
from deltaml.services.aggregator.schemas import Market, Offer, OwnerRegistration, Registered

router = APIRouter(tags=["owners"])


@router.post("/owners", response_model=Registered)
def register_owner(body: OwnerRegistration, who: Caller, service: ServiceDep) -> dict[str, Any]:
    return service.register_owner(who, body)


@router.get("/offers", response_model=list[Offer])
def my_offers(who: Caller, service: ServiceDep) -> list[dict[str, Any]]:
    return service.offers_for(who)


@router.get("/market", response_model=Market)
def market(
    who: Caller,
    service: ServiceDep,
    features: str = "",
    target: str = "",
    min_rows: Annotated[int, Query(ge=1)] = 1,
) -> dict[str, Any]:
    """For a buyer writing a request: the registered column names, and how many
    owners could serve a request for ``features`` (comma-separated) and ``target``."""
    wanted = [f.strip() for f in features.split(",") if f.strip()]
    matching = (
        service.matching_owners(wanted, target.strip(), min_rows)
        if wanted and target.strip()
        else None
    )
    return {
        "columns": service.market_columns(),
        "owners": service.owner_count(),
        "matching": matching,
    }
