"""In-process transports: direct calls, and a recorder for the privacy tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from deltaml.errors import ProtocolError
from deltaml.protocol.messages import Message
from deltaml.transport.base import Party, Transport


class InMemoryTransport(Transport):
    """Delivers each request by calling the party's ``handle`` in this process."""

    def __init__(self, parties: list[Party] | None = None) -> None:
        self._parties: dict[str, Party] = {}
        for party in parties or []:
            self.add(party)

    def add(self, party: Party) -> None:
        if party.party_id in self._parties:
            raise ProtocolError(f"party {party.party_id!r} is already connected")
        self._parties[party.party_id] = party

    def request(self, party_id: str, message: Message) -> Message:
        try:
            party = self._parties[party_id]
        except KeyError:
            raise ProtocolError(f"no party {party_id!r} is connected") from None
        return party.handle(message)


@dataclass
class Delivery:
    """One message as its recipient received it."""

    recipient: str
    sender: str
    message: Message


@dataclass
class RecordingTransport(Transport):
    """Wraps a transport and records every message each party receives.

    Requests are received by the addressed party; replies by the aggregator.
    """

    inner: Transport
    aggregator_id: str = "aggregator"
    deliveries: list[Delivery] = field(default_factory=list)

    def request(self, party_id: str, message: Message) -> Message:
        self.deliveries.append(Delivery(party_id, self.aggregator_id, message))
        reply = self.inner.request(party_id, message)
        self.deliveries.append(Delivery(self.aggregator_id, party_id, reply))
        return reply

    def received_by(self, party_id: str) -> list[Message]:
        return [d.message for d in self.deliveries if d.recipient == party_id]
