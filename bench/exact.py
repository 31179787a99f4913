"""Benchmark (issue 14): the trained model side by side with the exact optimum, one run.

Every case runs the encrypted protocol end to end (``simulate_shares``) and compares
it with the exact minimizer of the same training objective on the same split
(:mod:`deltaml.learning.baseline`: least squares with the run's ``l2`` on the
protocol's standardization, solved to machine precision):

- diabetes, 5 iid owners, seeds 0–9 (the 80/20 split and the owners' shuffle both
  follow the seed): objective gap, and test MSE relative to the optimum's;
- a 20,000 × 30 synthetic regression with feature scales 10⁻³…10³, 80/20 split,
  dealt out non-iid by a column (``split_owners(by=...)``) to 10 owners;
- linnerud (20 rows; target ``Weight``), 2 owners (one trainer, one validator);
- diabetes, 5 owners, at ``--timing-bits`` (2048): training seconds of today's
  protocol with 12 rounds (the reference) and of ``--solver`` if it is not that,
  ``--timing-runs`` times each, interleaved (reference, ours, reference, ...), with the
  medians and the median of the pairwise ratios (a loaded machine moves both alike).

Targets: every gap ≤ 10⁻⁶ and every test MSE equal to the optimum's to 10⁻⁶
relative; the training time no worse than the 12-round reference in the same run.
The sweeps use ``--key-bits`` (by default 1024-bit test keys for ADMM, whose exactness
does not depend on the key size, and 2048 bits for the exact solve, whose precision
``2^-p`` the key size bounds: ``p = 15`` at 1024 bits for 31 weights) and skip
contributions, the chain and transcript verification, which do not change the model.
The exact solve runs through the roles, as ``deltaml simulate --solver exact`` does.

Usage::

    python bench/exact.py                 # everything (~2 min)
    python bench/exact.py --seeds 2 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TargetRow, format_table, machine_facts, machine_line, targets_table
from deltaml.learning.data import Dataset, load_dataset, split_owners, train_test_split
from deltaml.simulation import DEFAULT_ROUNDS, SimulationConfig, simulate_shares

TARGET_GAP = 1e-6
TARGET_MSE_REL = 1e-6


@dataclass
class Run:
    case: str
    seed: int
    owners: int
    key_bits: int
    solver: str
    rounds: int
    objective_gap: float
    test_mse: float
    optimum_test_mse: float
    sklearn_test_mse: float
    baseline_note: str
    training_seconds: float
    seconds: float

    @property
    def mse_rel(self) -> float:
        return self.test_mse / self.optimum_test_mse - 1.0


def scaled_regression(rows: int, features: int, seed: int = 0) -> Dataset:
    """``rows × features`` with column scales spread on a log axis over 10⁻³…10³.

    Features are ``mean_j + scale_j·z_j`` (means in ±50, scales in random column
    order); the target is ``z·w + 10·e`` with weights of random sign and magnitude
    in [0.5, 1.5] scaled so ``z·w`` has standard deviation 30: every column carries
    signal, so dropping the 10⁻³-scale ones costs accuracy.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, features))
    scales = rng.permutation(np.logspace(-3, 3, features))
    means = rng.uniform(-50, 50, features)
    w = rng.uniform(0.5, 1.5, features) * rng.choice([-1.0, 1.0], features)
    w *= 30.0 / np.linalg.norm(w)
    y = z @ w + 10.0 * rng.standard_normal(rows)
    names = tuple(f"x{j}" for j in range(features))
    return Dataset(means + z * scales, y, names, "y", "regression", "scaled-synthetic")


def linnerud() -> Dataset:
    from sklearn.datasets import load_linnerud

    raw = load_linnerud()
    return Dataset(
        raw.data,
        raw.target[:, 0],
        tuple(raw.feature_names),
        str(raw.target_names[0]),
        "regression",
        "linnerud",
    )


def run_case(
    case: str, config: SimulationConfig, data: Dataset, split_by: str | None = None
) -> Run:
    train, test = train_test_split(data, config.test_fraction, config.seed)
    shares = split_owners(train, config.owners, seed=config.seed, by=split_by)
    t0 = time.perf_counter()
    result = simulate_shares(config, "linear", "regression", shares, test)
    seconds = time.perf_counter() - t0
    t = result.test
    return Run(
        case=case,
        seed=config.seed,
        owners=config.owners,
        key_bits=config.key_bits,
        solver=config.solver,
        rounds=len(result.rounds),
        objective_gap=result.objective_gap,
        test_mse=t["test_mse"],
        optimum_test_mse=t["optimum_test_mse"],
        sklearn_test_mse=t["sklearn_test_mse"],
        baseline_note=result.baseline_note,
        training_seconds=result.training_seconds,
        seconds=seconds,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--key-bits", type=int, help="key size of the sweeps (default: 1024 admm, 2048 exact)"
    )
    p.add_argument("--timing-runs", type=int, default=5, help="timing runs of each solver")
    p.add_argument("--timing-bits", type=int, default=2048, help="key size of the timing case")
    p.add_argument("--seeds", type=int, default=10, help="diabetes seeds 0..N-1")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument(
        "--solver",
        choices=("admm", "exact"),
        default="admm",
        help="the training route to measure: admm (today's) or exact (the one-shot solve)",
    )
    p.add_argument("--no-timing", action="store_true", help="skip the 2048-bit timing case")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def base_config(args: argparse.Namespace, **kw: object) -> SimulationConfig:
    config = SimulationConfig(
        key_bits=args.key_bits,
        allow_test_keys=args.key_bits < 2048,
        rounds=args.rounds,
        eval_every=args.rounds,
        contributions=False,
        verify=False,
        chain=False,
        **kw,  # type: ignore[arg-type]
    )
    return replace(config, solver=args.solver)


def timing_runs(args: argparse.Namespace, diabetes: Dataset) -> list[Run]:
    """Reference and ours, interleaved, ``--timing-runs`` times each."""
    big = argparse.Namespace(**{**vars(args), "key_bits": args.timing_bits})
    reference = argparse.Namespace(**{**vars(big), "solver": "admm", "rounds": DEFAULT_ROUNDS})
    ours = args.solver != "admm" or args.rounds != DEFAULT_ROUNDS
    out = []
    for _ in range(max(1, args.timing_runs)):
        out.append(
            run_case("diabetes timing (reference)", base_config(reference, owners=5), diabetes)
        )
        if ours:
            out.append(run_case("diabetes timing", base_config(big, owners=5), diabetes))
    return out


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.key_bits is None:
        args.key_bits = 2048 if args.solver == "exact" else 1024
    facts = machine_facts()
    runs: list[Run] = []
    diabetes = load_dataset("diabetes")
    for seed in range(args.seeds):
        runs.append(run_case("diabetes", base_config(args, owners=5, seed=seed), diabetes))
        print(f"  diabetes seed {seed}: gap {runs[-1].objective_gap:.3g}", file=sys.stderr)
    scaled = scaled_regression(args.rows, args.features)
    runs.append(
        run_case(
            f"scaled {args.rows}x{args.features}, non-iid by x0",
            base_config(args, owners=10, seed=0),
            scaled,
            split_by="x0",
        )
    )
    print(f"  scaled: gap {runs[-1].objective_gap:.3g}", file=sys.stderr)
    runs.append(run_case("linnerud", base_config(args, owners=2, seed=0), linnerud()))
    timing = [] if args.no_timing else timing_runs(args, diabetes)

    diab = [r for r in runs if r.case == "diabetes"]
    others = [r for r in runs if r.case != "diabetes"]
    targets = [
        TargetRow(
            f"diabetes, 5 owners, seeds 0-{args.seeds - 1}: max objective gap",
            f"{max(r.objective_gap for r in diab):.3g}",
            f"<= {TARGET_GAP:g}",
            max(r.objective_gap for r in diab) <= TARGET_GAP,
        ),
        TargetRow(
            "  max |test MSE / optimum's - 1|",
            f"{max(abs(r.mse_rel) for r in diab):.3g}",
            f"<= {TARGET_MSE_REL:g}",
            max(abs(r.mse_rel) for r in diab) <= TARGET_MSE_REL,
        ),
    ]
    for r in others:
        targets.append(
            TargetRow(
                f"{r.case}, {r.owners} owners: objective gap",
                f"{r.objective_gap:.3g}",
                f"<= {TARGET_GAP:g}",
                r.objective_gap <= TARGET_GAP,
            )
        )
        targets.append(
            TargetRow(
                "  |test MSE / optimum's - 1|",
                f"{abs(r.mse_rel):.3g}",
                f"<= {TARGET_MSE_REL:g}",
                abs(r.mse_rel) <= TARGET_MSE_REL,
            )
        )
    if timing:
        refs = [r for r in timing if r.case.endswith("(reference)")]
        ours = [r for r in timing if not r.case.endswith("(reference)")] or refs
        ref_s = _median([r.training_seconds for r in refs])
        our_s = _median([r.training_seconds for r in ours])
        ratio = _median(
            [o.training_seconds / r.training_seconds for o, r in zip(ours, refs, strict=False)]
        )
        targets.append(
            TargetRow(
                f"diabetes, 5 owners, {args.timing_bits}-bit: median training seconds of "
                f"{len(ours)} runs ({ours[0].solver}, {ours[0].rounds} rounds) vs "
                f"{refs[0].rounds} ADMM rounds (median ratio {ratio:.2f})",
                f"{our_s:.2f} vs {ref_s:.2f}",
                "<= reference",
                our_s <= ref_s,
            )
        )

    if args.json:
        out = {
            "machine": facts,
            "key_bits_sweeps": args.key_bits,
            "solver": args.solver,
            "runs": [asdict(r) | {"mse_rel": r.mse_rel} for r in runs + timing],
            "targets": [asdict(t) for t in targets],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"Machine: {machine_line(facts)}")
    print(
        f"Solver: {args.solver}; sweeps at {args.key_bits}-bit keys"
        + (" (test keys)" if args.key_bits < 2048 else "")
        + f", {args.rounds} rounds; no contributions, chain or verification in the sweeps"
    )
    rows = [
        [
            r.case,
            str(r.seed),
            str(r.owners),
            str(r.rounds),
            f"{r.objective_gap:.3g}",
            f"{r.test_mse:.6g}",
            f"{r.optimum_test_mse:.6g}",
            f"{r.mse_rel:+.3g}",
            f"{r.sklearn_test_mse:.6g}" if r.baseline_note else "= optimum",
            f"{r.training_seconds:.2f}",
        ]
        for r in runs + timing
    ]
    header = [
        "case",
        "seed",
        "owners",
        "rounds",
        "obj. gap",
        "test MSE",
        "optimum's",
        "rel.",
        "scikit-learn",
        "train s",
    ]
    print(format_table(header, rows))
    for r in runs + timing:
        if r.baseline_note:
            print(f"  {r.case}: scikit-learn differs: {r.baseline_note}")
    print()
    print(targets_table(targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
