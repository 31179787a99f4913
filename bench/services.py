"""Benchmark: the marketplace as separate processes over HTTP vs in one process.

Both run the same configuration (diabetes, five owners, seed 0, 12 rounds, the
default key size, a metric every round, contributions, settlement on a chain):

(a) ``run_simulation``: every party in this process, the embedded chain in process;
    timed from the start of the run to the end of settlement (key generation,
    escrow, training, metrics, contributions, verification, withdrawals);
(b) ``deltaml demo``: an aggregator, a buyer and five owners as processes talking
    HTTP on 127.0.0.1, the chain as a separate JSON-RPC node (embedded, or anvil
    with ``--chain-url``); ``seconds`` is from the buyer's request to the last
    withdrawal, start-up reported apart.

Issue 5's target: (b) at most 3x (a).

    python bench/services.py                      # one run of each
    python bench/services.py --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import format_table, load_average, machine_facts, machine_line
from deltaml.services.demo import DemoConfig, run_demo
from deltaml.simulation import SimulationConfig, run_simulation

TARGET_RATIO = 3.0


def in_process(rounds: int, key_bits: int, chain_url: str | None) -> float:
    config = SimulationConfig(
        rounds=rounds,
        key_bits=key_bits,
        allow_test_keys=key_bits < 2048,
        chain=True,
        chain_url=chain_url,
    )
    t0 = time.perf_counter()
    run_simulation(config)
    return time.perf_counter() - t0


def as_services(rounds: int, key_bits: int, chain_url: str | None) -> tuple[float, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(
            DemoConfig(
                work_dir=Path(tmp) / "demo", rounds=rounds, key_bits=key_bits, chain_url=chain_url
            ),
            say=lambda _line: None,
        )
    if result.status != "FINISHED":
        raise SystemExit(f"the demo ended {result.status}: {result.error}")
    return result.seconds, result.startup_seconds, result.chain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--chain-url", help="run both on this JSON-RPC node (e.g. anvil)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    facts = machine_facts()
    load_start = load_average()
    simulated, served, startups = [], [], []
    chain = ""
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}: in process", file=sys.stderr)
        simulated.append(in_process(args.rounds, args.key_bits, args.chain_url))
        print(f"run {i + 1}/{args.repeat}: as services", file=sys.stderr)
        seconds, startup, chain = as_services(args.rounds, args.key_bits, args.chain_url)
        served.append(seconds)
        startups.append(startup)
    a, b = statistics.median(simulated), statistics.median(served)
    out = {
        "machine": facts,
        "load_average": {"start": load_start, "end": load_average()},
        "runs": args.repeat,
        "config": {
            "dataset": "diabetes",
            "owners": 5,
            "rounds": args.rounds,
            "key_bits": args.key_bits,
            "seed": 0,
        },
        "in_process_seconds": simulated,
        "services_seconds": served,
        "services_startup_seconds": startups,
        "services_chain": chain,
        "ratio": b / a,
        "target_ratio": TARGET_RATIO,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(machine_line(facts))
    print(f"Load average at start {load_start}, at end {out['load_average']['end']}")
    print(
        f"Runs: {args.repeat} (median); diabetes, 5 owners, {args.rounds} rounds, "
        f"{args.key_bits}-bit keys, seed 0; services chain: {chain}"
    )
    print()
    rows = [
        ["(a) in process (run_simulation, embedded chain)", f"{a:.2f}", "-", "1.00x"],
        [
            "(b) separate processes over HTTP (deltaml demo)",
            f"{b:.2f}",
            f"{statistics.median(startups):.2f}",
            f"{b / a:.2f}x",
        ],
    ]
    print(format_table(["method", "seconds", "start-up s", "vs (a)"], rows))
    verdict = "pass" if b / a <= TARGET_RATIO else "FAIL"
    print(f"\nTarget (issue 5): (b) <= {TARGET_RATIO:g}x (a): measured {b / a:.2f}x -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
