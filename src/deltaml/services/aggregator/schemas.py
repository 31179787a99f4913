"""What the aggregator's API takes and answers: typed, bounded pydantic models.

Request bodies are checked before any service code reads them (ranges from the
protocol's one request spec, :mod:`deltaml.protocol.spec`); response models give
the OpenAPI schema its shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from deltaml.protocol.spec import (
    MAX_BIGINT,
    MAX_NAME,
    REQUIREMENT_FIELDS,
    SpecError,
    check_requirements,
    check_training_spec,
)
from deltaml.protocol.status import OfferStatus, SeatRole, Status

#: Bounds of what the database and the contract hold: ids are 32-bit in PostgreSQL's
#: ``integer`` columns; counts, rows and seeds 63-bit (``bigint``); the contract keeps
#: the deposit in 128 bits and rounds in 32.
MAX_DB_ID = 2**31 - 1
MAX_WEI = 2**256 - 1

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
#: A non-negative id as the database holds it (path parameters).
DbId = Annotated[int, PathParam(ge=0, le=MAX_DB_ID)]


# -- request bodies ---------------------------------------------------------------------
class ColumnProfile(BaseModel):
    """One column of a dataset profile: its name and type, never its values."""

    model_config = ConfigDict(extra="ignore")

    name: StrictStr = Field(min_length=1, max_length=MAX_NAME)
    role: StrictStr = Field(default="", max_length=20)
    type: StrictStr = Field(default="", max_length=20)
    nulls: StrictInt = Field(default=0, ge=0, le=MAX_BIGINT)


class DatasetProfile(BaseModel):
    name: Name
    rows: StrictInt = Field(ge=0, le=MAX_BIGINT)
    target: str = Field(default="", max_length=MAX_NAME)
    task: str = Field(default="", max_length=40)
    columns: list[ColumnProfile] = Field(max_length=10_000)


class OwnerRegistration(BaseModel):
    name: Name
    datasets: list[DatasetProfile] = Field(max_length=100)
    min_reward_wei: StrictInt = Field(default=0, ge=0, le=MAX_WEI)


def _check_requirements(value: Any) -> Any:
    """The ranges of :func:`deltaml.protocol.spec.check_requirements` (a 422 naming the field)."""
    if isinstance(value, dict):
        try:
            check_requirements({k: v for k, v in value.items() if k in REQUIREMENT_FIELDS})
        except SpecError as exc:
            raise ValueError(f"requirements.{exc.field}: {exc}") from None
    return value


class Requirements(BaseModel):
    """What an owner's dataset must have; ranges checked by the protocol's request spec."""

    model_config = ConfigDict(strict=True)

    features: list[str]
    target: str
    min_rows: int = 1
    #: Training starts when this many owners have accepted.
    owners: int
    #: A logistic request's (negative, positive) labels; every owner codes its target so.
    classes: list[str] | None = None
    #: Features that may have empty cells, and categorical features' levels (the protocol
    #: trains on their encoding, :func:`deltaml.protocol.spec.encoded_features`).
    missing: list[str] | None = None
    categorical: dict[str, list[str]] | None = None
    #: False: empty numeric cells are filled with federated column means, no indicator
    #: columns (absent otherwise, so older requests hash as before).
    missing_indicator: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def check_ranges(cls, value: Any) -> Any:
        return _check_requirements(value)


def check_spec(value: Any) -> dict[str, Any]:
    """``value`` unchanged (the buyer's hash covers it as sent) if its fields are those
    of a ``TrainingSpec`` within the protocol's ranges
    (:func:`deltaml.protocol.spec.check_training_spec`).

    Raises ``ValueError`` naming the first field out of range (FastAPI: a 422).
    """
    try:
        check_training_spec(value)
    except SpecError as exc:
        raise ValueError(f"spec.{exc.field}: {exc}") from None
    return value


class NewRequest(BaseModel):
    chain_request_id: StrictInt = Field(ge=0, le=MAX_BIGINT)
    spec: Annotated[dict[str, Any], AfterValidator(check_spec)]
    requirements: Requirements
    public_key: dict[str, Annotated[str, Field(max_length=4096)]] = Field(max_length=8)
    initial_model: dict[str, Any]


class Decision(BaseModel):
    dataset: str = ""


class FailureReport(BaseModel):
    error: str = Field(max_length=2000)


# -- responses --------------------------------------------------------------------------
class Health(BaseModel):
    ok: bool
    #: Registered owners.
    owners: int


class Info(BaseModel):
    """Who the aggregator is and where its contract is (``None`` without a chain)."""

    address: str
    chain_url: str
    contract: str | None


class Registered(BaseModel):
    address: str
    datasets: int


class RequestCreated(BaseModel):
    id: int
    status: Status


class Decided(BaseModel):
    request_id: int
    status: OfferStatus


class Cancelled(BaseModel):
    request_id: int
    status: Status


#: A seat's role; empty until the request starts (or for an owner not seated).
Seat = SeatRole | Literal[""]


class MetricPoint(BaseModel):
    """A published validation MSE."""

    round: int
    mse: float


class OfferSummary(BaseModel):
    owner: str
    status: OfferStatus
    role: Seat = ""


class RequestView(BaseModel):
    """What anyone may see of a request: public parameters, statuses, published numbers."""

    id: int
    status: Status
    #: Why it failed (empty unless it did).
    error: str = ""
    buyer: str
    aggregator: str
    chain_request_id: int
    spec: dict[str, Any]
    requirements: dict[str, Any]
    deposit_wei: str
    #: Who resolves a dispute (empty without a chain).
    arbiter: str
    rounds_done: int
    #: The validation MSE of the initial model (round 0), once measured.
    initial_metric: float | None = None
    metrics: list[MetricPoint]
    offers: list[OfferSummary]
    #: Once finished: seats, metrics, contributions, payouts, the transcript's head.
    result: dict[str, Any] | None = None
    created_at: float
    updated_at: float


class Offer(BaseModel):
    """A request as one owner sees it, with what it needs to decide and to join on chain."""

    request_id: int
    status: OfferStatus
    #: The owner's dataset that matches (empty if none does).
    dataset: str = ""
    role: Seat = ""
    spec: dict[str, Any]
    requirements: dict[str, Any]
    deposit_wei: str
    #: The request's own status: an offer left INITIATED after the request started is
    #: one whose owner was not selected.
    request_status: Status
    #: The buyer's key (crypto.paillier.key_fingerprint); the chain's keyHash wins.
    key_fingerprint: str
    chain_request_id: int
    public_key: dict[str, Any]
    arbiter: str
    #: What the trainers' share is worth per owner if every trainer earns alike.
    offered_reward_wei: str


class Timeline(BaseModel):
    """A request's events in order (``{"at", "kind", ...}``) and the offered owners' names."""

    events: list[dict[str, Any]]
    names: dict[str, str | None]


class Market(BaseModel):
    """Registered column names, owners, and how many could serve the request asked about."""

    columns: list[str]
    owners: int
    matching: int | None = None


class ReplyAccepted(BaseModel):
    job: int
    accepted: bool
