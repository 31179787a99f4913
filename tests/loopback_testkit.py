"""In-process parties behind the real aggregator API on 127.0.0.1, for tests and benchmarks.

:class:`LoopbackHttpTransport` takes the parties of an
:class:`~deltaml.transport.InMemoryTransport` and puts real HTTP between them and
the aggregator: an :class:`~deltaml.services.aggregator.AggregatorService`
served by uvicorn on a free local port, each party long-polling it with its own
signed client (:class:`~deltaml.services.party.WorkLoop`). Every message crosses
the wire format and the signature checks exactly as between separate machines;
only the processes are shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from eth_account import Account

from deltaml.errors import DeltaMLValueError
from deltaml.protocol.messages import Message
from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.party import AggregatorClient, WorkLoop
from deltaml.services.queue import QueueTransport
from deltaml.services.serve import bind
from deltaml.transport.base import Transport
from deltaml.transport.in_memory import InMemoryTransport


def _answer(party: Any) -> Callable[[int, Message], Message]:
    return lambda _rid, msg: party.handle(msg)


class LoopbackHttpTransport(Transport):
    """The aggregator's requests go to the parties of ``inner`` over real local HTTP."""

    def __init__(self, inner: InMemoryTransport, work_dir: Path, timeout: float = 120.0) -> None:
        self._parties = inner._parties
        self.service = AggregatorService(
            AggregatorConfig(
                account=Account.create(),
                database_url=f"sqlite:///{work_dir / 'aggregator.sqlite'}",
                work_dir=work_dir,
            )
        )
        sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(self.service), log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise DeltaMLValueError("the loopback aggregator did not start")
            time.sleep(0.02)
        self.addresses: dict[str, str] = {}
        self.loops: list[WorkLoop] = []
        for pid, party in self._parties.items():
            account: Any = party.account  # type: ignore[attr-defined]
            self.addresses[pid] = str(account.address)
            loop = WorkLoop(AggregatorClient(self.url, account), _answer(party), poll_seconds=5.0)
            loop.start()
            self.loops.append(loop)
        self._queue = QueueTransport(self.service.queue, request_id=1, timeout=timeout)

    def request(self, party_id: str, message: Message) -> Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, Message]]) -> list[Message]:
        return self._queue.request_all([(self.addresses[pid], msg) for pid, msg in requests])

    def close(self) -> None:
        for loop in self.loops:
            loop.stop()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.service.close()
