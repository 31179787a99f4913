"""Attacks on the services' request bodies: size, nesting, parsing before checks (issue 12)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.auth import SignedAuth

MAX_BODY_BYTES = 1024 * 1024  # the default limit (deltaml.services.serve)

CHUNK = 64 * 1024


@pytest.fixture
def aggregator(tmp_path: Path):
    service = AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
            work_dir=tmp_path,
        )
    )
    app = create_app(service)
    yield service, app
    service.close()


def call_asgi(app: Any, path: str, total: int, *, announce: bool) -> tuple[int, int]:
    """POST ``total`` bytes to ``path`` chunk by chunk; (status, bytes the app pulled)."""
    pulled = 0
    status = 0
    headers = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    if announce:
        headers.append((b"content-length", str(total).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= total:
            await asyncio.sleep(3600)
        size = min(CHUNK, total - pulled)
        pulled += size
        return {"type": "http.request", "body": b" " * size, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    async def main() -> None:
        await asyncio.wait_for(app(scope, receive, send), 60)

    asyncio.run(main())
    return status, pulled


def test_an_announced_huge_body_is_refused_before_a_byte_is_read(aggregator) -> None:
    _, app = aggregator
    status, pulled = call_asgi(app, "/owners", 40 * 2**20, announce=True)
    assert status == 413
    assert pulled == 0


def test_a_streamed_body_is_cut_off_at_the_limit(aggregator) -> None:
    _, app = aggregator
    status, pulled = call_asgi(app, "/owners", 40 * 2**20, announce=False)
    assert status == 413
    assert pulled <= MAX_BODY_BYTES + CHUNK


def test_a_signed_body_over_the_default_limit_is_413(aggregator) -> None:
    _, app = aggregator
    body = json.dumps({"name": "x" * (2 * MAX_BODY_BYTES), "datasets": []}).encode()
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/owners",
            content=body,
            headers={"content-type": "application/json"},
            auth=SignedAuth(Account.create()),
        )
    assert response.status_code == 413


def test_a_reply_to_someone_elses_job_is_refused_before_it_is_parsed(aggregator) -> None:
    """4 x 39 MiB replies to a nonexistent job used to be parsed on the event loop first."""
    _, app = aggregator
    body = b"[" + b"1," * (3 * 2**20) + b"1]"  # JSON, not a message: a parser would say 400
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/work/12345", content=body, auth=SignedAuth(Account.create()))
    assert response.status_code == 404, response.text


def test_a_transcript_line_of_100000_brackets_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "evil.jsonl"
    path.write_text("[" * 100_000 + "\n")
    # A child process: the crash this guards against is a segmentation fault. The
    # Ethereum libraries are loaded (they raise the recursion limit), as in the CLI.
    code = (
        "import sys, eth_account, deltaml.ledger\n"
        "from deltaml.errors import DeltaMLValueError\n"
        "from deltaml.evidence.transcript import read_records\n"
        "try:\n"
        f"    read_records({str(path)!r})\n"
        "except DeltaMLValueError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, (done.returncode, done.stderr[-500:])
    assert "line 1 is not JSON" in done.stdout


def test_an_unsigned_body_is_refused_before_it_is_parsed(aggregator) -> None:
    """Unsigned bodies used to reach FastAPI's JSON parser (a 422) before the 401."""
    _, app = aggregator
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/owners", "/requests"):
            response = client.post(
                path, content=b"{not json" * 1000, headers={"content-type": "application/json"}
            )
            assert response.status_code == 401, (path, response.text)
        # Signed, the same body is parsed (and refused as what it is).
        signed = client.post(
            "/owners",
            content=b"{not json",
            headers={"content-type": "application/json"},
            auth=SignedAuth(Account.create()),
        )
        assert signed.status_code == 422


def test_a_node_downloads_no_more_of_a_transcript_than_its_cap(tmp_path: Path) -> None:
    """The buyer and owner nodes download the public transcript the aggregator serves;
    an aggregator answering without end must not fill their memory or disk."""
    import httpx

    from deltaml.services.party import AggregatorClient, AggregatorError

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 65536] * 64))  # 4 MiB, streamed

    client = AggregatorClient("http://127.0.0.1:9", Account.create())
    client.http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(endless))
    dest = tmp_path / "t.jsonl"
    with pytest.raises(AggregatorError, match="larger than 1048576 bytes"):
        client.download("/requests/1/transcript", dest, max_bytes=1024 * 1024)
    assert dest.stat().st_size <= 1024 * 1024
    client.download("/requests/1/transcript", dest, max_bytes=8 * 1024 * 1024)
    assert dest.stat().st_size == 4 * 1024 * 1024
