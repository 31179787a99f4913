"""Benchmark: the remaining targets of issue 2, each runnable on its own.

``logistic``  breast cancer (80/20 stratified split, seed 0), 5 owners, logistic
              regression (second-order Taylor loss): test AUC next to scikit-learn's
              ``LogisticRegression`` on the same trainers' rows (target: within 0.01).
``synthetic`` 100 owners x 1,000 rows x 20 features (``make_synthetic``, seed 0; a
              101st owner's rows are the held-out test set), linear regression: total
              seconds (target: at most 5 minutes), with the validation metric evaluated
              once (``--eval-every`` = rounds by default) and its cost reported apart.

Usage::

    python bench/targets.py                 # both
    python bench/targets.py logistic --json
    python bench/targets.py synthetic --owners 100 --rows 1000 --features 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CountingTransport,
    TargetRow,
    fmt_gap,
    format_table,
    load_average,
    machine_facts,
    machine_line,
    operations_since,
    targets_table,
)
from deltaml.crypto import OPERATION_COUNTS
from deltaml.errors import DeltaMLError
from deltaml.learning.data import (
    Dataset,
    load_dataset,
    make_synthetic,
    split_owners,
    train_test_split,
)
from deltaml.ledger.payouts import MAX_PARTICIPANTS
from deltaml.roles.aggregator import RoundRecord
from deltaml.simulation import DEFAULT_ROUNDS, SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport.base import Transport

TARGET_AUC_DELTA = 0.01
TARGET_SYNTHETIC_SECONDS = 300.0
GOALS = {"logistic": f"AUC within {TARGET_AUC_DELTA}", "synthetic": "<= 300 s"}


@dataclass
class CaseResult:
    """One target case: the configuration, what was measured, and the verdict."""

    case: str
    description: str
    owners: int
    trainers: int
    validators: int
    rows_per_owner: float
    features: int
    key_bits: int
    rounds: int
    eval_every: int
    refreshes: int
    evaluations: int
    #: ``simulate_shares`` wall clock: key generation, owners, protocol, final model.
    total_seconds: float
    keygen_seconds: float
    setup_seconds: float
    training_seconds: float
    metric_seconds: float
    contribution_seconds: float
    #: Checking the run's transcript after it (``deltaml verify``); part of the total.
    verify_seconds: float
    per_round_seconds: float
    products_per_round: float
    products_per_evaluation: float
    products_contributions_validators: int
    contributions: bool
    chain: bool
    verify: bool
    operations: dict[str, int]
    objective_gap: float
    test: dict[str, float]
    targets: list[TargetRow] = field(default_factory=list)


def _simulate(
    config: SimulationConfig, model: str, task: str, shares: list[Dataset], test: Dataset
) -> tuple[SimulationResult, CountingTransport, dict[str, int], float]:
    counting: list[CountingTransport] = []

    def wrap(inner: Transport) -> Transport:
        counting.append(CountingTransport(inner))
        return counting[0]

    def progress(record: RoundRecord) -> None:
        # On stderr as it happens, so a long run that is cut short still leaves its rounds.
        metric = "" if record.metric is None else f", metric {record.metric:.6g}"
        elapsed = time.perf_counter() - t0
        print(
            f"  round {record.round}: {record.seconds:.2f} s{metric} (elapsed {elapsed:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    before = Counter(OPERATION_COUNTS)
    t0 = time.perf_counter()
    result = simulate_shares(config, model, task, shares, test, progress, wrap)
    wall = time.perf_counter() - t0
    return result, counting[0], operations_since(before), wall


def _case(
    case: str,
    description: str,
    config: SimulationConfig,
    result: SimulationResult,
    transport: CountingTransport,
    ops: dict[str, int],
    wall: float,
    rows_per_owner: float,
    features: int,
) -> CaseResult:
    rounds = len(result.rounds)
    evaluations = sum(1 for r in result.rounds if r.metric is not None)
    evaluations += result.initial_metric is not None
    metric_products = transport.scalar_mul("EvaluateRequest")
    return CaseResult(
        case=case,
        description=description,
        owners=config.owners,
        trainers=len(result.trainers),
        validators=len(result.validators),
        rows_per_owner=rows_per_owner,
        features=features,
        key_bits=config.key_bits,
        rounds=rounds,
        eval_every=config.eval_every,
        refreshes=result.refreshes,
        evaluations=evaluations,
        total_seconds=wall,
        keygen_seconds=result.keygen_seconds,
        setup_seconds=result.setup_seconds,
        training_seconds=result.training_seconds,
        metric_seconds=result.metric_seconds,
        contribution_seconds=result.contribution_seconds,
        verify_seconds=float(getattr(result, "verify_seconds", 0.0)),
        per_round_seconds=result.training_seconds / rounds,
        products_per_round=transport.scalar_mul("RoundRequest") / rounds,
        products_per_evaluation=metric_products / max(evaluations, 1),
        products_contributions_validators=transport.scalar_mul("ContributionRequest"),
        contributions=config.contributions,
        chain=config.chain,
        verify=config.verify,
        operations=ops,
        objective_gap=result.objective_gap,
        test=dict(result.test),
    )


def run_logistic(args: argparse.Namespace) -> CaseResult:
    config = SimulationConfig(
        dataset="breast_cancer",
        owners=args.owners or 5,
        key_bits=args.key_bits,
        rounds=args.rounds,
        seed=args.seed,
        eval_every=args.eval_every or 1,
        contributions=not args.no_contributions,
        verify=not args.no_verify,
        chain=not args.no_chain,
        allow_test_keys=args.test_keys,
    )
    data = load_dataset(config.dataset)
    train, test = train_test_split(data, config.test_fraction, config.seed)
    shares = split_owners(train, config.owners, seed=config.seed)
    result, transport, ops, wall = _simulate(config, "logistic", "classification", shares, test)
    out = _case(
        "logistic",
        "breast_cancer, logistic (Taylor), 80/20 stratified split",
        config,
        result,
        transport,
        ops,
        wall,
        train.n_rows / config.owners,
        data.n_features,
    )
    delta = out.test["sklearn_test_auc"] - out.test["test_auc"]
    out.targets.append(
        TargetRow(
            "breast_cancer test AUC vs scikit-learn",
            f"{out.test['test_auc']:.4f} vs {out.test['sklearn_test_auc']:.4f}",
            f"within {TARGET_AUC_DELTA}",
            delta <= TARGET_AUC_DELTA,
        )
    )
    best = out.test["optimum_test_auc"]
    out.targets.append(
        TargetRow(
            "  test AUC vs the exact logistic optimum (our l2, standardized)",
            f"{out.test['test_auc']:.4f} vs {best:.4f}",
            f"within {TARGET_AUC_DELTA}",
            best - out.test["test_auc"] <= TARGET_AUC_DELTA,
        )
    )
    return out


def run_synthetic(args: argparse.Namespace) -> CaseResult:
    owners = args.owners or 100
    rounds = args.rounds
    config = SimulationConfig(
        dataset="synthetic",
        owners=owners,
        key_bits=args.key_bits,
        rounds=rounds,
        seed=args.seed,
        eval_every=args.eval_every or rounds,
        contributions=not args.no_contributions,
        verify=not args.no_verify,
        chain=not args.no_chain and owners <= MAX_PARTICIPANTS,
        allow_test_keys=args.test_keys,
    )
    # One more owner than needed: its rows, from the same distribution, are the test set.
    data = make_synthetic(owners + 1, args.rows, args.features, seed=args.seed)
    shares, test = data[:owners], data[owners]
    result, transport, ops, wall = _simulate(config, "linear", "regression", shares, test)
    out = _case(
        "synthetic",
        f"make_synthetic: {owners} owners x {args.rows} rows x {args.features} features, linear",
        config,
        result,
        transport,
        ops,
        wall,
        float(args.rows),
        args.features,
    )
    out.targets.append(
        TargetRow(
            f"{owners} owners x {args.rows} rows x {args.features} features: total seconds",
            f"{wall:.1f}",
            f"<= {TARGET_SYNTHETIC_SECONDS:.0f}",
            wall <= TARGET_SYNTHETIC_SECONDS,
        )
    )
    if config.contributions:
        rest = wall - out.contribution_seconds
        out.targets.append(
            TargetRow(
                "  the same without contributions (measured total - measured contributions)",
                f"{rest:.1f}",
                f"<= {TARGET_SYNTHETIC_SECONDS:.0f}",
                rest <= TARGET_SYNTHETIC_SECONDS,
            )
        )
    return out


def print_case(res: CaseResult) -> None:
    print(f"## {res.case}: {res.description}")
    print(
        f"{res.owners} owners ({res.trainers} trainers, {res.validators} validators), "
        f"{res.rows_per_owner:.0f} rows each, {res.features} features, {res.key_bits}-bit keys, "
        f"{res.rounds} rounds, metric every {res.eval_every} round(s)"
    )
    rows = [
        ["total (simulate_shares wall clock)", f"{res.total_seconds:.2f}"],
        ["  key generation", f"{res.keygen_seconds:.2f}"],
        ["  setup (standardization, trainers' matrices)", f"{res.setup_seconds:.2f}"],
        [
            f"  training ({res.rounds} rounds, {res.refreshes} refreshes)",
            f"{res.training_seconds:.2f}",
        ],
        [
            f"  metrics ({res.evaluations} evaluations, incl. the initial model)",
            f"{res.metric_seconds:.2f}",
        ],
        [
            "  contributions (Shapley)" + ("" if res.contributions else ": skipped"),
            f"{res.contribution_seconds:.2f}",
        ],
        ["  transcript verification", f"{res.verify_seconds:.2f}"],
        ["per round (training)", f"{res.per_round_seconds:.3f}"],
    ]
    print(format_table(["seconds", "value"], rows))
    print(
        f"products: {res.products_per_round:.0f}/round by the trainers, "
        f"{res.products_per_evaluation:.0f}/evaluation by the validators, "
        f"{res.products_contributions_validators} for contributions by the validators; "
        f"all operations {res.operations}"
    )
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in res.test.items())
    print(f"train objective gap {fmt_gap(res.objective_gap)}; {metrics}")
    print()


CASES = {"logistic": run_logistic, "synthetic": run_synthetic}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", default="all", choices=["all", *CASES])
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument(
        "--eval-every", type=int, default=None, help="default: 1 (logistic), rounds (synthetic)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--owners", type=int, default=None, help="default: 5 (logistic), 100 (synthetic)"
    )
    p.add_argument("--rows", type=int, default=1000, help="synthetic: rows per owner")
    p.add_argument("--features", type=int, default=20, help="synthetic: features")
    p.add_argument("--no-contributions", action="store_true", help="skip the Shapley contributions")
    p.add_argument(
        "--no-verify", action="store_true", help="skip checking the transcript after the run"
    )
    p.add_argument(
        "--no-chain",
        action="store_true",
        help="skip escrow and settlement on the embedded chain (synthetic: always "
        f"skipped above {MAX_PARTICIPANTS} owners, the most the contract seats)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--test-keys", action="store_true", help="allow 512-1024-bit keys (smoke tests; insecure)"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(CASES) if args.case == "all" else [args.case]
    load_start = load_average()
    results = []
    errors: dict[str, str] = {}
    targets: list[TargetRow] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            result = CASES[name](args)
        except DeltaMLError as exc:  # a limit of the protocol: report it, not a traceback
            errors[name] = f"{type(exc).__name__}: {exc}"
            targets.append(TargetRow(name, f"did not run ({exc})", GOALS[name], False))
            continue
        results.append(result)
        targets.extend(result.targets)
    facts = machine_facts()
    facts["load_average_start"] = load_start
    facts["load_average_end"] = load_average()
    if args.json:
        out = {
            "benchmark": "targets",
            "machine": facts,
            "runs": 1,
            "cases": {r.case: asdict(r) for r in results},
            "errors": errors,
            "targets": [asdict(t) for t in targets],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"Machine: {machine_line(facts)}")
    print(
        f"Load average (1/5/15 min) at start {facts['load_average_start']}, "
        f"at end {facts['load_average_end']}"
    )
    print("Runs: 1 per case")
    print()
    for r in results:
        print_case(r)
    for name, message in errors.items():
        print(f"## {name}: did not run: {message}")
        print()
    print("Targets (issue 2):")
    print(targets_table(targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
