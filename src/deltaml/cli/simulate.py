"""``deltaml simulate``: a whole marketplace in one process, and its report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaml.cli.common import positive_int, wei
from deltaml.cli.report import print_report
from deltaml.errors import DeltaMLValueError

if TYPE_CHECKING:
    pass

#: Where ``deltaml simulate`` writes transcripts unless told otherwise.
RUNS_DIR = Path(".deltaml") / "runs"


def add_parser(sub: Any) -> None:
    sim = sub.add_parser(
        "simulate",
        help="run a whole marketplace in one process",
        description=(
            "Run a whole marketplace in one process: split a data set over N data owners, "
            "train the buyer's model encrypted, and compare it with scikit-learn on the same split."
        ),
    )
    sim.add_argument(
        "--dataset",
        default="diabetes",
        help=(
            "diabetes, breast_cancer, iris (3 classes: one-vs-rest), or a CSV file "
            "(default: diabetes)"
        ),
    )
    sim.add_argument("--target", help="target column of a CSV file (default: the last column)")
    sim.add_argument(
        "--owners", type=positive_int, default=5, help="number of data owners (default: 5)"
    )
    sim.add_argument(
        "--model",
        choices=("linear", "logistic"),
        help="model type (default: by the data set's task)",
    )
    sim.add_argument(
        "--key-bits",
        type=int,
        default=2048,
        choices=(2048, 3072),
        help="Paillier key size (default: 2048)",
    )
    sim.add_argument(
        "--rounds", type=positive_int, default=None, help="training rounds (default: 12)"
    )
    sim.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data splits and the role split (default: 0)",
    )
    sim.add_argument(
        "--split-by",
        metavar="COLUMN",
        help="deal rows out by this column (non-iid) instead of at random",
    )
    sim.add_argument(
        "--eval-every",
        type=positive_int,
        default=3,
        help=(
            "evaluate the validation metric every N rounds, the initial model and the "
            "last round always (default: 3; each evaluation is one more number the buyer "
            "learns about the validation data and costs a proven decryption: 3 keeps "
            "metrics and contributions within half the training time)"
        ),
    )
    sim.add_argument(
        "--l2", type=float, help="ridge penalty (default: 0 for linear, 0.003 for logistic)"
    )
    sim.add_argument(
        "--deposit-wei",
        type=wei,
        default=10**18,
        metavar="WEI",
        help="the buyer's payment, split by the payment rule (default: 10**18)",
    )
    sim.add_argument(
        "--transcript",
        metavar="PATH",
        help=(
            "write the run's transcript here; its sealed ciphertexts go next to it as "
            "*.sealed.jsonl (default: .deltaml/runs/<timestamp>-<seed>.jsonl)"
        ),
    )
    sim.add_argument(
        "--metric-noise",
        type=float,
        default=0.0,
        metavar="STD",
        help=(
            "calibrated noise on published metrics: its standard deviation on one "
            "validator's MSE, in standardized target units (default: 0, none)"
        ),
    )
    sim.add_argument(
        "--metric-protocol",
        choices=("rotation", "gram"),
        default="rotation",
        help=(
            "rotation: each evaluation mixes every validator's residual vector (the "
            "default); gram: the validators send their encrypted Gram matrices once, and "
            "each evaluation and the contributions are masked products with the buyer, "
            "whatever the number of validators (docs/performance.md)"
        ),
    )
    sim.add_argument(
        "--target-improvement",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help=(
            "stop after the first evaluation whose validation metric is at least this "
            "many percent below the initial model's; --rounds is then the most "
            "(default: 0, train all rounds)"
        ),
    )
    sim.add_argument(
        "--solver",
        choices=("admm", "exact"),
        default=None,
        help=(
            "admm: rounds (the default for one model); exact: one masked solve to the "
            "optimum, its metric, contributions and settlement (docs/exactness.md; the "
            "default, and the only solver, for a target of more than two classes)"
        ),
    )
    sim.add_argument(
        "--disclose-model",
        action="store_true",
        help="solver exact: the buyer publishes its model so that verify checks H·w = g",
    )
    chain = sim.add_mutually_exclusive_group()
    chain.add_argument(
        "--chain-url",
        metavar="URL",
        help=(
            "escrow and settle on this Ethereum JSON-RPC node, e.g. a local anvil at "
            "http://127.0.0.1:8545 (default: the embedded in-process chain)"
        ),
    )
    chain.add_argument("--no-chain", action="store_true", help="skip escrow and settlement")
    sim.add_argument(
        "--model-out",
        metavar="PATH",
        help=(
            "write the trained model here: a .onnx path gives ONNX (needs the onnx extra), "
            "any other the JSON model file (deltaml.estimator.TrainedModel.load reads it)"
        ),
    )
    sim.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a report"
    )
    sim.add_argument(
        "--missing",
        default="",
        metavar="COLS",
        help="CSV only: comma-separated columns whose empty cells are filled in "
        "(0 plus an indicator column <name>__missing: mean imputation for a linear model)",
    )
    sim.add_argument(
        "--no-missing-indicator",
        action="store_true",
        help="with --missing: fill empty numeric cells with the federated mean of their "
        "column, no indicator column (mean imputation)",
    )
    sim.add_argument(
        "--categorical",
        action="append",
        default=[],
        metavar="COL=L1,L2,…",
        help="CSV only: a categorical column and its levels, the first the reference "
        "(one-hot; another level counts as the first); repeat for more columns",
    )
    sim.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="answer the owners in N processes, one core each (1: all in one process; "
        "default: one per core while each gets 8 owners or more, else 1)",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from deltaml.simulation import DEFAULT_ROUNDS, SimulationConfig, load_data, run_simulation

    config = SimulationConfig(
        dataset=args.dataset,
        target=args.target,
        owners=args.owners,
        model=args.model,
        key_bits=args.key_bits,
        rounds=args.rounds or DEFAULT_ROUNDS,
        seed=args.seed,
        split_by=args.split_by,
        eval_every=args.eval_every,
        l2=args.l2,
        deposit_wei=args.deposit_wei,
        transcript=args.transcript or str(_default_transcript(args.seed)),
        chain=not args.no_chain,
        metric_noise=args.metric_noise,
        metric_protocol=args.metric_protocol,
        target_improvement=args.target_improvement,
        chain_url=args.chain_url,
        solver=args.solver or "admm",
        disclose_model=args.disclose_model,
        workers=args.workers,
    )
    table = bool(args.missing or args.categorical)
    data = None if table else load_data(config)
    classes = len(data.classes or ()) if data is not None and config.model != "linear" else 0
    if args.solver is None and classes > 2 and args.chain_url is None:
        # more than two classes: one exact solve, without a chain (nothing to pay by yet)
        config = dataclasses.replace(config, solver="exact", chain=False, contributions=False)
        print(
            f"{args.dataset}: {classes} classes, fitted together by one exact solve "
            "(no chain: a model of several classes has no metric to pay by yet)",
            file=sys.stderr,
        )
    if args.model_out:
        _check_model_out(Path(args.model_out))
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(
            total=config.rounds,
            desc="training",
            unit="round",
            file=sys.stderr,
            leave=False,
            disable=None,
        )

    def progress(rec: object) -> None:
        if bar is None:
            return
        metric = getattr(rec, "metric", None)
        if metric is not None:
            bar.set_postfix_str(f"validation {metric:.6g}")
        bar.update(1)

    try:
        if table:
            result = _run_table(config, args, progress)
        else:
            result = run_simulation(config, progress=progress, data=data)
    finally:
        if bar is not None:
            bar.close()
    if args.model_out:
        saved = result.trained_model().save(args.model_out)
        if not args.json:
            print(f"model written to {saved}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print_report(result)
    return 0


def _run_table(config: Any, args: argparse.Namespace, progress: Any) -> Any:
    """A CSV with empty cells or categorical columns (``--missing``, ``--categorical``)."""
    from deltaml.simulation_tabular import run_table_simulation

    categorical: dict[str, list[str]] = {}
    for item in args.categorical:
        name, sep, levels = item.partition("=")
        if not sep or not name.strip():
            raise DeltaMLValueError(f"--categorical {item!r}: write COLUMN=LEVEL1,LEVEL2,…")
        categorical[name.strip()] = [v.strip() for v in levels.split(",")]
    missing = [c.strip() for c in args.missing.split(",") if c.strip()]
    run = run_table_simulation(
        config, missing, categorical, progress, missing_indicator=not args.no_missing_indicator
    )
    if not args.json:
        for oid, notes in run.notes.items():
            for note in notes:
                print(f"{oid}: {note}", file=sys.stderr)
    return run.result


def _check_model_out(path: Path) -> None:
    """Refuse a --model-out the run could not write, before the run."""
    if path.is_dir():
        raise DeltaMLValueError(f"--model-out {path} is a folder; give a file path")
    if not path.parent.is_dir():
        raise DeltaMLValueError(f"--model-out: folder {path.parent} does not exist")
    if path.suffix.lower() == ".onnx":
        try:
            import skl2onnx  # noqa: F401
        except ImportError:
            raise DeltaMLValueError(
                "--model-out *.onnx needs skl2onnx: pip install 'deltaml[onnx]'"
            ) from None


def _default_transcript(seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RUNS_DIR / f"{stamp}-{seed}.jsonl"
    counter = 2
    while path.exists():
        path = RUNS_DIR / f"{stamp}-{seed}-{counter}.jsonl"
        counter += 1
    return path
