"""The ``deltaml`` command: thin — parses, builds settings, calls in.

Errors a user can cause (bad data, bad options, a missing or malformed file) end
with one line on stderr and exit code 1, never a traceback. ``deltaml verify``
exits 0 when every check passes and 3 when any fails, naming each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deltaml import __version__
from deltaml.errors import DeltaMLError, DeltaMLValueError

if TYPE_CHECKING:
    from deltaml.evidence.verify import VerificationReport

EXIT_USAGE = 2
EXIT_ERROR = 1
#: ``deltaml verify``: the transcript was read, and some check failed.
EXIT_NOT_VERIFIED = 3

#: Where ``deltaml simulate`` writes transcripts unless told otherwise.
RUNS_DIR = Path(".deltaml") / "runs"

log = logging.getLogger("deltaml")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _wei(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of wei, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltaml",
        description="DeltaML: models trained on data the buyer never sees.",
    )
    parser.add_argument("--version", action="version", version=f"deltaml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log protocol steps to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        "--owners", type=_positive_int, default=5, help="number of data owners (default: 5)"
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
        "--rounds", type=_positive_int, default=None, help="training rounds (default: 12)"
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
        type=_positive_int,
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
        type=_wei,
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
        default="admm",
        help=(
            "admm: rounds (default); exact: one masked solve to the optimum "
            "(docs/exactness.md; with --no-chain, no contributions)"
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
    sim.add_argument("--quiet", action="store_true", help="no progress bar")

    ver = sub.add_parser(
        "verify",
        help="check a run's transcript: signatures, proofs and every published number",
        description=(
            "Check a transcript: its hash chain, every signature against the declared "
            "participant, every decryption proof, that every published metric, contribution "
            "and payout recomputes, and (with the sealed ciphertexts) every homomorphic sum "
            "and re-randomization. With --chain-url and --request-id, also that it is the "
            "evidence of that request on chain: evidence hash, key fingerprint, buyer, "
            "aggregator, seats, spec hash, deposit and the numbers posted. "
            "Exit codes: 0 verified, 3 a check failed, 1 unreadable."
        ),
    )
    ver.add_argument("transcript", metavar="TRANSCRIPT", help="the public transcript (.jsonl)")
    sealed = ver.add_mutually_exclusive_group()
    sealed.add_argument(
        "--sealed",
        metavar="PATH",
        help="the sealed ciphertexts (default: TRANSCRIPT's *.sealed.jsonl, when present)",
    )
    sealed.add_argument(
        "--public-only",
        action="store_true",
        help="ignore any sealed ciphertexts: check only what the public can",
    )
    ver.add_argument(
        "--head",
        metavar="SHA256",
        help="the transcript hash published on the contract: the last record must hash to it",
    )
    _chain_options(ver, required=False)
    ver.add_argument("--json", action="store_true", help="print the report as one JSON object")

    arb = sub.add_parser(
        "arbiter",
        help="resolve a disputed request as its arbiter",
        description=(
            "The arbiter a request names resolves a dispute: it checks the transcript "
            "against the chain (as `deltaml verify --chain-url` does) and upholds the "
            "posted result if it verifies, or voids it (the buyer's deposit comes back)."
        ),
    )
    arb_sub = arb.add_subparsers(dest="action", metavar="ACTION", required=True)
    res = arb_sub.add_parser(
        "resolve",
        help="verify a disputed request's transcript against the chain and resolve it",
        description=(
            "Verify TRANSCRIPT against request --request-id on the chain, then call "
            "resolve(id, upheld) with the arbiter's key: upheld when every check passes, "
            "voided otherwise. The keystore's password is read from $DELTAML_PASSWORD."
        ),
    )
    res.add_argument("--transcript", required=True, metavar="PATH", help="the public transcript")
    res.add_argument(
        "--sealed",
        metavar="PATH",
        help="the sealed ciphertexts (default: TRANSCRIPT's *.sealed.jsonl, when present)",
    )
    res.add_argument(
        "--key",
        required=True,
        type=Path,
        metavar="KEYFILE",
        help="the arbiter's keystore (as the nodes keep it: account.json)",
    )
    _chain_options(res, required=True)
    res.add_argument(
        "--dry-run", action="store_true", help="say what would be decided; send nothing"
    )

    from deltaml.services.commands import add_commands

    add_commands(sub)
    return parser


def _chain_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--chain-url",
        required=required,
        metavar="URL",
        help="Ethereum JSON-RPC node holding the request: check the transcript against it",
    )
    p.add_argument(
        "--request-id",
        required=required,
        type=_positive_int,
        metavar="N",
        help="the request's id on the contract",
    )
    p.add_argument(
        "--contract",
        metavar="ADDRESS",
        help="the Marketplace contract (default: the one the transcript's final record names)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "arbiter":
            return _arbiter(args)
        from deltaml.services.commands import run_command

        return run_command(args)
    except DeltaMLError as exc:
        print(f"deltaml {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"deltaml {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (``| head``): say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _simulate(args: argparse.Namespace) -> int:
    from deltaml.simulation import DEFAULT_ROUNDS, SimulationConfig, run_simulation

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
        target_improvement=args.target_improvement,
        chain_url=args.chain_url,
        solver=args.solver,
        contributions=args.solver != "exact",  # not measured by the exact solve yet
        disclose_model=args.disclose_model,
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
        result = run_simulation(config, progress=progress)
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
    _print_report(result)
    return 0


def _check_model_out(path: Path) -> None:
    """Refuse a --model-out the run could not write, before the run."""
    from deltaml.errors import DeltaMLValueError

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


def _verify(args: argparse.Namespace) -> int:
    from deltaml.evidence.verify import verify_transcript

    if (args.chain_url is None) != (args.request_id is None):
        raise DeltaMLValueError("--chain-url and --request-id go together")
    if args.contract is not None and args.chain_url is None:
        raise DeltaMLValueError("--contract needs --chain-url and --request-id")
    report = verify_transcript(
        args.transcript,
        args.sealed,
        use_sealed=not args.public_only,
        expected_head=args.head,
    )
    if args.chain_url is not None:
        _check_chain(report, args)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else EXIT_NOT_VERIFIED


def _contract(args: argparse.Namespace, report: VerificationReport) -> str:
    """``--contract``, or the contract the transcript's final record names."""
    if args.contract is not None:
        return str(args.contract)
    named = report.settlement.contract if report.settlement is not None else None
    if not named:
        raise DeltaMLValueError(
            f"{args.transcript} names no contract in its final record; pass --contract"
        )
    return named


def _check_chain(report: VerificationReport, args: argparse.Namespace) -> None:
    from deltaml.evidence.chain import open_reader
    from deltaml.evidence.verify import check_against_chain

    reader = open_reader(args.chain_url, _contract(args, report))
    check_against_chain(
        report, reader, args.request_id, contract_from_transcript=args.contract is None
    )


def _arbiter(args: argparse.Namespace) -> int:
    """``deltaml arbiter resolve``: verify against the chain, then uphold or void."""
    from deltaml.evidence.chain import open_reader
    from deltaml.evidence.verify import check_against_chain, verify_transcript
    from deltaml.ledger.accounts import load_keystore
    from deltaml.ledger.base import RequestStatus
    from deltaml.services.serve import password_from_env

    account = load_keystore(args.key, password_from_env())
    report = verify_transcript(args.transcript, args.sealed)
    reader = open_reader(args.chain_url, _contract(args, report))
    rid = args.request_id
    state = reader.request(rid)
    if state.arbiter.lower() != str(account.address).lower():
        raise DeltaMLValueError(
            f"{account.address} is not the arbiter of request {rid}"
            f" (the request names {state.arbiter or 'none'})"
        )
    if state.status != RequestStatus.DISPUTED:
        raise DeltaMLValueError(
            f"request {rid} is {state.status.name}, not disputed: nothing to resolve"
        )
    check_against_chain(report, reader, rid)
    upheld = report.ok
    print("\n".join(report.lines()))
    verdict = "UPHELD: the posted result stands" if upheld else "VOIDED: the deposit goes back"
    reason = (
        "the transcript verifies and is this request's evidence"
        if upheld
        else f"{len(report.failures)} check(s) failed: " + "; ".join(sorted(report.failed_checks()))
    )
    if args.dry_run:
        print(f"request {rid}: would be {verdict} ({reason}); nothing sent")
        return 0
    reader.for_account(account).resolve(rid, upheld)
    print(f"request {rid}: {verdict} ({reason})")
    return 0


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _print_report(result: object) -> None:
    from deltaml.simulation import SimulationResult

    assert isinstance(result, SimulationResult)
    r = result
    metric_name = "validation MSE" if r.task == "regression" else "validation loss (Taylor)"
    print(
        f"{r.config.dataset} · {r.model} · {r.config.owners} owners "
        f"({_plural(len(r.trainers), 'trainer')}, {_plural(len(r.validators), 'validator')}) · "
        f"{r.config.key_bits}-bit Paillier"
    )
    print(f"  trainers: {', '.join(r.trainers)}   validators: {', '.join(r.validators)}")
    if r.per_class:
        print(
            f"  one-vs-rest: {len(r.per_class)} two-class runs, one per class "
            f"({', '.join(r.classes or ())}); contributions and payouts below: the runs' sums; "
            "the metric table: the first run's"
        )
    print(f"\n  round  {metric_name}")
    if r.initial_metric is not None:
        print(f"  {0:>5}  {r.initial_metric:.6g}  (initial model)")
    for rec in r.rounds:
        if rec.metric is not None:
            flag = "  (refreshed)" if rec.refreshed else ""
            print(f"  {rec.round:>5}  {rec.metric:.6g}{flag}")
    if r.config.solver == "exact":
        print("  one exact solve (no rounds): the model is the optimum of the trainers' system")
    elif len(r.rounds) < r.config.rounds:
        print(
            f"  stopped after round {r.rounds[-1].round}: the target of "
            f"{r.config.target_improvement:g} % improvement was reached"
        )
    print(
        f"\n{len(r.rounds)} rounds in {r.seconds:.2f} s "
        f"(set-up {r.setup_seconds:.2f} s, training {r.training_seconds:.2f} s, "
        f"metrics {r.metric_seconds:.2f} s; "
        f"{_plural(r.refreshes, 'refresh', 'refreshes')})"
    )
    print(
        f"  objective gap to the exact centralized optimum: {r.objective_gap:.3g} "
        f"({100 * r.objective_gap:.4f} %)"
    )
    t = r.test
    note = f"   ({r.baseline_note})" if r.baseline_note else ""
    if "optimum_test_mse" in t:
        ratio = t["test_mse"] / t["optimum_test_mse"]
        print(
            f"  test MSE {t['test_mse']:.6g}   exact optimum {t['optimum_test_mse']:.6g}"
            f"   ratio {ratio:.6f}"
        )
        if r.baseline_note:
            print(f"  scikit-learn LinearRegression: test MSE {t['sklearn_test_mse']:.6g}{note}")
    elif "test_mse" in t:
        print(f"  test MSE {t['test_mse']:.6g}   scikit-learn {t['sklearn_test_mse']:.6g}")
    if "optimum_test_auc" in t:
        print(
            f"  test AUC {t['test_auc']:.4f}   optimum (logistic, our l2) "
            f"{t['optimum_test_auc']:.4f}"
        )
        acc, best = t["test_accuracy"], t["optimum_test_accuracy"]
        print(f"  test accuracy {acc:.4f}   optimum {best:.4f}")
        if r.baseline_note:
            print(
                f"  scikit-learn default: AUC {t['sklearn_test_auc']:.4f}, "
                f"accuracy {t['sklearn_test_accuracy']:.4f}{note}"
            )
    elif "test_auc" in t:
        print(f"  test AUC {t['test_auc']:.4f}   scikit-learn {t['sklearn_test_auc']:.4f}")
        acc, sk_acc = t["test_accuracy"], t["sklearn_test_accuracy"]
        print(f"  test accuracy {acc:.4f}   scikit-learn {sk_acc:.4f}")
    if r.contributions:
        print("\n  contributions (Shapley value, validation SSE; weight of the trainers' pool)")
        for oid, phi, weight in zip(
            r.trainers, r.contributions, r.contribution_weights, strict=True
        ):
            print(f"    {oid:<12} {phi:>12.6g}   {weight / 10**4:6.2f} %")
    paid = r.settlement.withdrawn_wei if r.settlement else {}
    where = f"withdrawn on the {r.settlement.chain} chain" if r.settlement else "by the rule"
    deposits = (
        f"{len(r.per_class)} deposits of {r.config.deposit_wei} wei (one per class)"
        if r.per_class
        else f"a {r.config.deposit_wei} wei deposit"
    )
    if r.config.solver == "exact":
        print("\n  no settlement yet with solver exact (docs/exactness.md)")
    else:
        print(f"\n  payouts of {deposits} ({where})")
        for pid, wei in r.payouts_wei.items():
            print(f"    {pid:<12} {paid.get(pid, wei):>24} wei")
        print(f"    {'refund':<12} {paid.get('buyer', r.refund_wei):>24} wei")
    if r.settlement is not None:
        st = r.settlement
        print(
            f"    contract {st.contract}, request {st.request_id}: {st.status}, "
            f"{st.transactions} transactions, {st.gas_used} gas"
        )
    if r.verification is not None:
        v = r.verification
        status = "verified" if v.ok else "NOT verified: " + "; ".join(map(str, v.failures[:3]))
        print(f"\n  transcript {r.transcript or '(in memory)'}: {status} ({v.records} records,")
        print(f"    hash {r.transcript_head}; checked in {r.verify_seconds:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
