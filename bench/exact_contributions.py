"""Benchmark (issue 14): contributions of the exact route, and what they cost.

The exact solve values each trainer by its part ``m·H⁻¹g_i`` of the exact model
(docs/exactness.md, "Contributions"). For each case, one protocol run each way,
interleaved (``--runs`` times): the exact route without and with contributions, and the
iterative route (12 rounds) with contributions; per run the whole run's seconds and
the phases (training, metrics, contributions), and the contributions themselves —
each route's values normalized to shares of their sum, side by side, with the
Spearman rank correlation between the routes and the efficiency check of the exact
route's values (they add up to the exact model's improvement).

Cases: diabetes, 5 iid owners (4 trainers); the 20,000 × 30 synthetic regression with
feature scales 10⁻³…10³ dealt out non-iid by a column to 10 owners (bench/exact.py's).
Keys: ``--key-bits`` (2048). Chain and verification off (they do not change the
contributions); the transcripts verify in the test suite.

Usage::

    python bench/exact_contributions.py            # both cases, 3 runs (~4 min)
    python bench/exact_contributions.py --runs 1 --cases diabetes
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deltaml.learning.data import Dataset, load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from exact import scaled_regression


def _run(
    config: SimulationConfig, data: Dataset, split_by: str | None
) -> tuple[float, SimulationResult]:
    train, test = train_test_split(data, config.test_fraction, config.seed)
    shares = split_owners(train, config.owners, seed=config.seed, by=split_by)
    t0 = time.perf_counter()
    result = simulate_shares(config, "linear", "regression", shares, test)
    return time.perf_counter() - t0, result


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--key-bits", type=int, default=2048)
    p.add_argument("--cases", nargs="+", default=["diabetes", "scaled"])
    args = p.parse_args(argv)
    base = SimulationConfig(
        key_bits=args.key_bits,
        allow_test_keys=args.key_bits < 2048,
        chain=False,
        verify=False,
        eval_every=12,
    )
    cases = {
        "diabetes": ("diabetes, 5 owners", load_dataset("diabetes"), None, 5),
        "scaled": (
            "20,000 × 30, scales 1e-3..1e3, non-iid by x0",
            scaled_regression(20_000, 30),
            "x0",
            10,
        ),
    }
    ways = {
        "exact, no contributions": dict(solver="exact", contributions=False),
        "exact + contributions": dict(solver="exact", contributions=True),
        "12 rounds + contributions": dict(solver="admm", contributions=True),
    }
    print(f"{args.key_bits}-bit keys, {args.runs} run(s) each way, interleaved; seconds")
    for name in args.cases:
        title, data, split_by, owners = cases[name]
        seconds: dict[str, list[float]] = {w: [] for w in ways}
        phases: dict[str, list[tuple[float, float, float]]] = {w: [] for w in ways}
        last: dict[str, SimulationResult] = {}
        for _ in range(args.runs):
            for way, kw in ways.items():
                config = replace(base, owners=owners, **kw)  # type: ignore[arg-type]
                s, result = _run(config, data, split_by)
                seconds[way].append(s)
                phases[way].append(
                    (result.training_seconds, result.metric_seconds, result.contribution_seconds)
                )
                last[way] = result
        print(f"\n{title}")
        print(
            f"  {'':28s} {'whole run (median)':>19s} {'training':>9s} {'metrics':>8s}"
            f" {'contrib.':>9s}"
        )
        for way in ways:
            med = [statistics.median(p[i] for p in phases[way]) for i in range(3)]
            runs = ", ".join(f"{v:.2f}" for v in seconds[way])
            print(
                f"  {way:28s} {statistics.median(seconds[way]):19.2f} "
                f"{med[0]:9.2f} {med[1]:8.2f} {med[2]:9.2f}   runs: {runs}"
            )
        exact, admm = last["exact + contributions"], last["12 rounds + contributions"]
        phi_e, phi_a = np.asarray(exact.contributions), np.asarray(admm.contributions)
        print("  contributions (share of their sum), trainer by trainer:")
        for t, e, a in zip(exact.trainers, phi_e / phi_e.sum(), phi_a / phi_a.sum(), strict=True):
            print(f"    {t:10s} exact {e:+.3f}   rounds {a:+.3f}")
        print(f"  Spearman rank correlation exact vs rounds: {_spearman(phi_e, phi_a):+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
