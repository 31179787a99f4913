"""The services' limits: body sizes per route, 422s that never echo, loopback, poll caps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from deltaml.services.http_errors import http_status
from deltaml.services.queue import JobError, WorkQueue
from deltaml.services.serve import MAX_BODY_BYTES, guard_bodies, is_loopback
from deltaml.services.store import Store


class Body(BaseModel):
    value: int


def app_with_limits() -> FastAPI:
    app = FastAPI()
    guard_bodies(app, [("POST", r"/big/[0-9]+", 4 * MAX_BODY_BYTES)])

    @app.post("/small")
    async def small(request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    @app.post("/big/{n}")
    async def big(n: int, request: Request) -> dict[str, int]:
        return {"n": len(await request.body())}

    @app.post("/typed")
    def typed(body: Body) -> dict[str, int]:
        return {"value": body.value}

    return app


def test_each_route_has_its_limit_and_the_body_reaches_the_handler_whole() -> None:
    client = TestClient(app_with_limits())
    two_mib = b"x" * (2 * MAX_BODY_BYTES)
    assert client.post("/small", content=b"x" * MAX_BODY_BYTES).json() == {"n": MAX_BODY_BYTES}
    refused = client.post("/small", content=two_mib)
    assert refused.status_code == 413 and "at most" in refused.json()["detail"]
    assert client.post("/big/1", content=two_mib).json() == {"n": len(two_mib)}
    assert client.post("/big/x", content=two_mib).status_code == 413  # the pattern is exact
    assert client.post("/big/1", content=b"x" * (5 * MAX_BODY_BYTES)).status_code == 413


def test_a_validation_error_names_the_field_and_never_echoes_the_input() -> None:
    client = TestClient(app_with_limits())
    secret = "s3cret-" * 1000
    response = client.post(
        "/typed",
        content=b'{"value": Infinity, "x": 1}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "value"]
    echoed = client.post("/typed", json={"value": secret})
    assert echoed.status_code == 422 and secret[:20] not in echoed.text


def test_a_malformed_content_length_is_a_400() -> None:
    client = TestClient(app_with_limits())
    response = client.post("/small", content=b"{}", headers={"content-length": "abc"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.2", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_long_polls_are_capped_per_address_and_in_all(tmp_path: Path) -> None:
    queue = WorkQueue(
        Store(f"sqlite:///{tmp_path / 'q.sqlite'}"), max_polls_per_party=2, max_polls=3
    )

    async def scenario() -> list[int]:
        polls = [asyncio.create_task(queue.take_async("0xa", 0.5)) for _ in range(2)]
        polls.append(asyncio.create_task(queue.take_async("0xb", 0.5)))
        await asyncio.sleep(0.1)
        refused = []
        for party in ("0xa", "0xc"):  # 0xa: its own cap; 0xc: the total
            try:
                await queue.take_async(party, 0.5)
            except JobError as exc:
                refused.append(http_status(exc))
        assert await asyncio.gather(*polls) == [None, None, None]
        # Once they are answered, the places are free again.
        assert await queue.take_async("0xa", 0) is None
        return refused

    assert asyncio.run(scenario()) == [429, 429]
    queue.store.close()
