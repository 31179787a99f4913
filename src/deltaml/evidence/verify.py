r"""Check a transcript: what ``deltaml verify`` runs.

:func:`verify_transcript` reads a public transcript (and, when present, its sealed
ciphertexts; see :mod:`deltaml.evidence.transcript`) and checks, naming every
record that fails:

- **hash chain** — each record's ``seq`` and ``prev`` link it to the one before;
- **signature** and **participant** — every body is signed (EIP-191) by the address
  the record names, and that address is the participant the header declares for
  the record's party, in the role that may produce that kind of record; every body
  is bound to the request's Paillier key;
- **split** — trainers and validators are the split the header's seed gives;
- **ciphertexts** — every ciphertext matches the SHA-256 its signed body names;
- **decryption proof** — each value the buyer decrypted opens its ciphertext:
  ``c = (1 + m·n)·r^n mod n²`` (checked in batches, see :mod:`deltaml.crypto.proofs`);
  metric vectors and contribution columns are decrypted packed, so the packed
  ciphertexts are recomputed from the public ones and each opens to its proven
  plaintext (:mod:`deltaml.crypto.packing`);
- **packing** — the slot width is the one the public rule gives for the vectors'
  exponents, and every unpacked value lies within the magnitude bound;
- **statistics**, **metric**, **gram**, **shapley** — each published number equals
  the number recomputed from the proven plaintexts (metric and Gram bit for bit,
  Shapley values, exact in closed form at any number of trainers, to 1e-9), with the
  published statistics, the model type and the rows the validators signed; the
  record's seed is the hash the transcript fixes and its method ``exact``
  (**shapley seed**; no value depends on the seed since Shapley values stopped sampling);
- **weights**, **payouts** — the contribution weights and the split of the deposit
  are what :func:`~deltaml.learning.contributions.contribution_weights` and
  :func:`~deltaml.ledger.payouts.compute_payouts` give on the published numbers;
- **link** and **completeness** — every record answers the request it should (a
  state the round's total, a residual vector the evaluated total, a remix the
  aggregator's mixed vector, a decryption the remixed vector: ``Mix → Remix →
  MetricValue`` and ``MixColumns → RemixColumns → ContributionValues``; a single
  validator remixes too, so the buyer always decrypts a remixed vector) and
  nothing the protocol requires is missing;
- **remixer** — each remix is signed by the validator the public rule names
  (:func:`~deltaml.learning.metrics.metric_remixer`: the ``i``-th evaluation by
  ``validators[i mod V]``; :func:`~deltaml.learning.contributions.contribution_remixer`:
  the first validator for the contributions), keeps the length of what it was given
  and adds exactly ``precision_bits`` to its exponent;
- with the sealed ciphertexts: **sum** — the aggregator's totals are the products
  of the signed ciphertexts; **re-randomization** — what it sent encrypts what it
  summed (``c' = c·h_s^α`` with the revealed ``α``);
- **final record** — the last record's seats are the addresses of the header's
  trainers and validators, its key fingerprint the header key's (what it adds to
  bind the settlement: see :mod:`deltaml.evidence.transcript`).

All of this checks the transcript against itself. Against the chain —
:func:`verify_against_chain`, what the buyer and owner nodes, ``deltaml verify
--chain-url`` and ``deltaml arbiter resolve`` run — the transcript must also be the
evidence of the request as the contract stores it: the evidence hash, the key
fingerprint, buyer, aggregator, seats, spec hash, deposit, chain binding and the
metrics and contributions posted (:mod:`deltaml.evidence.chain`). Without it, a
self-consistent transcript of another run would pass.

What cannot be checked publicly, and why
----------------------------------------
- **What the owners computed from their own data.** A trainer's update, a
  validator's residual vector and contribution columns, and each owner's
  statistics are functions of data nobody else may see. Their signatures make
  each owner accountable for exactly what it sent; whether it used its real rows
  cannot be proven without revealing them.
- **The mixing rotations** — the aggregator's and the remixer's. Revealing both
  rotations would let anyone undo them and read each validator's own error, so the
  transcript holds only a hash commitment to each rotation's seed. An arbiter can
  be given the openings, recompute the rotations on the sealed ciphertexts and ask
  the buyer to prove that the result decrypts to the published plaintexts; the
  public cannot. (Either mixer alone cannot undo the mixing; the two together can:
  see :mod:`deltaml.learning.metrics`.)
- **The refresh.** The buyer's re-encryption of masked states is not proven; the
  trainers sign the states they continue from.
- Without the sealed ciphertexts, the sums and re-randomizations are skipped
  (the signed digests still bind them). The sealed file must never reach the
  buyer, who could decrypt every ciphertext in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltaml.evidence.checks import run_checks
from deltaml.evidence.checks.base import ROLE_OF as ROLE_OF
from deltaml.evidence.checks.contributions import SHAPLEY_RTOL as SHAPLEY_RTOL
from deltaml.evidence.checks.settlement import request_commitment as request_commitment
from deltaml.evidence.report import NOT_PUBLICLY_CHECKABLE as NOT_PUBLICLY_CHECKABLE
from deltaml.evidence.report import Failure as Failure
from deltaml.evidence.report import Settlement as Settlement
from deltaml.evidence.report import VerificationReport as VerificationReport
from deltaml.evidence.transcript import (
    read_records,
    read_sealed,
    sealed_path_for,
)

if TYPE_CHECKING:
    from deltaml.evidence.chain import ChainReader

__all__ = [
    "Failure",
    "Settlement",
    "VerificationReport",
    "check_against_chain",
    "request_commitment",
    "verify_against_chain",
    "verify_records",
    "verify_transcript",
]


def verify_transcript(
    path: str | Path,
    sealed: str | Path | None = None,
    *,
    use_sealed: bool = True,
    expected_head: str | None = None,
) -> VerificationReport:
    """Check the transcript at ``path``; see the module docstring for every check.

    ``sealed`` names the sealed ciphertexts; by default ``run.sealed.jsonl`` next to
    ``run.jsonl`` is used when it exists (``use_sealed=False`` ignores it).
    ``expected_head`` is the hash published for this transcript (on the contract):
    without it, a change to the last record is caught only by its own checks. Raises
    :class:`DeltaMLValueError` (one line) for a missing or malformed file; every
    other problem is a :class:`Failure` in the report.
    """
    records = read_records(path)
    sealed_file: Path | None = Path(sealed) if sealed is not None else None
    if sealed_file is None and use_sealed:
        candidate = sealed_path_for(path)
        sealed_file = candidate if candidate.exists() else None
    store = read_sealed(sealed_file) if sealed_file is not None else None
    report = VerificationReport(str(path), sealed_path=str(sealed_file) if sealed_file else None)
    return verify_records(records, store, report, expected_head=expected_head)


def verify_against_chain(
    path: str | Path,
    reader: ChainReader,
    request_id: int,
    *,
    chain_id: int | None = None,
    sealed: str | Path | None = None,
    use_sealed: bool = True,
    expected_head: str | None = None,
) -> VerificationReport:
    """Check the transcript at ``path`` and that it is the evidence of request
    ``request_id`` on the contract ``reader`` reads (a :class:`~deltaml.ledger.Ledger`).

    Every check of :func:`verify_transcript`, and those of
    :func:`deltaml.evidence.chain.chain_failures`: the evidence hash, the key
    fingerprint, buyer, aggregator, seats, spec hash, deposit, chain binding, and the
    metrics and contributions posted. ``chain_id`` defaults to the reader's
    (:func:`~deltaml.evidence.chain.chain_id_of`). What the buyer, the owners and an
    arbiter run before they approve, dispute or resolve.
    """
    report = verify_transcript(path, sealed, use_sealed=use_sealed, expected_head=expected_head)
    return check_against_chain(report, reader, request_id, chain_id=chain_id)


def check_against_chain(
    report: VerificationReport,
    reader: ChainReader,
    request_id: int,
    *,
    chain_id: int | None = None,
    contract_from_transcript: bool = False,
) -> VerificationReport:
    """Add to ``report`` the checks of the transcript against request ``request_id``
    (``contract_from_transcript``: the reader's contract is the one the transcript
    names, not one the caller knows holds the escrow; the report says so)."""
    from deltaml.evidence.chain import CHAIN_CHECKS, chain_failures, read_request

    on_chain = read_request(reader, request_id, chain_id)
    report.chain = on_chain.describe()
    if contract_from_transcript:
        report.chain["contract_from_transcript"] = True
    if on_chain.chain_id is None:
        report.skipped.append("the chain id (the chain reader does not say which chain it is)")
    failures = chain_failures(report.head, report.settlement, on_chain)
    report.failures.extend(failures)
    failed = {f.check for f in failures}
    checked = CHAIN_CHECKS if report.settlement is not None else CHAIN_CHECKS[:2]
    for check in checked:
        if check not in failed:
            report.passed[check] += 1
    return report


def verify_records(
    records: Sequence[Mapping[str, Any]],
    sealed: Mapping[str, bytes] | None,
    report: VerificationReport | None = None,
    *,
    expected_head: str | None = None,
) -> VerificationReport:
    """Check parsed records (and sealed ciphertexts by digest, if given)."""
    report = report if report is not None else VerificationReport("<memory>")
    report.sealed = sealed is not None
    run_checks(list(records), sealed, report, expected_head)
    return report
