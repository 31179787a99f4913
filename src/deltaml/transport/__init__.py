"""How roles reach each other: one interface, an in-memory and (later) an HTTP implementation."""

from deltaml.transport.base import Party, PartyTimeout, Transport
from deltaml.transport.in_memory import InMemoryTransport, RecordingTransport

__all__ = ["InMemoryTransport", "Party", "PartyTimeout", "RecordingTransport", "Transport"]
