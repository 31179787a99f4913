"""Benchmark: more than two classes through one protocol run (issue 13's iris target).

Iris (3 classes), an 80/20 stratified split per seed, ``--owners`` owners, the whole
protocol as ``deltaml simulate --dataset iris`` runs it (class sums in the statistics
round, one exact solve of every class, the buyer's intercepts, signatures, transcript,
``deltaml verify``; no chain: a model of several classes has no metric to pay by yet).
Side by side on the same split: scikit-learn's multinomial ``LogisticRegression``
(standardized, default ``C``) and its ``LinearDiscriminantAnalysis`` trained on the
same trainers' rows. Target: our mean accuracy within 0.03 of scikit-learn's
logistic regression.

Usage::

    python bench/multiclass.py                       # seeds 0-9, 3 owners, 2048-bit
    python bench/multiclass.py --seeds 2 --key-bits 1024 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TargetRow, format_table, load_average, machine_facts, machine_line, targets_table
from deltaml.simulation import SimulationConfig, run_simulation

TARGET_ACCURACY_DELTA = 0.03


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="splits 0 .. SEEDS-1 (default 10)")
    p.add_argument("--owners", type=int, default=3)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[dict[str, float]]:
    runs = []
    for seed in range(args.seeds):
        config = SimulationConfig(
            dataset="iris",
            owners=args.owners,
            key_bits=args.key_bits,
            seed=seed,
            solver="exact",
            chain=False,
            contributions=False,
            allow_test_keys=args.key_bits < 2048,
        )
        t0 = time.perf_counter()
        result = run_simulation(config)
        wall = time.perf_counter() - t0
        t = result.test
        runs.append(
            {
                "seed": seed,
                "accuracy": t["test_accuracy"],
                "sklearn_accuracy": t["sklearn_test_accuracy"],
                "lda_accuracy": t["sklearn_lda_test_accuracy"],
                "macro_auc": t["test_auc"],
                "macro_f1": t["test_macro_f1"],
                "objective_gap": result.objective_gap,
                "verified": bool(result.verified),
                "training_seconds": result.training_seconds,
                "seconds": wall,
            }
        )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    facts = machine_facts()
    load_before = load_average()
    runs = run(args)
    ours = statistics.fmean(r["accuracy"] for r in runs)
    theirs = statistics.fmean(r["sklearn_accuracy"] for r in runs)
    targets = [
        TargetRow(
            f"iris mean test accuracy vs scikit-learn ({len(runs)} splits)",
            f"{ours:.4f} vs {theirs:.4f}",
            f"within {TARGET_ACCURACY_DELTA}",
            ours >= theirs - TARGET_ACCURACY_DELTA,
        ),
        TargetRow(
            "every objective gap (K columns)",
            f"max {max(r['objective_gap'] for r in runs):.2e}",
            "<= 1e-6",
            all(r["objective_gap"] <= 1e-6 for r in runs),
        ),
        TargetRow("every transcript verified", str(all(r["verified"] for r in runs)), "True",
                  all(r["verified"] for r in runs)),
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"machine": facts, "key_bits": args.key_bits, "owners": args.owners,
                          "runs": runs, "targets": [t.__dict__ for t in targets]}))  # fmt: skip
        return 0
    print(f"# iris, {args.owners} owners, {args.key_bits}-bit keys, one protocol run per split")
    print(machine_line(facts) + f"; load average before {load_before}, after {load_average()}\n")
    header = ["seed", "accuracy", "scikit-learn logistic", "scikit-learn LDA", "macro AUC",
              "macro F1", "objective gap", "training s", "run s"]  # fmt: skip
    rows = [
        [str(r["seed"]), f"{r['accuracy']:.4f}", f"{r['sklearn_accuracy']:.4f}",
         f"{r['lda_accuracy']:.4f}", f"{r['macro_auc']:.4f}", f"{r['macro_f1']:.4f}",
         f"{r['objective_gap']:.2e}", f"{r['training_seconds']:.2f}", f"{r['seconds']:.2f}"]
        for r in runs
    ]  # fmt: skip
    print(format_table(header, rows))
    print()
    print(targets_table(targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
