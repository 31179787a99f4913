"""``deltaml demo``: a whole marketplace on one machine, every party its own process.

It starts a chain (the embedded EVM served over JSON-RPC, unless ``--chain-url``
names a node such as anvil), an aggregator, a buyer node and five data-owner
nodes on 127.0.0.1, gives each owner a share of a data set (``--dataset``:
diabetes by default, breast_cancer or a CSV file) as a CSV file, and has the
buyer ask for a model (``--model linear|logistic``, by default by the data set's
task). Everything after that is the services' own doing over HTTP and the
contract: offers, acceptances, training, metrics, contributions, settlement and
withdrawals. At the end it prints the model's test MSE (linear) or AUC
(logistic) next to scikit-learn's, the contributions, what the chain paid and
refunded, and whether the evidence verifies.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deltaml.crypto.paillier import TEST_KEYS_ENV, test_keys_allowed
from deltaml.errors import DeltaMLError, DeltaMLValueError
from deltaml.estimator import TrainedModel
from deltaml.learning.data import (
    Dataset,
    load_dataset,
    save_csv,
    split_owners,
    train_test_split,
)
from deltaml.ledger.base import MIN_CHALLENGE_WINDOW_S
from deltaml.marketplace import DEMO_FUNDING_WEI
from deltaml.services.party import error_detail
from deltaml.services.serve import CA_ENV, PASSWORD_ENV, ServiceProcess, client_tls

MARKER = ".deltaml-demo"
DEFAULT_DIR = Path(".deltaml") / "demo"
#: The demo's challenge window: the contract's shortest. Every honest party approves
#: at once, so it matters only if a party is gone (then the aggregator settles after it).
DEMO_CHALLENGE_WINDOW_S = MIN_CHALLENGE_WINDOW_S


@dataclass
class DemoConfig:
    work_dir: Path = DEFAULT_DIR
    #: ``diabetes``, ``breast_cancer`` or a CSV file (its ``target`` column, or the last).
    dataset: str = "diabetes"
    target: str | None = None
    #: ``linear`` or ``logistic``; ``None``: by the data set's task.
    model: str | None = None
    owners: int = 5
    rounds: int = 12
    eval_every: int = 3
    seed: int = 0
    key_bits: int = 2048
    deposit_wei: int = 10**18
    chain_url: str | None = None
    party_timeout: float = 120.0
    #: Stop the aggregator (SIGKILL) once this round is done and start it again.
    crash_after_round: int | None = None
    #: Stop a data owner of role ``kill_role`` (SIGKILL) once this round is done.
    kill_owner_after_round: int | None = None
    kill_role: str = "trainer"
    timeout: float = 900.0
    #: Serve every node over HTTPS, with certificates from a CA made for this run.
    tls: bool = False


@dataclass
class DemoResult:
    status: str
    seconds: float
    startup_seconds: float
    chain: str
    test_mse: float | None
    sklearn_test_mse: float | None
    deposit_wei: int
    payouts_wei: dict[str, int]
    refund_wei: int
    contributions: dict[str, float]
    metrics: dict[str, float]
    transcript: str
    verified: bool
    owners: list[dict[str, Any]]
    statuses: dict[str, str]
    urls: dict[str, str]
    restarts: int = 0
    error: str = ""
    model: str = "linear"
    dataset: str = "diabetes"
    #: Logistic models: test AUC and accuracy, the model's and scikit-learn's.
    test_auc: float | None = None
    sklearn_test_auc: float | None = None
    test_accuracy: float | None = None
    sklearn_test_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "dataset": self.dataset,
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "startup_seconds": round(self.startup_seconds, 3),
            "chain": self.chain,
            "test_mse": self.test_mse,
            "sklearn_test_mse": self.sklearn_test_mse,
            "test_auc": self.test_auc,
            "sklearn_test_auc": self.sklearn_test_auc,
            "test_accuracy": self.test_accuracy,
            "sklearn_test_accuracy": self.sklearn_test_accuracy,
            "deposit_wei": str(self.deposit_wei),
            "payouts_wei": {a: str(v) for a, v in self.payouts_wei.items()},
            "refund_wei": str(self.refund_wei),
            "contributions": self.contributions,
            "metrics": self.metrics,
            "transcript": self.transcript,
            "verified": self.verified,
            "owners": self.owners,
            "statuses": self.statuses,
            "urls": self.urls,
            "restarts": self.restarts,
            **({"error": self.error} if self.error else {}),
        }


def add_demo_parser(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="a whole marketplace on this machine: every party its own process, real HTTP",
        description=(
            "Start a chain, an aggregator, a buyer and data owners as separate processes on "
            "127.0.0.1, train a model on a data set split among the owners, settle on "
            "the contract, and print the result. Ctrl-C stops every process it started."
        ),
    )
    d.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"work folder ({DEFAULT_DIR})")
    d.add_argument(
        "--dataset",
        default="diabetes",
        help="diabetes, breast_cancer, or a CSV file the owners share (default: diabetes)",
    )
    d.add_argument("--target", help="target column of a CSV file (default: the last column)")
    d.add_argument(
        "--model",
        choices=("linear", "logistic"),
        help="model type (default: by the data set's task)",
    )
    d.add_argument("--owners", type=int, default=5, help="data owners (default 5)")
    d.add_argument("--rounds", type=int, default=12, help="training rounds (default 12)")
    d.add_argument("--eval-every", type=int, default=3, help="evaluate every N rounds (default 3)")
    d.add_argument("--seed", type=int, default=0, help="seed of the data split and roles")
    d.add_argument(
        "--key-bits",
        type=int,
        default=2048,
        # 1024 only where a test opted in to small keys (DELTAML_ALLOW_TEST_KEYS=1).
        choices=(1024, 2048, 3072) if test_keys_allowed() else (2048, 3072),
        help="Paillier key size (default: 2048)",
    )
    d.add_argument("--deposit-wei", type=int, default=10**18, help="the buyer's payment")
    d.add_argument("--chain-url", help="an external JSON-RPC node (e.g. anvil) instead")
    d.add_argument("--json", action="store_true", help="print one JSON object at the end")
    d.add_argument("--quiet", action="store_true", help="no progress lines")
    d.add_argument(
        "--serve",
        action="store_true",
        help="keep every node running after the run (to use their APIs and pages); Ctrl-C stops",
    )
    d.add_argument(
        "--tls",
        action="store_true",
        help="every node over HTTPS, with a throw-away CA made at start (ca.pem in --dir)",
    )
    d.add_argument("--crash-after-round", type=int, help=argparse.SUPPRESS)
    d.add_argument("--kill-owner-after-round", type=int, help=argparse.SUPPRESS)
    d.add_argument(
        "--kill-role", choices=["trainer", "validator"], default="trainer", help=argparse.SUPPRESS
    )
    d.add_argument(
        "--party-timeout",
        type=float,
        default=120.0,
        help="seconds a party may take to answer before the request fails (default 120)",
    )


def run_demo_command(args: argparse.Namespace) -> int:
    if args.owners < 2:
        raise DeltaMLValueError("the demo needs at least 2 owners")
    if args.rounds < 1 or args.eval_every < 1:
        raise DeltaMLValueError("--rounds and --eval-every must be at least 1")
    config = DemoConfig(
        work_dir=args.dir,
        dataset=args.dataset,
        target=args.target,
        model=args.model,
        owners=args.owners,
        rounds=args.rounds,
        eval_every=args.eval_every,
        seed=args.seed,
        key_bits=args.key_bits,
        deposit_wei=args.deposit_wei,
        chain_url=args.chain_url,
        crash_after_round=args.crash_after_round,
        kill_owner_after_round=args.kill_owner_after_round,
        kill_role=args.kill_role,
        party_timeout=args.party_timeout,
        tls=args.tls,
    )
    say: Callable[[str], None] = (
        (lambda _line: None) if args.json or args.quiet else (lambda line: print(line, flush=True))
    )

    def show(result: DemoResult) -> None:
        if args.json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            _report(result, serving=args.serve)
        if args.serve:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass

    # SIGTERM (and SIGHUP) stop the demo as Ctrl-C does: every process it started is
    # stopped on the way out (they run in sessions of their own and would outlive it).
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = run_demo(config, say, show)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if result.status == "FINISHED" and result.verified else 1


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def make_demo_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1/localhost: (ca, cert, key) PEMs."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="DeltaML demo")
    issued = ca.issue_cert("127.0.0.1", "localhost", "::1")
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    with paths[1].open("wb") as f:
        for pem in issued.cert_chain_pems:
            f.write(pem.bytes())
    issued.private_key_pem.write_to_path(str(paths[2]))
    paths[2].chmod(0o600)
    return paths


def _prepare_dir(path: Path) -> None:
    if path.exists():
        if not (path / MARKER).exists() and any(path.iterdir()):
            raise DeltaMLValueError(f"{path} exists and is not a demo folder; choose another --dir")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("a deltaml demo folder: deleted by the next demo run\n")


def demo_data(config: DemoConfig) -> tuple[str, Dataset]:
    """The model type and the data set of the demo (the model type by the data's task
    unless ``config.model`` names one; a logistic model reads the target as two classes)."""
    task = {"linear": "regression", "logistic": "classification"}.get(config.model or "")
    data = load_dataset(config.dataset, target=config.target, task=task)
    if data.multiclass:
        raise DeltaMLValueError(
            f"{config.dataset} has {len(data.classes or ())} classes; the services train "
            "two-class models: use deltaml simulate (one-vs-rest) for it"
        )
    model = config.model or ("logistic" if data.task == "classification" else "linear")
    return model, data


def _write_shares(config: DemoConfig, data: Dataset) -> tuple[list[Path], list[Dataset], Dataset]:
    train, test = train_test_split(data, 0.2, config.seed)
    shares = split_owners(train, config.owners, seed=config.seed)
    name = Path(config.dataset).stem or "data"
    paths = [
        save_csv(share, config.work_dir / f"owner-{i + 1}" / "data" / f"{name}.csv")
        for i, share in enumerate(shares)
    ]
    return paths, shares, test


def run_demo(
    config: DemoConfig,
    say: Callable[[str], None] = print,
    on_result: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Run the demo; ``on_result`` is called with the result while the processes still run."""
    from deltaml.ledger import Web3Ledger, connect, fund_from_dev_account
    from deltaml.ledger.accounts import generate_account, save_keystore

    t0 = time.perf_counter()
    model_type, data = demo_data(config)  # a bad --dataset fails before anything starts
    _prepare_dir(config.work_dir)
    processes: list[ServiceProcess] = []
    node = None
    ca_before = os.environ.get(CA_ENV)
    try:
        tls_args: list[str] = []
        verify: Any = True
        if config.tls:
            ca_pem, cert_pem, key_pem = make_demo_ca(config.work_dir / "tls")
            tls_args = ["--tls-cert", str(cert_pem), "--tls-key", str(key_pem)]
            # Every client trusts it, this process's JSON-RPC client included.
            os.environ[CA_ENV] = str(ca_pem.resolve())
            verify = client_tls(ca_pem)
            say(f"TLS: every node over HTTPS; CA certificate {ca_pem}")
        if config.chain_url:
            chain_url, chain_label = (
                config.chain_url,
                f"external JSON-RPC node at {config.chain_url}",
            )
        else:
            from deltaml.ledger.node import EmbeddedNodeProcess

            node = (
                EmbeddedNodeProcess(tls_cert=str(cert_pem), tls_key=str(key_pem))
                if config.tls
                else EmbeddedNodeProcess()
            )
            chain_url = node.url
            chain_label = f"embedded EVM (py-evm) served over JSON-RPC at {chain_url}"
        say(f"chain: {chain_label}")
        password = secrets.token_hex(16)
        env = {PASSWORD_ENV: password}
        if config.key_bits < 2048:  # asked for test keys: every node must accept them
            env[TEST_KEYS_ENV] = "1"
        if config.tls:
            env[CA_ENV] = os.environ[CA_ENV]  # the nodes trust it for every service
        # Every node's password (keys and page login): a throw-away, readable by the user only.
        secret = config.work_dir / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        names = ["aggregator", "buyer", *(f"owner-{i + 1}" for i in range(config.owners))]
        # The arbiter resolves disputes; it runs no service (every honest party approves).
        accounts = {name: generate_account() for name in [*names, "arbiter"]}
        for name, account in accounts.items():
            save_keystore(
                account, config.work_dir / name / "account.json", password, iterations=2**14
            )
        chain = connect(chain_url)
        fund_from_dev_account(
            chain, [str(a.address) for a in accounts.values()], DEMO_FUNDING_WEI, demo=True
        )
        paths, shares, test = _write_shares(config, data)

        def start(name: str, args: list[str], port: int = 0, wait: bool = True) -> ServiceProcess:
            folder = config.work_dir / name
            proc = ServiceProcess(
                name,
                [*args, "--port", str(port), "--dir", str(folder), "--demo-keys", *tls_args],
                env=env,
                log_path=folder / "service.log",
                wait=wait,
            )
            processes.append(proc)
            return proc

        agg_args = [
            "aggregator",
            "serve",
            "--chain-url",
            chain_url,
            "--party-timeout",
            str(config.party_timeout),
        ]
        aggregator = start("aggregator", agg_args)
        say(f"aggregator: {aggregator.url}/docs (pid {aggregator.pid})")
        test_keys = ["--allow-test-keys"] if config.key_bits < 2048 else []
        # The nodes start side by side: most of their start-up is importing and unlocking keys.
        buyer = start(
            "buyer", ["buyer", "serve", "--aggregator", aggregator.url, *test_keys], wait=False
        )
        owners = []
        for i, path in enumerate(paths):
            owner = start(
                f"owner-{i + 1}",
                [
                    "owner",
                    "serve",
                    "--data",
                    str(path),
                    "--aggregator",
                    aggregator.url,
                    "--name",
                    f"owner {i + 1}",
                ],
                wait=False,
            )
            owners.append(owner)
        buyer.wait_ready()
        say(f"buyer node: {buyer.url} (pid {buyer.pid})")
        for owner in owners:
            owner.wait_ready()
        say(f"{len(owners)} data owners: " + ", ".join(f"{o.url} (pid {o.pid})" for o in owners))
        agg_client = httpx.Client(
            base_url=aggregator.url, timeout=60, trust_env=False, verify=verify
        )
        token = (config.work_dir / "buyer" / "api-token").read_text().strip()
        buyer_client = httpx.Client(
            base_url=buyer.url,
            timeout=600,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            verify=verify,
        )
        _wait_registered(agg_client, len(owners))
        startup = time.perf_counter() - t0
        say(f"started in {startup:.1f} s")

        t1 = time.perf_counter()
        spec = {
            "model": model_type,
            "features": list(shares[0].feature_names),
            "target": shares[0].target_name,
            "owners": config.owners,
            "rounds": config.rounds,
            "eval_every": config.eval_every,
            "deposit_wei": config.deposit_wei,
            "key_bits": config.key_bits,
            "split_seed": config.seed,
            "arbiter": str(accounts["arbiter"].address),
            # Every honest party approves at once, so the result need not wait a day.
            "challenge_window_s": DEMO_CHALLENGE_WINDOW_S,
        }
        created = _ok(buyer_client.post("/requests", json=spec))
        rid = int(created["id"])
        say(
            f"request {rid} created: {model_type} model of {data.target_name!r}, "
            f"{config.rounds} rounds, deposit {config.deposit_wei} wei"
        )
        metric_label = "validation MSE" if model_type == "linear" else "validation loss"
        restarts = 0
        shown = -1
        killed: ServiceProcess | None = None
        owner_addresses = [str(accounts[f"owner-{i + 1}"].address) for i in range(config.owners)]
        deadline = time.monotonic() + config.timeout
        while True:
            view = _ok(agg_client.get(f"/requests/{rid}"))
            for point in view["metrics"]:
                if point["round"] > shown:
                    shown = point["round"]
                    say(f"  round {shown:>3}: {metric_label} {point['mse']:.6g}")
            if (
                config.crash_after_round is not None
                and not restarts
                and view["rounds_done"] >= config.crash_after_round
                and view["status"] == "IN_PROGRESS"
            ):
                done = view["rounds_done"]
                say(f"killing the aggregator after round {done} (pid {aggregator.pid})")
                aggregator.kill()
                processes.remove(aggregator)
                aggregator = _restart(aggregator, agg_args, start, aggregator.url)
                agg_client = httpx.Client(
                    base_url=aggregator.url, timeout=60, trust_env=False, verify=verify
                )
                restarts += 1
                say(f"aggregator restarted (pid {aggregator.pid})")
                continue
            if (
                config.kill_owner_after_round is not None
                and killed is None
                and view["rounds_done"] >= config.kill_owner_after_round
            ):
                victim = next(o["owner"] for o in view["offers"] if o["role"] == config.kill_role)
                killed = owners[owner_addresses.index(victim)]
                say(f"killing {killed.name}, a {config.kill_role} (pid {killed.pid})")
                killed.kill()
                processes.remove(killed)
            if view["status"] in ("FINISHED", "FAILED", "CANCELLED"):
                break
            if time.monotonic() > deadline:
                raise DeltaMLValueError(f"the demo did not finish within {config.timeout:g} s")
            time.sleep(0.25)
        status = view["status"]
        ledger = Web3Ledger(
            connect(chain_url), _ok(agg_client.get("/info"))["contract"], accounts["buyer"]
        )
        cid = int(view["chain_request_id"])
        buyer_address = str(accounts["buyer"].address)
        statuses = {o["owner"]: o["status"] for o in view["offers"]}
        urls = {
            "aggregator": aggregator.url,
            "buyer": buyer.url,
            **{f"owner-{i + 1}": o.url for i, o in enumerate(owners)},
        }
        owner_rows: list[dict[str, Any]] = [
            {"name": f"owner-{i + 1}", "address": str(accounts[f"owner-{i + 1}"].address)}
            for i in range(config.owners)
        ]
        transcript = config.work_dir / "aggregator" / "transcripts" / f"request-{rid}.jsonl"
        result: dict[str, Any] = view["result"] or {}
        if status == "FINISHED":
            payees = {a for a, v in result["payouts_wei"].items() if int(v) > 0}
            if int(result["refund_wei"]) > 0:
                payees.add(buyer_address)
        else:
            say(f"request {rid} ended {status}: {view.get('error', '')}")
            payees = {buyer_address}  # the buyer reclaims its escrow
        withdrawn = _wait_withdrawals(ledger, cid, payees, deadline)
        seconds = time.perf_counter() - t1
        scores: dict[str, float] = {}
        verified = False
        if status == "FINISHED":
            say(f"settled and paid out in {seconds:.1f} s after the request")
            scores, trainers = _test_scores(
                _wait_model(buyer_client, rid, deadline),
                [str(accounts[f"owner-{i + 1}"].address) for i in range(config.owners)],
                result["trainers"],
                shares,
                test,
            )
            settlement = _wait_settlement(buyer_client, rid, deadline)
            from deltaml.evidence.verify import verify_transcript

            report = verify_transcript(transcript, expected_head=result["transcript_head"])
            verified = report.ok and bool(settlement and settlement.get("verified"))
            for i, row in enumerate(owner_rows):
                row.update(role="trainer" if i in trainers else "validator", rows=shares[i].n_rows)
        outcome = DemoResult(
            status=status,
            seconds=seconds,
            startup_seconds=startup,
            chain=chain_label,
            test_mse=scores.get("test_mse"),
            sklearn_test_mse=scores.get("sklearn_test_mse"),
            test_auc=scores.get("test_auc"),
            sklearn_test_auc=scores.get("sklearn_test_auc"),
            test_accuracy=scores.get("test_accuracy"),
            sklearn_test_accuracy=scores.get("sklearn_test_accuracy"),
            model=model_type,
            dataset=config.dataset,
            deposit_wei=config.deposit_wei,
            payouts_wei={a: v for a, v in withdrawn.items() if a != buyer_address},
            refund_wei=withdrawn.get(buyer_address, 0),
            contributions=result.get("contributions", {}),
            metrics=result.get("metrics") or {str(p["round"]): p["mse"] for p in view["metrics"]},
            transcript=str(transcript),
            verified=verified,
            owners=owner_rows,
            statuses=statuses,
            urls=urls,
            restarts=restarts,
            error=view.get("error", ""),
        )
        if on_result is not None:
            on_result(outcome)
        return outcome
    finally:
        for proc in processes:
            proc.terminate()
        for proc in reversed(processes):
            proc.stop()
        if node is not None:
            node.stop()
        if ca_before is None:
            os.environ.pop(CA_ENV, None)
        else:
            os.environ[CA_ENV] = ca_before


def _test_scores(
    model_json: Any,
    owner_addresses: list[str],
    trainer_addresses: list[str],
    shares: list[Dataset],
    test: Dataset,
) -> tuple[dict[str, float], list[int]]:
    """The model's test scores next to scikit-learn's on the trainers' rows (MSE for a
    linear model; AUC and accuracy for a logistic one), and the trainers' indices."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = TrainedModel.from_json(model_json)
    trainers = [owner_addresses.index(a) for a in trainer_addresses]
    x_train = np.concatenate([shares[i].X for i in trainers])
    y_train = np.concatenate([shares[i].y for i in trainers])
    scores = model.decision_function(test.X)
    if model.model == "linear":
        sk = LinearRegression().fit(x_train, y_train)
        return {
            "test_mse": float(np.mean((scores - test.y) ** 2)),
            "sklearn_test_mse": float(np.mean((sk.predict(test.X) - test.y) ** 2)),
        }, trainers
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    clf.fit(x_train, y_train)
    return {
        "test_auc": float(roc_auc_score(test.y, scores)),
        "sklearn_test_auc": float(roc_auc_score(test.y, clf.decision_function(test.X))),
        "test_accuracy": float(accuracy_score(test.y, scores > 0)),
        "sklearn_test_accuracy": float(accuracy_score(test.y, clf.predict(test.X))),
    }, trainers


def _restart(
    old: ServiceProcess,
    args: list[str],
    start: Callable[[str, list[str], int], ServiceProcess],
    url: str,
) -> ServiceProcess:
    """The aggregator again, on the port the parties know."""
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while True:
        try:
            proc = start("aggregator", args, port)
            break
        except DeltaMLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return proc


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        request = response.request
        raise DeltaMLValueError(f"{request.method} {request.url.path}: {error_detail(response)}")
    return response.json()


def _wait_registered(client: httpx.Client, n: int, timeout: float = 120.0) -> None:
    """Until every owner has registered (they profile their data and join the contract first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ok(client.get("/health")).get("owners", 0) >= n:
            return
        time.sleep(0.2)
    raise DeltaMLValueError(f"the {n} owners did not register within {timeout:g} s")


def _wait_withdrawals(ledger: Any, cid: int, payees: set[str], deadline: float) -> dict[str, int]:
    """What the contract paid each payee, once every one of them has withdrawn."""
    while True:
        paid: dict[str, int] = {}
        for event in ledger.history(cid):
            if event.name == "Withdrawn":
                account = str(event.args["account"])
                paid[account] = paid.get(account, 0) + int(event.args["amount"])
        if payees <= set(paid):
            return paid
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(payees - set(paid)))
            raise DeltaMLValueError(f"no withdrawal from {missing} before the demo's timeout")
        time.sleep(0.25)


def _wait_model(buyer_client: Any, rid: int, deadline: float) -> dict[str, Any]:
    """The model, once the buyer node has it (it comes only after the settlement)."""
    while True:
        response = buyer_client.get(f"/requests/{rid}/model")
        if response.status_code == 200:
            return dict(response.json())
        if response.status_code != 404 or time.monotonic() > deadline:
            _ok(response)
            raise DeltaMLValueError("the buyer had no model before the demo's timeout")
        time.sleep(0.25)


def _wait_settlement(buyer_client: Any, rid: int, deadline: float) -> dict[str, Any]:
    """The buyer node's settlement record (written just after its last transaction)."""
    while True:
        status = _ok(buyer_client.get("/status"))
        settlement = next(r for r in status["requests"] if r["id"] == rid)["settlement"]
        if settlement is not None:
            return dict(settlement)
        if time.monotonic() > deadline:
            raise DeltaMLValueError("the buyer recorded no settlement before the demo's timeout")
        time.sleep(0.25)


def _report(result: DemoResult, serving: bool = False) -> None:
    out = sys.stdout
    print(f"\nstatus: {result.status}  (chain: {result.chain})", file=out)
    print(
        f"time: {result.seconds:.1f} s from request to settlement; start-up "
        f"{result.startup_seconds:.1f} s",
        file=out,
    )
    if result.test_mse is not None and result.sklearn_test_mse is not None:
        ratio = result.test_mse / result.sklearn_test_mse
        print(
            f"test MSE {result.test_mse:.2f}  vs scikit-learn {result.sklearn_test_mse:.2f} "
            f"({ratio:.4f}x)",
            file=out,
        )
    elif result.test_auc is not None and result.sklearn_test_auc is not None:
        print(
            f"test AUC {result.test_auc:.4f}  vs scikit-learn {result.sklearn_test_auc:.4f}; "
            f"accuracy {result.test_accuracy:.4f} vs {result.sklearn_test_accuracy:.4f}",
            file=out,
        )
    else:
        print(f"no model: {result.error}", file=out)
        print(f"refunded to the buyer: {result.refund_wei} of {result.deposit_wei} wei", file=out)
        return
    names = {o["address"]: f"{o['name']} ({o['role']})" for o in result.owners}
    print("contributions (Shapley, validation SSE units):", file=out)
    for address, value in result.contributions.items():
        print(f"  {names.get(address, address)}: {value:.6g}", file=out)
    print("paid on chain (wei):", file=out)
    for address, wei in sorted(result.payouts_wei.items(), key=lambda kv: -kv[1]):
        print(f"  {names.get(address, 'aggregator ' + address)}: {wei}", file=out)
    print(f"  refund to the buyer: {result.refund_wei} of {result.deposit_wei}", file=out)
    print(f"evidence: {'verified' if result.verified else 'NOT verified'} — {result.transcript}")
    print("web pages (log in with the password in the demo folder's `password` file):", file=out)
    for name, url in result.urls.items():
        extra = f"  (public; API docs at {url}/docs)" if name == "aggregator" else ""
        print(f"  {name}: {url}/ui/{extra}", file=out)
    if serving:
        print("serving until Ctrl-C", file=out)
    else:
        print("(stopped now; run with --serve to keep them up)", file=out)
