"""Load and attack benchmark of the aggregator (issue 12), on 127.0.0.1 only.

Starts a whole marketplace as processes (the embedded chain, an aggregator, a buyer
and ``--owners`` owner nodes on the diabetes data), then, at the same time:

- ``--pollers`` owner clients (each its own key) long-polling ``GET /work``;
- the buyer creating ``--requests`` training requests at once, trained concurrently
  and settled on the chain;
- the 400 MB body attack (an unauthenticated POST announcing 400 MB, and one
  streaming without a length), repeated;
- the 45-long-poll attack (45 polls from one key, re-sent as soon as answered);
- ``GET /health`` every 100 ms.

It prints the ``/health`` latency (median, p99), the aggregator's peak resident
memory (``VmHWM``) and whether every request finished and settled. Bounded in
count and time (``--timeout``); every process it starts is stopped at the end.

    python bench/load.py                          # 200 pollers, 10 requests
    python bench/load.py --requests 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_average, machine_facts, machine_line
from deltaml.ledger import connect, fund_from_dev_account
from deltaml.ledger.accounts import generate_account, save_keystore
from deltaml.ledger.node_process import EmbeddedNodeProcess
from deltaml.marketplace import DEMO_FUNDING_WEI
from deltaml.services.auth import SignedAuth
from deltaml.services.demo import DemoConfig, write_shares
from deltaml.services.serve import PASSWORD_ENV, ServiceProcess

HOST = "127.0.0.1"
TARGETS = {"health_p99_ms": 200.0, "peak_rss_mb": 500.0}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sample_health(url: str, stop: Any, out: Any) -> None:
    """``GET /health`` every 100 ms until ``stop``; latencies (ms, None: failed) to ``out``.

    A process of its own, so that the load generators in this one (signing, the
    event loop of 245 polls) do not delay the measurement.
    """
    samples: list[float | None] = []
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                ok = client.get("/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            samples.append((time.perf_counter() - t0) * 1000 if ok else None)
            stop.wait(0.1)
    out.put(samples)


class Load:
    def __init__(self, url: str, stop: threading.Event) -> None:
        self.url = url
        self.stop = stop
        self.poll_counts = {"204": 0, "429": 0, "other": 0, "errors": 0}
        self.attack = {"polls_answered": 0, "polls_refused": 0, "big_refused": 0, "big_other": 0}
        self.big_bytes_sent: list[int] = []

    # -- long-polling owners and the one-key attacker -----------------------------------
    async def poller(self, client: httpx.AsyncClient, account: Any, counts: dict[str, int]) -> None:
        auth = SignedAuth(account)
        while not self.stop.is_set():
            try:
                r = await client.get("/work", params={"wait": 20}, auth=auth)
                key = str(r.status_code) if str(r.status_code) in counts else "other"
                counts[key] += 1
                if r.status_code != 204:
                    await asyncio.sleep(1.0)  # a refused client backs off
            except httpx.HTTPError:
                counts["errors"] += 1
                await asyncio.sleep(1.0)

    async def attacker_poll(self, client: httpx.AsyncClient, account: Any) -> None:
        auth = SignedAuth(account)
        while not self.stop.is_set():
            try:
                r = await client.get("/work", params={"wait": 30}, auth=auth)
                if r.status_code == 429:
                    self.attack["polls_refused"] += 1
                    await asyncio.sleep(0.05)  # re-sent at once (a little pause: our CPU)
                else:
                    self.attack["polls_answered"] += 1
            except httpx.HTTPError:
                await asyncio.sleep(0.05)

    async def polls(self, pollers: int, attack_polls: int) -> None:
        limits = httpx.Limits(max_connections=pollers + attack_polls + 10)
        async with httpx.AsyncClient(
            base_url=self.url, timeout=60, limits=limits, trust_env=False
        ) as client:
            tasks = [
                asyncio.create_task(self.poller(client, Account.create(), self.poll_counts))
                for _ in range(pollers)
            ]
            attacker = Account.create()
            tasks += [
                asyncio.create_task(self.attacker_poll(client, attacker))
                for _ in range(attack_polls)
            ]
            while not self.stop.is_set():
                await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the 400 MB body ---------------------------------------------------------------
    def big_body(self, announce: bool, size: int = 400 * 2**20) -> None:
        """POST ``size`` bytes (announced, or chunked) until the server answers or closes."""
        port = int(self.url.rsplit(":", 1)[1])
        sent = 0
        with socket.create_connection((HOST, port), timeout=30) as sock:
            head = f"POST /owners HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            head += "Content-Type: application/json\r\n"
            head += f"Content-Length: {size}\r\n" if announce else "Transfer-Encoding: chunked\r\n"
            sock.sendall((head + "\r\n").encode())
            chunk = b" " * 2**20
            reply = b""
            try:
                while sent < size and not self.stop.is_set():
                    sock.setblocking(False)
                    try:
                        reply = sock.recv(4096)
                    except BlockingIOError:
                        reply = b""
                    sock.setblocking(True)
                    if reply:
                        break
                    data = chunk if announce else b"100000\r\n" + chunk + b"\r\n"
                    sock.sendall(data)
                    sent += len(chunk)
                if not reply:
                    reply = sock.recv(4096)
            except OSError:
                pass
        self.big_bytes_sent.append(sent)
        # Refused: a 413, or the connection closed on us well before the 400 MB.
        if b" 413 " in reply[:20] or (not reply and sent < size):
            self.attack["big_refused"] += 1
        else:
            self.attack["big_other"] += 1

    def big_bodies(self) -> None:
        while not self.stop.is_set():
            for announce in (True, False):
                self.big_body(announce)
            self.stop.wait(5.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="deltaml-load-"))
    password = secrets.token_hex(16)
    env = {PASSWORD_ENV: password}
    processes: list[ServiceProcess] = []
    chain_node = EmbeddedNodeProcess()
    stop = threading.Event()
    try:
        names = ["aggregator", "buyer", *(f"owner-{i + 1}" for i in range(args.owners))]
        accounts = {n: generate_account() for n in names}
        for name, account in accounts.items():
            save_keystore(account, work / name / "account.json", password, iterations=2**14)
        chain = connect(chain_node.url)
        fund_from_dev_account(
            chain, [str(a.address) for a in accounts.values()], DEMO_FUNDING_WEI, demo=True
        )
        paths, shares, _ = write_shares(DemoConfig(work_dir=work, owners=args.owners))

        def start(name: str, argv: list[str], wait: bool = True) -> ServiceProcess:
            proc = ServiceProcess(
                name,
                [*argv, "--host", HOST, "--port", "0", "--dir", str(work / name), "--demo-keys"],
                env=env,
                log_path=work / name / "service.log",
                wait=wait,
            )
            processes.append(proc)
            return proc

        aggregator = start("aggregator", ["aggregator", "serve", "--chain-url", chain_node.url])
        buyer = start(
            "buyer",
            ["buyer", "serve", "--aggregator", aggregator.url, "--allow-test-keys"],
            wait=False,
        )
        owners = [
            start(
                f"owner-{i + 1}",
                ["owner", "serve", "--data", str(p), "--aggregator", aggregator.url],
                wait=False,
            )
            for i, p in enumerate(paths)
        ]
        for proc in [buyer, *owners]:
            proc.wait_ready()
        agg = httpx.Client(base_url=aggregator.url, timeout=60, trust_env=False)
        deadline = time.monotonic() + 120
        while agg.get("/health").json()["owners"] < args.owners:
            if time.monotonic() > deadline:
                raise SystemExit("the owners did not register")
            time.sleep(0.2)
        token = (work / "buyer" / "api-token").read_text().strip()
        buyer_api = httpx.Client(
            base_url=buyer.url,
            timeout=600,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )

        load = Load(aggregator.url, stop)
        spawn = multiprocessing.get_context("spawn")
        sampler_stop, samples_out = spawn.Event(), spawn.Queue()
        sampler = spawn.Process(
            target=sample_health, args=(aggregator.url, sampler_stop, samples_out), daemon=True
        )
        sampler.start()
        threads = [
            threading.Thread(
                target=lambda: asyncio.run(load.polls(args.pollers, args.attack_polls)),
                daemon=True,
            ),
            threading.Thread(target=load.big_bodies, daemon=True),
        ]
        for t in threads:
            t.start()
        time.sleep(3.0)  # the pollers and the attacks are on before the requests come

        spec = {
            "model": "linear",
            "features": list(shares[0].feature_names),
            "target": shares[0].target_name,
            "owners": args.owners,
            "rounds": args.rounds,
            "eval_every": args.rounds,
            "key_bits": args.key_bits,
        }
        t0 = time.perf_counter()

        def create(_i: int) -> int:
            created = buyer_api.post("/requests", json=spec)
            created.raise_for_status()
            return int(created.json()["id"])

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.requests) as pool:
            ids = list(pool.map(create, range(args.requests)))
        deadline = time.monotonic() + args.timeout
        statuses: dict[int, str] = {}
        settled: dict[int, bool] = {}
        while time.monotonic() < deadline:
            mine = {int(r["id"]): r for r in buyer_api.get("/status").json()["requests"]}
            statuses = {i: mine[i]["status"] for i in ids}
            settled = {i: mine[i].get("settlement") is not None for i in ids}
            over = all(s in ("FINISHED", "FAILED", "CANCELLED") for s in statuses.values())
            if over and all(settled[i] for i, s in statuses.items() if s == "FINISHED"):
                break
            time.sleep(1.0)
        seconds = time.perf_counter() - t0
        stop.set()
        sampler_stop.set()
        samples = samples_out.get(timeout=60)
        sampler.join(30)
        for t in threads:
            t.join(60)
        health = [ms for ms in samples if ms is not None]
        return {
            "pollers": args.pollers,
            "requests": args.requests,
            "owners": args.owners,
            "rounds": args.rounds,
            "key_bits": args.key_bits,
            "seconds": round(seconds, 1),
            "statuses": {str(k): v for k, v in statuses.items()},
            "all_finished": all(s == "FINISHED" for s in statuses.values()),
            "all_settled": bool(settled) and all(settled.values()),
            "health_samples": len(health),
            "health_errors": sum(ms is None for ms in samples),
            "health_median_ms": round(statistics.median(health), 1) if health else None,
            "health_p99_ms": round(percentile(health, 0.99), 1) if health else None,
            "health_max_ms": round(max(health), 1) if health else None,
            "aggregator_peak_rss_mb": round(peak_rss_mb(aggregator.pid), 1),
            "polls": load.poll_counts,
            "attack": load.attack,
            "load_average_1_5_15": load_average(),
            "big_body_max_bytes_sent_mb": round(max(load.big_bytes_sent, default=0) / 2**20, 1),
        }
    finally:
        stop.set()
        for proc in processes:
            proc.terminate()
        for proc in reversed(processes):
            proc.stop()
        chain_node.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pollers", type=int, default=200, help="long-polling owner clients (200)")
    p.add_argument("--requests", type=int, default=10, help="requests trained at once (10)")
    p.add_argument("--owners", type=int, default=3, help="owner nodes doing the work (3)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per request (2)")
    p.add_argument("--key-bits", type=int, default=1024, help="Paillier key size (1024)")
    p.add_argument("--attack-polls", type=int, default=45, help="long-polls from one key (45)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before giving up (900)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not 0 < args.pollers <= 1000 or not 0 < args.requests <= 50:
        raise SystemExit("--pollers at most 1000, --requests at most 50")
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(machine_line(machine_facts()))
        for key, value in result.items():
            print(f"{key}: {value}")
        print(
            f"targets: /health p99 <= {TARGETS['health_p99_ms']:g} ms, "
            f"peak RSS <= {TARGETS['peak_rss_mb']:g} MB, every request finished"
        )
    ok = (
        result["all_finished"]
        and result["all_settled"]
        and (result["health_p99_ms"] or 1e9) <= TARGETS["health_p99_ms"]
        and result["aggregator_peak_rss_mb"] <= TARGETS["peak_rss_mb"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
