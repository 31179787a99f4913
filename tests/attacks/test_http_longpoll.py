"""45 long-polls from one key must not starve the aggregator's other routes (issue 12)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn
from eth_account import Account

from deltaml.services.aggregator import AggregatorConfig, AggregatorService, create_app
from deltaml.services.auth import SignedAuth
from deltaml.services.serve import bind

POLLS = 45
WAIT = 10


def test_45_long_polls_from_one_key_leave_health_answering(tmp_path: Path) -> None:
    service = AggregatorService(
        AggregatorConfig(
            account=Account.create(),
            database_url=f"sqlite:///{tmp_path / 'a.sqlite'}",
            work_dir=tmp_path,
        )
    )
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    attacker = Account.create()
    finished: list[tuple[float, int]] = []  # (when, status) of each long-poll
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=POLLS + 5)

    def poll(client: httpx.Client) -> None:
        try:
            status = client.get("/work", params={"wait": WAIT}).status_code
        except httpx.HTTPError:
            status = -1
        with lock:
            finished.append((time.monotonic(), status))

    try:
        with (
            httpx.Client(
                base_url=url, auth=SignedAuth(attacker), timeout=120, limits=limits
            ) as client,
            ThreadPoolExecutor(POLLS) as pool,
        ):
            while not server.started:
                time.sleep(0.05)
            futures = [pool.submit(poll, client) for _ in range(POLLS)]
            time.sleep(1.0)  # let the polls reach the server (setup, not a threshold)
            health = httpx.get(url + "/health", timeout=120)
            answered_at = time.monotonic()
            assert health.status_code == 200 and health.json()["ok"] is True
            info = httpx.get(url + "/info", timeout=120)
            assert info.status_code == 200
            for f in futures:
                f.result()
        waited = [when for when, status in finished if status == 204]
        refused = [status for _, status in finished if status == 429]
        # /health answered while every long-poll that was let in still waited ...
        assert waited and all(when > answered_at for when in waited)
        # ... and one key cannot hold more than its share of long-polls.
        assert len(refused) >= POLLS - service.queue.max_polls_per_party
    finally:
        server.should_exit = True
        thread.join(30)
        service.close()
