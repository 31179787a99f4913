"""deploy/chain/chain-node (anvil behind its TLS front) as a process on this machine.

The compose stack's chain without a container: the same script, the same anvil (npm's),
a certificate from deploy/scripts/make-certs.sh. Used by tests/deploy/test_chain_node.py
and tests/attacks/test_deploy_chain_rpc.py (import it after putting this folder on
``sys.path``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from ledger_testkit import find_anvil_or_explain

ROOT = Path(__file__).resolve().parents[2]
CHAIN_NODE = ROOT / "deploy" / "chain" / "chain-node"
MAKE_CERTS = ROOT / "deploy" / "scripts" / "make-certs.sh"


@dataclass
class ChainNode:
    url: str
    port: int
    ca_file: Path
    faucet: LocalAccount
    lines: list[str]
    process: subprocess.Popen[str]

    def rpc(self, method: str, params: list[Any] | None = None, *, batch: bool = False) -> Any:
        """One JSON-RPC call over TLS (the answer as JSON, errors included)."""
        call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        return post(self, [call] if batch else call)


def post(node: ChainNode, body: Any) -> Any:
    import httpx

    context = ssl.create_default_context(cafile=str(node.ca_file))
    response = httpx.post(node.url, json=body, verify=context, timeout=30, trust_env=False)
    return response.json()


def plain_http_answer(port: int) -> bytes:
    """What the port answers to a plain-text HTTP JSON-RPC request (b'' if nothing)."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
    request = (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except OSError:
            pass
    return data


def certificates(folder: Path) -> Path:
    """A CA and a certificate for ``chain`` (and localhost) in ``folder``; the certs folder."""
    if shutil.which("openssl") is None:
        # CI installs it and requires the deploy tests: there a missing openssl fails.
        if os.environ.get("DELTAML_REQUIRE_CONTAINERS") == "1":
            pytest.fail("needs the openssl command (DELTAML_REQUIRE_CONTAINERS=1)")
        pytest.skip("needs the openssl command")
    out = folder / "certs"
    subprocess.run(
        ["sh", str(MAKE_CERTS), str(folder / "ca"), str(out), "chain"],
        check=True,
        capture_output=True,
    )
    return out


@contextmanager
def chain_node(
    folder: Path, state: Path, faucet: LocalAccount | None = None
) -> Iterator[ChainNode]:
    """chain-node on a free port of 127.0.0.1, its state in ``state``; stopped by SIGTERM."""
    binary, reason, required = find_anvil_or_explain()
    if binary is None:
        pytest.fail(reason) if required else pytest.skip(reason)
    certs = folder / "certs" if (folder / "certs" / "ca.crt").exists() else certificates(folder)
    faucet = faucet or Account.create()
    faucet_file = folder / "faucet-address"
    faucet_file.write_text(faucet.address + "\n")
    process = subprocess.Popen(
        [
            sys.executable,
            str(CHAIN_NODE),
            "--listen=127.0.0.1:0",
            f"--tls-cert={certs / 'chain' / 'cert.pem'}",
            f"--tls-key={certs / 'chain' / 'key.pem'}",
            f"--state={state}",
            f"--anvil={binary}",
            f"--faucet-file={faucet_file}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: kill_hard() takes anvil with it
    )
    lines: list[str] = []
    ready: queue.Queue[int | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            found = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
            if found:
                ready.put(int(found.group(1)))
        ready.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            port = ready.get(timeout=60)
        except queue.Empty:
            port = None
        assert port is not None, "chain-node did not start:\n" + "\n".join(lines)
        yield ChainNode(f"https://localhost:{port}", port, certs / "ca.crt", faucet, lines, process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM (as ``podman stop`` sends), then the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return int(process.returncode)


def kill_hard(process: subprocess.Popen[str]) -> None:
    """SIGKILL to chain-node and anvil (its process group), as a container's death is."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def send(node: ChainNode, tx: dict[str, Any]) -> dict[str, Any]:
    """Sign ``tx`` with the faucet's key, send it raw, return its receipt."""
    import time

    nonce = int(node.rpc("eth_getTransactionCount", [node.faucet.address, "pending"])["result"], 16)
    gas_price = int(node.rpc("eth_gasPrice")["result"], 16)
    full = {"nonce": nonce, "gasPrice": 2 * gas_price, "chainId": 31337, **tx}
    raw = node.faucet.sign_transaction(full).raw_transaction
    tx_hash = node.rpc("eth_sendRawTransaction", ["0x" + raw.hex()])["result"]
    for _ in range(100):
        receipt = node.rpc("eth_getTransactionReceipt", [tx_hash])["result"]
        if receipt:
            return dict(receipt)
        time.sleep(0.1)
    raise AssertionError(f"no receipt for {tx_hash}: {json.dumps(node.lines)}")
