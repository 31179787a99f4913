"""Benchmark: how each phase of a run grows with the number of owners (issue 15).

One simulated run per size (``make_synthetic``, seed 0: ``--rows`` rows and
``--features`` features per owner, an extra owner's rows as the test set; linear
regression, ``--rounds`` rounds, the metric on the initial and the last model,
contributions on), printing the wall time of training, metrics and contributions
and the growth exponent ``log(t₂/t₁) / log(n₂/n₁)`` between consecutive sizes, then
each phase's CPU split between the central parties (aggregator and buyer) and the
owners (their time answering, counted per party by the in-process transport, or
in the owners' worker processes with ``--workers``: a size is run once per count).
Transcript verification and the chain are off (they are measured elsewhere); the
contributions are exact Shapley values in closed form at every size.

Usage::

    python bench/scale.py --test-keys --key-bits 1024            # 10, 30, 100 owners
    python bench/scale.py --owners 10 30 --key-bits 2048 --json
    python bench/scale.py --test-keys --key-bits 1024 --workers 1 2  # both, each size
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import format_table, load_average, machine_facts, machine_line
from deltaml.learning.data import make_synthetic
from deltaml.ledger import connect
from deltaml.simulation import SimulationConfig, simulate_shares
from deltaml.transport.processes import auto_workers
from gas import SEAT_CALLS, measure_seats

PHASES = ("training", "metrics", "contributions", "total")


@dataclass
class SizeResult:
    owners: int
    #: Owners' worker processes (1: every party in the simulation's process).
    workers: int
    trainers: int
    validators: int
    key_bits: int
    rounds: int
    evaluations: int
    total: float
    training: float
    metrics: float
    contributions: float
    shapley_method: str
    #: Products of the two dense mixes (aggregator's and remixer's rotation of the full
    #: stacked height H = validators·(features + 2)): 2·H² per evaluation and
    #: 2·(m + 1)·H² for the contribution columns, the costs that grow fastest.
    mix_products_per_evaluation: int
    mix_products_contributions: int
    #: CPU seconds by phase: ``{"central": …, "owners": …}`` (aggregator and buyer
    #: against the owners; see ``TrainingRecord.cpu``).
    cpu: dict[str, dict[str, float]]
    #: With ``--verify``: ``deltaml verify``'s wall seconds on the run's transcript (and
    #: its sealed ciphertexts), and whether every check passed.
    verify_seconds: float | None = None
    verified: bool | None = None


def run_size(owners: int, args: argparse.Namespace, workers: int | None = None) -> SizeResult:
    config = SimulationConfig(
        dataset="synthetic",
        owners=owners,
        key_bits=args.key_bits,
        rounds=args.rounds,
        seed=args.seed,
        eval_every=args.eval_every or args.rounds,
        contributions=True,
        verify=args.verify,
        chain=False,
        allow_test_keys=args.test_keys,
        workers=workers,
        solver=args.solver,
        metric_protocol=args.metric_protocol,
    )
    data = make_synthetic(owners + 1, args.rows, args.features, seed=args.seed)
    shares, test = data[:owners], data[owners]
    t0 = time.perf_counter()
    result = simulate_shares(config, "linear", "regression", shares, test)
    wall = time.perf_counter() - t0
    evaluations = sum(1 for r in result.rounds if r.metric is not None)
    evaluations += result.initial_metric is not None
    height = len(result.validators) * (args.features + 2)
    if len(result.contributions) != len(result.trainers):
        raise SystemExit(f"{owners} owners: contributions missing")
    return SizeResult(
        owners=owners,
        workers=auto_workers(owners) if workers is None else workers,
        trainers=len(result.trainers),
        validators=len(result.validators),
        key_bits=config.key_bits,
        rounds=len(result.rounds),
        evaluations=evaluations,
        total=wall,
        training=result.training_seconds,
        metrics=result.metric_seconds,
        contributions=result.contribution_seconds,
        shapley_method="exact (closed form)",
        mix_products_per_evaluation=2 * height**2,
        mix_products_contributions=2 * (len(result.trainers) + 1) * height**2,
        cpu=result.record.cpu,
        verify_seconds=result.verify_seconds if args.verify else None,
        verified=result.verified,
    )


def exponent(a: SizeResult, b: SizeResult, phase: str) -> float | None:
    ta, tb = getattr(a, phase), getattr(b, phase)
    if ta <= 0 or tb <= 0 or a.owners == b.owners or a.workers != b.workers:
        return None
    return math.log(tb / ta) / math.log(b.owners / a.owners)


def table(results: Sequence[SizeResult]) -> str:
    rows = []
    for i, r in enumerate(results):
        cells = [f"{r.owners} ({r.trainers} + {r.validators})", str(r.workers)]
        for phase in PHASES:
            cell = f"{getattr(r, phase):.1f} s"
            if i > 0:
                e = exponent(results[i - 1], r, phase)
                cell += f" (^{e:.2f})" if e is not None else ""
            cells.append(cell)
        rows.append(cells)
    evaluations = results[0].evaluations if results else 0
    head = ["owners (trainers + validators)", "workers", "training"]
    head.append(f"metrics ({evaluations} evaluations)")
    return format_table([*head, "contributions", "whole run"], rows)


CPU_PHASES = ("setup", "training", "metrics", "contributions")


def cpu_table(results: Sequence[SizeResult]) -> str:
    """Each phase's CPU, central (aggregator + buyer) / owners, and the central total's
    growth exponent from the previous size."""
    rows = []
    for i, r in enumerate(results):
        cells = [str(r.owners), str(r.workers)]
        for phase in CPU_PHASES:
            split = r.cpu.get(phase, {"central": 0.0, "owners": 0.0})
            cells.append(f"{split['central']:.1f} / {split['owners']:.1f} s")
        central = sum(s["central"] for s in r.cpu.values())
        cell = f"{central:.1f} s"
        if i > 0 and results[i - 1].workers == r.workers:
            before = sum(s["central"] for s in results[i - 1].cpu.values())
            if before > 0 and central > 0:
                grow = math.log(central / before) / math.log(r.owners / results[i - 1].owners)
                cell += f" (^{grow:.2f})"
        rows.append([*cells, cell])
    head = ["owners", "workers", *(f"{p} central / owners" for p in CPU_PHASES)]
    head.append("central CPU, all")
    return format_table(head, rows)


def gas_by_size(sizes: Sequence[int]) -> dict[int, dict[str, int | float]]:
    """Every contract call's gas for a request of each size (``bench/gas.py --seats``):
    mined receipts on the embedded chain, a sample of seats acting."""
    chain = connect(None)
    try:
        return {n: measure_seats(chain, n) for n in sizes}
    finally:
        chain.close()


def gas_table(gas: dict[int, dict[str, int | float]]) -> str:
    sizes = sorted(gas)
    rows = [
        [name, *(f"{gas[n][name]:,}" if gas[n].get(name) else "—" for n in sizes)]
        for name in SEAT_CALLS
    ]
    return format_table(["call (gas)", *(f"{n} owners" for n in sizes)], rows)


def mix_table(results: Sequence[SizeResult]) -> str:
    rows = [
        [
            str(r.owners),
            f"{r.mix_products_per_evaluation:,}",
            f"{r.mix_products_contributions:,}",
        ]
        for r in {r.owners: r for r in results}.values()
    ]
    head = ["owners", "dense-mix products per evaluation", "dense-mix products, contributions"]
    return format_table(head, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--owners", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--solver",
        choices=("admm", "exact"),
        default="admm",
        help="admm: --rounds rounds (default); exact: one masked solve, each trainer's "
        "part valued (docs/exactness.md)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="evaluate every N rounds (the request's default is 3; default here: only "
        "the initial model and the last round, as the earlier tables)",
    )
    p.add_argument(
        "--metric-protocol",
        choices=("rotation", "gram"),
        default="rotation",
        help="rotation: dense mixes over every validator (default); gram: the validators' "
        "summed Gram matrix and masked products with the buyer (roles/forms.py)",
    )
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[None],
        help="owners' worker processes, each size run with each count (default: by the "
        "cores and owners, as deltaml simulate; 1: every party in one process)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--verify",
        action="store_true",
        help="verify each run's transcript (with its sealed ciphertexts) and time it",
    )
    p.add_argument(
        "--no-gas",
        action="store_true",
        help="skip the contract's gas per call at each size (embedded chain)",
    )
    p.add_argument(
        "--test-keys", action="store_true", help="allow 512-1024-bit keys (insecure; say so)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = load_average()
    results = []
    for workers, owners in ((w, n) for w in args.workers for n in args.owners):
        print(f"running {owners} owners ...", file=sys.stderr, flush=True)
        results.append(run_size(owners, args, workers))
        r = results[-1]
        print(
            f"  {owners} owners, {r.workers} worker(s): training {r.training:.1f} s, "
            f"metrics {r.metrics:.1f} s, contributions {r.contributions:.1f} s, "
            f"whole run {r.total:.1f} s"
            + (f", then verified in {r.verify_seconds:.1f} s: {r.verified}" if args.verify else "")
            + f" (load average {load_average()})",
            file=sys.stderr,
            flush=True,
        )
    gas = {} if args.no_gas else gas_by_size(args.owners)
    facts = machine_facts()
    facts["load_average_start"] = load_start
    facts["load_average_end"] = load_average()
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "scale",
                    "machine": facts,
                    "runs": 1,
                    "sizes": [asdict(r) for r in results],
                    "gas_by_owners": gas,
                },
                indent=2,
            )
        )
        return 0
    print(f"Machine: {machine_line(facts)}")
    print(
        f"Load average (1/5/15 min) at start {facts['load_average_start']}, "
        f"at end {facts['load_average_end']}"
    )
    print(
        f"One run per size; {args.key_bits}-bit keys, "
        f"{'one exact solve' if args.solver == 'exact' else f'{args.rounds} rounds'}, "
        f"{args.rows} rows x {args.features} features per owner; metric protocol "
        f"{args.metric_protocol}; Shapley values exact; "
        "exponent in brackets: growth from the previous size"
    )
    print(table(results))
    print()
    print("CPU seconds, central (aggregator and buyer) / owners:")
    print(cpu_table(results))
    print()
    if args.verify:
        print("deltaml verify on each run's transcript, with its sealed ciphertexts:")
        print(format_table(
            ["owners", "verify", "every check passed"],
            [[str(r.owners), f"{r.verify_seconds:.1f} s", str(r.verified)] for r in results],
        ))  # fmt: skip
        print()
    if args.metric_protocol == "rotation":
        print(mix_table(results))
    if gas:
        print()
        print("Contract gas per call (mined receipts, embedded chain; the largest where")
        print("several seats make the same call; only Merkle proofs grow, as log2 seats):")
        print(gas_table(gas))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
