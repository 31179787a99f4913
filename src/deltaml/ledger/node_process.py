"""The embedded chain node as a subprocess (``python -m deltaml.ledger.node``),
stopped by its process id."""

from __future__ import annotations

import collections
import queue
import subprocess
import sys
import threading
import time

from deltaml.errors import LedgerError
from deltaml.ledger.node import DEFAULT_HOST, READY_PREFIX

# -------------------------------------------------------------- the process


class EmbeddedNodeProcess:
    """``python -m deltaml.ledger.node`` as a subprocess, stopped by its process
    id (also as a context manager).

    Parameters
    ----------
    host, port:
        Where the node listens; port 0 (the default) lets it pick a free one,
        with no race between choosing and binding.
    ready_timeout_s:
        How long to wait for its ``listening on`` line (it imports web3 and
        builds a genesis block first: a few seconds).

    Attributes
    ----------
    url:
        The node's JSON-RPC URL, for :func:`deltaml.ledger.chain.connect`.
    port:
        Its port.
    process:
        The ``subprocess.Popen``.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        ready_timeout_s: float = 60.0,
        python: str = sys.executable,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        args = [python, "-m", "deltaml.ledger.node", "--host", host, "--port", str(port)]
        if tls_cert and tls_key:
            args += ["--tls-cert", tls_cert, "--tls-key", tls_key]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self._first_line: queue.Queue[str | None] = queue.Queue(maxsize=1)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        # drain both pipes so a chatty node never blocks on a full pipe
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self.url = self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.port = int(self.url.rsplit(":", 1)[1])

    def __enter__(self) -> EmbeddedNodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        first = True
        for line in self.process.stdout:
            if first:
                self._first_line.put(line.strip())
                first = False
        if first:
            self._first_line.put(None)  # exited without a word

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_tail.append(line.rstrip("\n"))

    def _wait_ready(self, timeout_s: float) -> str:
        try:
            line = self._first_line.get(timeout=timeout_s)
        except queue.Empty:
            raise LedgerError(
                "NodeFailed", (), f"embedded chain node not ready after {timeout_s} s"
            ) from None
        if line is None or not line.startswith(READY_PREFIX):
            try:
                code: int | None = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            self._readers[1].join(timeout=2)
            said = "\n".join(self._stderr_tail).strip() or "(nothing on stderr)"
            what = f"exited with {code}" if code is not None else f"printed {line!r}"
            raise LedgerError("NodeFailed", (), f"embedded chain node {what}: {said}")
        return line[len(READY_PREFIX) :]

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def stderr_tail(self) -> list[str]:
        """The last lines the node wrote to stderr (for a failure message)."""
        return list(self._stderr_tail)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to this pid only, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        deadline = time.monotonic() + 2
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
