"""Statuses of a request and an offer, and the roles of a seat, as str-valued enums.

They compare equal to (and serialize as) the same strings the API and the node
databases have always used: ``Status.OPEN == "OPEN"``, ``json.dumps(SeatRole.TRAINER)``
is ``'"trainer"'``. (The contract's own numbering is :class:`deltaml.ledger.base.RequestStatus`.)
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A request's status at the aggregator (its lifecycle)."""

    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class OfferStatus(StrEnum):
    """A request as one data owner sees it (its offer)."""

    WAITING = "WAITING"
    READY = "READY"
    INITIATED = "INITIATED"
    IN_PROGRESS = "IN_PROGRESS"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    DECLINED = "DECLINED"


class SeatRole(StrEnum):
    """What a seated owner does in a request."""

    TRAINER = "trainer"
    VALIDATOR = "validator"
