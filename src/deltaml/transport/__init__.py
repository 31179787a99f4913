"""How roles reach each other: one interface, an in-memory and (later) an HTTP implementation."""

from deltaml.transport.base import OutOfProcessCpu, Party, PartyTimeout, Transport
from deltaml.transport.in_memory import InMemoryTransport, RecordingTransport

__all__ = [
    "InMemoryTransport",
    "OutOfProcessCpu",
    "Party",
    "PartyTimeout",
    "RecordingTransport",
    "Transport",
]
