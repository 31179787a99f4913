"""The aggregator service: the one public endpoint of a marketplace (FastAPI).

It keeps the registry of data owners and their dataset profiles, takes the
buyers' requests (checking the escrow on the contract), offers each request to
the owners whose data matches, and once enough have accepted, runs the training:
the protocol of :class:`deltaml.roles.Aggregator`, its messages queued for the
parties to fetch (:mod:`deltaml.services.queue`), every completed round
checkpointed so that a restart goes on from there. It posts the metrics and the
result on the contract; the buyer approves and every payee withdraws by itself.

Every call but the public status pages is signed by its sender's Ethereum key
(:mod:`deltaml.services.auth`); the signer's address is who it is.

The package, bottom up:

- :mod:`.core` — the database, queue and chain handles, statuses, the timeline;
- :mod:`.schemas` — the API's typed request bodies and responses;
- :mod:`.registry` — owners, offers, requests and the owners' decisions;
- :mod:`.views` — read-only views (the API, the status pages);
- :mod:`.deadline`, :mod:`.runner` — the training of each request on its thread;
- :mod:`.watcher` — deadlines, settlements, fees and model deliveries, by the clock;
- :mod:`.service` — :class:`AggregatorService`, the parts put together;
- :mod:`.routes` — one ``APIRouter`` per resource, and :func:`create_app`.

Services raise the errors of :mod:`deltaml.errors`; :mod:`deltaml.services.http_errors`
maps them to status codes in one place.
"""

from deltaml.protocol.rules import request_hash
from deltaml.protocol.status import OfferStatus
from deltaml.services.aggregator.core import AggregatorConfig, ServiceCore
from deltaml.services.aggregator.deadline import DeadlineStop
from deltaml.services.aggregator.registry import matching_dataset
from deltaml.services.aggregator.routes import (
    LONG_POLL_MAX_SECONDS,
    MAX_REQUEST_BYTES,
    create_app,
)
from deltaml.services.aggregator.runner import HoldFinalModel
from deltaml.services.aggregator.schemas import (
    MAX_DB_ID,
    MAX_WEI,
    ColumnProfile,
    DatasetProfile,
    Decision,
    FailureReport,
    NewRequest,
    OwnerRegistration,
    Requirements,
    check_spec,
)
from deltaml.services.aggregator.service import AggregatorService
from deltaml.services.aggregator.watcher import SETTLE_GAS

#: Statuses of a request as each data owner sees it (DESIGN.md, lifecycle).
OFFER_STATUSES = tuple(OfferStatus)

__all__ = [
    "LONG_POLL_MAX_SECONDS",
    "MAX_DB_ID",
    "MAX_REQUEST_BYTES",
    "MAX_WEI",
    "OFFER_STATUSES",
    "SETTLE_GAS",
    "AggregatorConfig",
    "AggregatorService",
    "ColumnProfile",
    "DatasetProfile",
    "DeadlineStop",
    "Decision",
    "FailureReport",
    "HoldFinalModel",
    "NewRequest",
    "OwnerRegistration",
    "Requirements",
    "ServiceCore",
    "check_spec",
    "create_app",
    "matching_dataset",
    "request_hash",
]
