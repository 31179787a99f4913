"""A local anvil node (Foundry's dev chain, from the npm package ``@foundry-rs/anvil``).

Started directly — not through ``npx``, which does not pass signals on — on a free
port of 127.0.0.1, and stopped by its process id.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from deltaml import settings
from deltaml.errors import LedgerError

_NPM_BIN = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
_SOURCE_ROOT = Path(__file__).resolve().parents[3]  # the checkout, for an editable install


def anvil_binary(environ: Mapping[str, str] | None = None) -> Path | None:
    """The anvil binary: ``$DELTAML_ANVIL_BIN``, else npm's in this directory or the
    checkout, else one on ``PATH``; ``None`` when there is none."""
    configured = settings.anvil_bin(environ)
    candidates = [configured] if configured else [Path.cwd() / _NPM_BIN, _SOURCE_ROOT / _NPM_BIN]
    on_path = shutil.which("anvil")
    if on_path and not configured:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AnvilProcess:
    """An anvil node on 127.0.0.1, stopped by its process id (also as a context manager)."""

    def __init__(
        self,
        binary: Path,
        *,
        port: int | None = None,
        state_file: Path | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [str(binary), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--accounts", "3", "--balance", "1000000", "--silent"]
        if state_file is not None:
            args += ["--state", str(state_file)]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> AnvilProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, timeout_s: float) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise LedgerError(
                    "AnvilFailed", (), f"anvil exited with {self.process.returncode}: {err.strip()}"
                )
            request = urllib.request.Request(
                self.url, data=body.encode(), headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=1) as response:
                    if json.load(response).get("result"):
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise LedgerError("AnvilFailed", (), f"anvil not ready on {self.url} after {timeout_s} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM to this pid only
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr:
            self.process.stderr.close()
