"""The demo's flow against the compose stack: ``python -m deltaml.services.compose_demo``.

``deploy/compose.yaml`` runs a chain, PostgreSQL, an aggregator, a buyer node and three
data owners, each in its own container, over TLS. This runner is what ``deltaml demo``
does after its start-up, from the host, through the ports the stack publishes on
127.0.0.1: it asks the buyer node for a model, follows the training on the aggregator's
public view, waits for every withdrawal on the chain and prints the same summary.

    python -m deltaml.services.compose_demo data deploy/data   # the owners' CSVs, before `up`
    python -m deltaml.services.compose_demo run [--project deploy] [--json]

The owners' data is the diabetes data split as ``deltaml demo`` splits it (same seed);
the CA certificate and the buyer's API token are read from the containers
(``podman exec``), never copied into the image. ``--crash-after-round N`` kills the
aggregator's container (SIGKILL) once round N is done and starts it again: training
resumes from its checkpoint in PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from deltaml.errors import DeltaMLError, DeltaMLValueError
from deltaml.learning.data import Dataset, load_dataset, save_csv, split_owners, train_test_split
from deltaml.ledger.base import MIN_CHALLENGE_WINDOW_S
from deltaml.ledger.chain import CA_FILE_ENV

#: Host ports the stack publishes, as in deploy/compose.yaml (same variables, same defaults).
PORT_VARIABLES = {
    "aggregator": ("DELTAML_AGGREGATOR_PORT", 8700),
    "buyer": ("DELTAML_BUYER_PORT", 8702),
    "chain": ("DELTAML_CHAIN_PORT", 8545),
    "owner-1": ("DELTAML_OWNER1_PORT", 8711),
    "owner-2": ("DELTAML_OWNER2_PORT", 8712),
    "owner-3": ("DELTAML_OWNER3_PORT", 8713),
}
OWNERS = 3


def default_ports() -> dict[str, int]:
    return {name: int(os.environ.get(var, port)) for name, (var, port) in PORT_VARIABLES.items()}


def write_data(folder: Path, owners: int = OWNERS, seed: int = 0) -> tuple[list[Dataset], Dataset]:
    """Each owner's share of the diabetes data in ``folder/owner-N/diabetes.csv``.

    The files are readable by the containers' user (the owners mount them read-only).
    """
    data = load_dataset("diabetes")
    train, test = train_test_split(data, 0.2, seed)
    shares = split_owners(train, owners, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for i, share in enumerate(shares):
        path = save_csv(share, folder / f"owner-{i + 1}" / "diabetes.csv")
        path.parent.chmod(0o755)
        path.chmod(0o644)
    return shares, test


@dataclass
class Stack:
    """The containers of one compose project, found by their compose labels."""

    project: str
    engine: str = "podman"
    ports: dict[str, int] = field(default_factory=default_ports)

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        try:
            done = subprocess.run(
                [self.engine, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeltaMLValueError(f"{self.engine} {args[0]}: {exc}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise DeltaMLValueError(f"{self.engine} {' '.join(args[:2])}: {last}")
        return done.stdout

    def container(self, service: str) -> str:
        names = self._run(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ).split()
        if not names:
            raise DeltaMLValueError(
                f"no container for {service} in compose project {self.project!r}; is it up?"
            )
        return names[0]

    def read(self, service: str, path: str) -> str:
        return self._run("exec", self.container(service), "cat", path)

    def kill(self, service: str) -> None:
        self._run("kill", "--signal", "KILL", self.container(service))

    def start(self, service: str) -> None:
        self._run("start", self.container(service))

    def url(self, service: str) -> str:
        """Every service, the chain included, answers HTTPS only."""
        return f"https://127.0.0.1:{self.ports[service]}"


@dataclass
class ComposeDemoConfig:
    project: str = "deploy"
    engine: str = "podman"
    rounds: int = 6
    eval_every: int = 3
    seed: int = 0
    key_bits: int = 2048
    deposit_wei: int = 10**18
    crash_after_round: int | None = None
    timeout: float = 900.0
    ports: dict[str, int] = field(default_factory=default_ports)


def _wait(what: str, check: Callable[[], bool], timeout: float, pause: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, DeltaMLError) as exc:
            last = f": {exc}"
        time.sleep(pause)
    raise DeltaMLValueError(f"{what} within {timeout:g} s{last}")


@contextlib.contextmanager
def trusting(ca_file: Path) -> Iterator[None]:
    """``DELTAML_CA_FILE`` names ``ca_file`` while a JSON-RPC client is made."""
    before = os.environ.get(CA_FILE_ENV)
    os.environ[CA_FILE_ENV] = str(ca_file)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CA_FILE_ENV, None)
        else:
            os.environ[CA_FILE_ENV] = before


def run_compose_demo(config: ComposeDemoConfig, say: Callable[[str], None] = print) -> Any:
    """Request, training, settlement and withdrawals on a running stack; a ``DemoResult``."""
    from deltaml.evidence.verify import verify_transcript
    from deltaml.ledger import Web3Ledger, connect
    from deltaml.ledger.accounts import generate_account
    from deltaml.services.demo import (
        DemoResult,
        model_scores,
        ok,
        wait_model,
        wait_settlement,
        wait_withdrawals,
    )

    stack = Stack(config.project, config.engine, config.ports)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deltaml-compose-") as tmp:
        ca_file = Path(tmp) / "ca.crt"
        _wait(
            "the stack's CA certificate did not appear",
            lambda: bool(ca_file.write_text(stack.read("buyer", "/certs/ca.crt"))),
            300,
            1.0,
        )
        tls = ssl.create_default_context(cafile=str(ca_file))

        def client(service: str, token_from: str | None = None) -> httpx.Client:
            headers = {}
            if token_from is not None:
                token = stack.read(token_from, "/node/api-token").strip()
                headers["Authorization"] = f"Bearer {token}"
            return httpx.Client(
                base_url=stack.url(service),
                verify=tls,
                timeout=60,
                headers=headers,
                trust_env=False,
            )

        owner_names = [f"owner-{i + 1}" for i in range(OWNERS)]
        # Each node writes its API token when it starts: wait for the nodes first.
        tokens: dict[str, httpx.Client] = {}

        def nodes_up() -> bool:
            for name in ["buyer", *owner_names]:
                if name not in tokens:
                    c = client(name, token_from=name)
                    c.get("/status").raise_for_status()
                    tokens[name] = c
            return True

        _wait("the buyer and owner nodes did not answer", nodes_up, 300, 1.0)
        agg = client("aggregator")
        _wait(
            "the owners did not register with the aggregator",
            lambda: ok(agg.get("/health")).get("owners", 0) >= OWNERS,
            300,
        )
        buyer = tokens["buyer"]
        buyer_address = str(ok(buyer.get("/status"))["address"])
        owner_addresses = [str(ok(tokens[n].get("/status"))["address"]) for n in owner_names]
        startup = time.perf_counter() - t0
        say(f"stack {config.project!r} answering over TLS after {startup:.1f} s")

        train_set = load_dataset("diabetes")
        train, test = train_test_split(train_set, 0.2, config.seed)
        shares = split_owners(train, OWNERS, seed=config.seed)
        spec = {
            "model": "linear",
            "features": list(shares[0].feature_names),
            "target": shares[0].target_name,
            "owners": OWNERS,
            "rounds": config.rounds,
            "eval_every": config.eval_every,
            "deposit_wei": config.deposit_wei,
            "key_bits": config.key_bits,
            "split_seed": config.seed,
            # Who resolves a dispute: a throw-away account here (every honest party
            # approves at once, so the shortest window the contract allows will do).
            "arbiter": str(generate_account().address),
            "challenge_window_s": MIN_CHALLENGE_WINDOW_S,
        }
        t1 = time.perf_counter()
        buyer.timeout = httpx.Timeout(600)
        rid = int(ok(buyer.post("/requests", json=spec))["id"])
        say(f"request {rid} created: {config.rounds} rounds, deposit {config.deposit_wei} wei")
        deadline = time.monotonic() + config.timeout
        view, restarts = _follow(agg, rid, stack, config, say)

        status = view["status"]
        info = ok(agg.get("/info"))
        with trusting(ca_file):  # the chain's certificate is the stack's CA's too
            chain = connect(stack.url("chain"))
        ledger = Web3Ledger(chain, info["contract"], generate_account())
        cid = int(view["chain_request_id"])
        result: dict[str, Any] = view["result"] or {}
        if status == "FINISHED":
            payees = {a for a, v in result["payouts_wei"].items() if int(v) > 0}
            if int(result["refund_wei"]) > 0:
                payees.add(buyer_address)
        else:
            say(f"request {rid} ended {status}: {view.get('error', '')}")
            payees = {buyer_address}
        withdrawn = wait_withdrawals(ledger, cid, payees, deadline)
        seconds = time.perf_counter() - t1
        scores: dict[str, Any] = {}
        verified = False
        owner_rows: list[dict[str, Any]] = [
            {"name": n, "address": a} for n, a in zip(owner_names, owner_addresses, strict=True)
        ]
        transcript = Path(tmp) / f"request-{rid}.jsonl"
        if status == "FINISHED":
            scores, trainers = model_scores(
                wait_model(buyer, rid, deadline),
                owner_addresses,
                result["trainers"],
                shares,
                test,
            )
            settlement = wait_settlement(buyer, rid, deadline)
            response = agg.get(f"/requests/{rid}/transcript")
            response.raise_for_status()
            transcript.write_bytes(response.content)
            report = verify_transcript(transcript, expected_head=result["transcript_head"])
            verified = report.ok and bool(settlement and settlement.get("verified"))
            for i, row in enumerate(owner_rows):
                row.update(role="trainer" if i in trainers else "validator", rows=shares[i].n_rows)
        return DemoResult(
            status=status,
            seconds=seconds,
            startup_seconds=startup,
            chain=f"compose project {config.project!r}, chain at {stack.url('chain')}",
            test_mse=scores.get("test_mse"),
            sklearn_test_mse=scores.get("sklearn_test_mse"),
            optimum_test_mse=scores.get("optimum_test_mse"),
            baseline_note=str(scores.get("baseline_note") or ""),
            deposit_wei=config.deposit_wei,
            payouts_wei={a: v for a, v in withdrawn.items() if a != buyer_address},
            refund_wei=withdrawn.get(buyer_address, 0),
            contributions=result.get("contributions", {}),
            metrics=result.get("metrics") or {str(p["round"]): p["mse"] for p in view["metrics"]},
            transcript=f"{stack.url('aggregator')}/requests/{rid}/transcript",
            verified=verified,
            owners=owner_rows,
            statuses={o["owner"]: o["status"] for o in view["offers"]},
            urls={name: stack.url(name) for name in ["aggregator", "buyer", *owner_names]},
            restarts=restarts,
            error=view.get("error", ""),
        )


def _summary(result: Any) -> str:
    """``deltaml demo``'s summary, its last lines saying where the stack's passwords are."""
    from deltaml.services.demo import print_report

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_report(result)
    lines = []
    for line in out.getvalue().splitlines():
        if line.startswith("web pages ("):
            line = "web pages (log in with the node's password, deploy/secrets/NAME_password):"
        elif line.startswith("(stopped now"):
            line = "(the stack keeps running: `podman-compose down` in deploy/ stops it)"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deltaml.services.compose_demo",
        description="The demo's request/train/settle flow against deploy/compose.yaml's stack.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = sub.add_parser("data", help="write the three owners' CSVs (before `compose up`)")
    d.add_argument("folder", type=Path, help="e.g. deploy/data")
    d.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run", help="request, train, settle and withdraw on the running stack")
    r.add_argument("--project", default="deploy", help="the compose project (default: deploy)")
    r.add_argument("--engine", default="podman", help="podman (default) or docker")
    r.add_argument("--rounds", type=int, default=6)
    r.add_argument("--eval-every", type=int, default=3)
    r.add_argument("--seed", type=int, default=0, help="the split `data` used (default 0)")
    r.add_argument("--key-bits", type=int, default=2048)
    r.add_argument("--deposit-wei", type=int, default=10**18)
    r.add_argument("--crash-after-round", type=int, help="kill and restart the aggregator")
    r.add_argument("--timeout", type=float, default=900.0)
    r.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    try:
        if args.action == "data":
            if args.folder.exists() and not args.folder.is_dir():
                raise DeltaMLValueError(f"{args.folder} is not a folder")
            write_data(args.folder, seed=args.seed)
            print(f"the owners' data is in {args.folder}/owner-1..{OWNERS}")
            return 0
        if shutil.which(args.engine) is None:
            raise DeltaMLValueError(f"{args.engine} is not installed")
        config = ComposeDemoConfig(
            project=args.project,
            engine=args.engine,
            rounds=args.rounds,
            eval_every=args.eval_every,
            seed=args.seed,
            key_bits=args.key_bits,
            deposit_wei=args.deposit_wei,
            crash_after_round=args.crash_after_round,
            timeout=args.timeout,
        )
        say: Callable[[str], None] = (
            (lambda _line: None) if args.json else (lambda line: print(line, flush=True))
        )
        result = run_compose_demo(config, say)
    except DeltaMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json()), flush=True)
    else:
        print(_summary(result), end="", flush=True)
    return 0 if result.status == "FINISHED" and result.verified else 1


if __name__ == "__main__":
    sys.exit(main())


def _follow(
    agg: httpx.Client,
    rid: int,
    stack: Stack,
    config: ComposeDemoConfig,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], int]:
    """Follow request ``rid`` on the aggregator's public view to its end (killing and
    restarting the aggregator's container once if asked); its last view and restarts."""
    from deltaml.services.demo import ok

    restarts, shown = 0, -1
    deadline = time.monotonic() + config.timeout
    while True:
        try:
            view = ok(agg.get(f"/requests/{rid}"))
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the aggregator is restarting
            continue
        for point in view["metrics"]:
            if point["round"] > shown:
                shown = point["round"]
                say(f"  round {shown:>3}: validation MSE {point['mse']:.6g}")
        if (
            config.crash_after_round is not None
            and not restarts
            and view["rounds_done"] >= config.crash_after_round
            and view["status"] == "IN_PROGRESS"
        ):
            say(f"killing the aggregator's container after round {view['rounds_done']}")
            stack.kill("aggregator")
            stack.start("aggregator")
            _wait(
                "the aggregator did not come back",
                lambda: agg.get("/health").status_code == 200,
                180,
            )
            restarts += 1
            say("aggregator container restarted")
            continue
        if view["status"] in ("FINISHED", "FAILED", "CANCELLED"):
            return view, restarts
        if time.monotonic() > deadline:
            raise DeltaMLValueError(f"the request did not finish within {config.timeout:g} s")
        time.sleep(0.2)
