"""In-process transports: direct calls, and a recorder for the privacy tests."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deltaml.errors import ProtocolError
from deltaml.protocol.messages import Message
from deltaml.transport.base import Party, Transport


class InMemoryTransport(Transport):
    """Delivers each request by calling the party's ``handle`` in this process, in
    turn, and counts each party's CPU time answering (:meth:`cpu_seconds`).

    (Answering the owners on two threads was measured and dropped: the owners' work
    is mostly Python-level multi-exponentiation that holds the GIL — 30 owners,
    1,024-bit keys, two runs each: 7.9/9.0 s on one thread, 8.9/8.5 s on two;
    :class:`~deltaml.transport.processes.ProcessTransport` uses processes instead.)
    """

    def __init__(self, parties: list[Party] | None = None) -> None:
        self._parties: dict[str, Party] = {}
        self._cpu: dict[str, float] = {}
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
        c0 = time.thread_time()
        try:
            return party.handle(message)
        finally:
            self._cpu[party_id] = self._cpu.get(party_id, 0.0) + time.thread_time() - c0

    def cpu_seconds(self) -> Mapping[str, float]:
        return dict(self._cpu)


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

    def request_all(self, requests: Sequence[tuple[str, Message]]) -> list[Message]:
        """The inner transport's ``request_all`` (concurrent if it is), recorded in the
        order one ``request`` after the other would have recorded it."""
        try:
            replies = self.inner.request_all(requests)
        except BaseException:
            self.deliveries.extend(Delivery(p, self.aggregator_id, msg) for p, msg in requests)
            raise
        for (party_id, message), reply in zip(requests, replies, strict=True):
            self.deliveries.append(Delivery(party_id, self.aggregator_id, message))
            self.deliveries.append(Delivery(self.aggregator_id, party_id, reply))
        return replies

    def cpu_seconds(self) -> Mapping[str, float] | None:
        return self.inner.cpu_seconds()

    def received_by(self, party_id: str) -> list[Message]:
        return [d.message for d in self.deliveries if d.recipient == party_id]
