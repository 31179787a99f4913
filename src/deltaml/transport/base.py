"""The transport interface: the aggregator asks, a party answers.

Only the aggregator initiates exchanges (it is the only party that must be
reachable), so the whole protocol is request/reply from the aggregator's side.
Over HTTP the owners and the buyer fetch their queued requests and post their
replies; in memory the call goes straight to the party's ``handle``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Protocol

from deltaml.errors import PartyTimeout
from deltaml.protocol.messages import Message

__all__ = ["OutOfProcessCpu", "Party", "PartyTimeout", "Transport"]


class Party(Protocol):
    """Anything that answers messages: a data owner or a buyer."""

    party_id: str

    def handle(self, message: Message) -> Message: ...


class OutOfProcessCpu(dict[str, float]):
    """CPU seconds of parties that ran in other processes: unlike a plain mapping from
    :meth:`Transport.cpu_seconds`, none of it is in this process's CPU time."""


class Transport(ABC):
    """Delivers the aggregator's requests and brings back the replies."""

    @abstractmethod
    def request(self, party_id: str, message: Message) -> Message:
        """Send one request and wait for its reply."""

    def request_all(self, requests: Sequence[tuple[str, Message]]) -> list[Message]:
        """Send several requests (to different parties) and return the replies in order.

        Implementations may run them concurrently; the default runs them in turn.
        """
        return [self.request(party_id, message) for party_id, message in requests]

    def cpu_seconds(self) -> Mapping[str, float] | None:
        """CPU seconds each party has spent answering, when the parties run in this
        process (``None``: they run elsewhere, on their own machines)."""
        return None
