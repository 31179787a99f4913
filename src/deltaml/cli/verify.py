"""``deltaml verify`` (check a transcript, against the chain too) and ``deltaml arbiter``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaml.cli.common import EXIT_NOT_VERIFIED, chain_options
from deltaml.errors import DeltaMLValueError

if TYPE_CHECKING:
    from deltaml.evidence.verify import VerificationReport


def add_parsers(sub: Any) -> None:
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
    chain_options(ver, required=False)
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
    chain_options(res, required=True)
    res.add_argument(
        "--dry-run", action="store_true", help="say what would be decided; send nothing"
    )


def run_verify(args: argparse.Namespace) -> int:
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


def run_arbiter(args: argparse.Namespace) -> int:
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
