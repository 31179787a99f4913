"""``deltaml demo``'s command line: its options, and running it with them."""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deltaml.crypto.paillier import test_keys_allowed
from deltaml.errors import DeltaMLValueError
from deltaml.services.demo.config import DEFAULT_DIR, DemoConfig, DemoResult
from deltaml.services.demo.report import print_report
from deltaml.services.demo.run import run_demo


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
    d.add_argument(
        "--solver",
        choices=("admm", "exact"),
        default="admm",
        help="admm: training rounds (default); exact: one masked solve to the optimum, "
        "its metric, contributions and settlement (docs/exactness.md)",
    )
    d.add_argument(
        "--metric-protocol",
        choices=("rotation", "gram"),
        default="rotation",
        help="rotation: each evaluation mixes every validator's vector (default); gram: "
        "the validators' Gram matrices once, masked products with the buyer after",
    )
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
        solver=args.solver,
        metric_protocol=args.metric_protocol,
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
            print_report(result, serving=args.serve)
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
