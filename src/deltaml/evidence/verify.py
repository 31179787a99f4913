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

import hashlib
import math
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np

from deltaml.crypto import PublicKey, failed_decryptions, failed_rerandomizations
from deltaml.crypto.packing import PackingError, PackingLayout, failed_packed_decryptions
from deltaml.crypto.paillier import key_fingerprint
from deltaml.errors import DeltaMLError, DeltaMLValueError
from deltaml.evidence.exact_checks import EXACT_CHECKS, EXACT_ROLE_OF, exact_missing
from deltaml.evidence.published import (
    denoised_sse,
    gram_from_ints,
    is_evaluated,
    last_round,
    metric_value,
    shapley_method,
    shapley_seed,
    shapley_values,
    signed_plaintext,
    sse_from_ints,
    stats_from_ints,
)
from deltaml.evidence.signatures import (
    ciphertexts_of,
    decode_blob,
    key_id,
    parse_hex_ints,
    recover_signer,
)
from deltaml.evidence.transcript import (
    FORMAT,
    GENESIS,
    RECORD_FIELDS,
    read_records,
    read_sealed,
    record_hash,
    sealed_path_for,
)
from deltaml.learning.contributions import contribution_remixer, contribution_weights
from deltaml.learning.metrics import metric_remixer
from deltaml.learning.models import ModelType, Standardization, model_type
from deltaml.ledger.payouts import compute_payouts, scale_metric
from deltaml.roles.aggregator import split_roles

if TYPE_CHECKING:
    from deltaml.evidence.chain import ChainReader

#: One line per limit of public verification, printed by ``deltaml verify``.
NOT_PUBLICLY_CHECKABLE = (
    "what owners computed from their own data: signed, provable only by revealing the data",
    "the mixing rotations of the aggregator and the remixer: only committed to "
    "(opening both would expose each validator's own error)",
    "the buyer's re-encryptions in refreshes: trainers sign the states they continue from",
    "when a deadline stop happened: the aggregator's word (only after an evaluated round,"
    " for the deadline on chain)",
)

#: Which role may produce each kind of record.
ROLE_OF = {
    "Header": "aggregator",
    "StatsTotal": "aggregator",
    "InitialTotal": "aggregator",
    "Broadcast": "aggregator",
    "Sum": "aggregator",
    "Mix": "aggregator",
    "ContributionRequest": "aggregator",
    "MixColumns": "aggregator",
    "Remix": "validator",
    "RemixColumns": "validator",
    "Payouts": "aggregator",
    "Dropped": "aggregator",
    "DeadlineStop": "aggregator",
    "EncryptedSums": "owner",
    "StateUpdate": "trainer",
    "EncryptedResiduals": "validator",
    "ContributionColumns": "validator",
    "PublicStats": "buyer",
    "MetricValue": "buyer",
    "ContributionValues": "buyer",
    **EXACT_ROLE_OF,
}

SHAPLEY_RTOL = 1e-9


@dataclass(frozen=True)
class Failure:
    """One check that did not hold: where (record number and type) and what."""

    record: int | None
    kind: str | None
    check: str
    detail: str

    def __str__(self) -> str:
        where = "transcript" if self.record is None else f"record {self.record}"
        if self.kind:
            where += f" ({self.kind})"
        return f"{where}: {self.check}: {self.detail}"


@dataclass(frozen=True)
class Settlement:
    """What a verified transcript says settlement depends on (its header and final record).

    Addresses as the transcript writes them; hashes as lower-case hex; metrics as
    the scaled integers posted on chain; ``contributions`` the weights per trainer
    seat; ``chain_id``, ``contract`` and ``request_id`` are ``None`` for a run the
    transcript says was escrowed nowhere.
    """

    buyer: str
    aggregator: str
    key_fingerprint: str
    spec_hash: str
    deposit_wei: int
    trainers: tuple[str, ...]
    validators: tuple[str, ...]
    initial_metric: int
    final_metric: int
    contributions: tuple[int, ...]
    chain_id: int | None
    contract: str | None
    request_id: int | None
    #: The deadline a ``DeadlineStop`` record stopped training for (``None``: no stop).
    deadline: int | None = None
    #: Each published metric by round, scaled as posted on chain (round 0 included).
    published: Mapping[int, int] = field(default_factory=dict)


@dataclass
class VerificationReport:
    """The outcome of :func:`verify_transcript`."""

    path: str
    records: int = 0
    head: str = GENESIS
    sealed_path: str | None = None
    #: Whether sealed ciphertexts were available (from ``sealed_path`` or in memory).
    sealed: bool = False
    passed: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    metrics: dict[int, float] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)
    payouts_wei: dict[str, int] = field(default_factory=dict)
    refund_wei: int | None = None
    #: What settlement depends on, from the final record (``None`` without one).
    settlement: Settlement | None = None
    #: The request on chain the transcript was checked against (``None``: it was
    #: checked only against itself); see :func:`verify_against_chain`.
    chain: dict[str, object] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def failed_checks(self) -> set[str]:
        return {f.check for f in self.failures}

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "transcript": self.path,
            "sealed": self.sealed_path,
            "records": self.records,
            "head": self.head,
            "chain": self.chain,
            "passed": dict(self.passed),
            "failures": [str(f) for f in self.failures],
            "skipped": list(self.skipped),
        }

    def chain_line(self) -> str:
        """Whether, and against which request on chain, the transcript was checked."""
        if self.chain is None:
            return (
                "  NOT checked against a chain: the transcript was checked against itself only"
                " (its key, buyer, seats and numbers are not shown to be the request's;"
                " give the chain URL and the request id)"
            )
        c = self.chain
        line = (
            f"  checked against request {c['request_id']} of contract {c['contract']}"
            f" on chain {c['chain_id']} ({c['status']})"
        )
        if c.get("contract_from_transcript"):
            line += "; the contract is the one the transcript names: is it the escrow's?"
        return line

    def lines(self) -> list[str]:
        """A short human summary: the verdict, what was checked, each failure, the limits."""
        verdict = "verified" if self.ok else f"NOT verified ({len(self.failures)} failed checks)"
        out = [f"{self.path}: {verdict}"]
        sealed = (
            f"sealed ciphertexts {self.sealed_path or 'in memory'}"
            if self.sealed
            else "no sealed ciphertexts (sums and re-randomizations not checked)"
        )
        out.append(f"  {self.records} records, head {self.head}; {sealed}")
        out.append(self.chain_line())
        checked = ", ".join(f"{check} {count}" for check, count in sorted(self.passed.items()))
        out.extend(
            textwrap.wrap(f"checked: {checked}", 96, subsequent_indent="    ", initial_indent="  ")
        )
        out.extend(f"  FAIL {failure}" for failure in self.failures)
        out.append("  not checkable publicly:")
        out.extend(f"    - {item}" for item in NOT_PUBLICLY_CHECKABLE)
        return out


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
    _Verifier(list(records), sealed, report, expected_head).run()
    return report


class _Skip(Exception):
    """Stop checking the current record (a failure has been reported)."""


class _Verifier:
    def __init__(
        self,
        records: list[Mapping[str, Any]],
        sealed: Mapping[str, bytes] | None,
        report: VerificationReport,
        expected_head: str | None = None,
    ) -> None:
        self.expected_head = expected_head
        self.records = records
        self.sealed = sealed
        self.report = report
        self.hashes: list[str] = []
        self.seq = -1
        self.kind: str | None = None
        # header
        self.key: PublicKey | None = None
        self.key_id = ""
        self.spec: dict[str, Any] = {}
        self.model: ModelType | None = None
        self.participants: dict[str, tuple[str, str]] = {}
        self.owners: list[str] = []
        self.trainers: list[str] = []
        #: The trainers still in the training (a silent one is dropped: ``Dropped``).
        self.active: list[str] = []
        self.validators: list[str] = []
        self.n_features = 0
        # state
        self.refs: dict[str, dict[str, Any]] = {}
        self.public_blobs: dict[str, bytes] = {}
        self.cache: dict[str, list[int] | None] = {}
        self.sums: dict[str, str] = {}
        self.stats_total: dict[str, Any] | None = None
        self.stats: Standardization | None = None
        self.current_total: str | None = None
        self.broadcasts: dict[tuple[str, int], str] = {}
        self.states: dict[tuple[int, str], dict[str, str]] = {}
        self.summed: set[tuple[int, str]] = set()
        self.residuals: dict[int, dict[str, tuple[str, int]]] = {}
        self.mixes: dict[int, dict[str, Any]] = {}
        #: Round → digest of the remixed vector (two or more validators).
        self.remixes: dict[int, str] = {}
        self.sse: dict[int, float] = {}
        self.request: dict[str, Any] | None = None
        self.columns: dict[str, list[str]] = {}
        self.mix_columns: dict[str, Any] | None = None
        self.remixed_columns: list[str] | None = None
        #: Hash of the record just before the buyer was asked for contributions.
        self.mix_columns_hash = ""
        self.contributions: list[float] | None = None
        self.payouts_seen = False
        #: The body of a ``DeadlineStop`` record: training ended early at its round.
        self.deadline_stop: dict[str, Any] | None = None

    # -- reporting ------------------------------------------------------------------
    def fail(self, check: str, detail: str, *, whole: bool = False) -> None:
        """Report a failure of the current record (or of the whole transcript)."""
        seq = None if whole or self.seq < 0 else self.seq
        self.report.failures.append(Failure(seq, None if seq is None else self.kind, check, detail))

    def ok(self, check: str, count: int = 1) -> None:
        self.report.passed[check] += count

    def expect(self, condition: bool, check: str, detail: str) -> None:
        if condition:
            self.ok(check)
        else:
            self.fail(check, detail)

    def require(self, condition: bool, check: str, detail: str) -> None:
        """Like :meth:`expect`, but stop checking this record when it fails."""
        if not condition:
            self.fail(check, detail)
            raise _Skip

    # -- the walk ---------------------------------------------------------------------
    def run(self) -> None:
        self.report.records = len(self.records)
        self.hashes = [record_hash(r) for r in self.records]
        self.report.head = self.hashes[-1] if self.hashes else GENESIS
        self._chain()
        if self.sealed is None:
            self.report.skipped.append("sums and re-randomizations of sealed ciphertexts")
        for seq, record in enumerate(self.records):
            self.seq, self.kind = seq, record.get("type") if isinstance(record, Mapping) else None
            try:
                self._record(seq, record)
            except _Skip:
                pass
            except (DeltaMLError, ValueError, TypeError, KeyError, OverflowError) as exc:
                self.fail("format", f"unreadable body ({type(exc).__name__}: {exc})")
            if self.key is None:  # without a header nothing else can be checked
                break
        self.seq, self.kind = -1, None
        self._completeness()

    def _chain(self) -> None:
        bad = 0
        for seq, record in enumerate(self.records):
            self.seq, self.kind = seq, record.get("type")
            expected_prev = GENESIS if seq == 0 else self.hashes[seq - 1]
            if record.get("seq") != seq:
                self.fail("hash chain", f"sequence number {record.get('seq')!r}, expected {seq}")
                bad += 1
            elif record.get("prev") != expected_prev:
                what = "the genesis value" if seq == 0 else f"the hash of record {seq - 1}"
                self.fail("hash chain", f"'prev' is not {what}")
                bad += 1
        self.seq = -1
        if self.expected_head is not None and self.report.head != self.expected_head.lower():
            self.fail("hash chain", "the last record's hash is not the published head", whole=True)
            bad += 1
        if not bad:
            self.ok("hash chain", len(self.records))

    def _record(self, seq: int, record: Mapping[str, Any]) -> None:
        missing = [f for f in RECORD_FIELDS if f not in record]
        self.require(not missing, "format", f"missing field(s) {', '.join(missing)}")
        body = record["body"]
        self.require(isinstance(body, dict), "format", "the body is not an object")
        kind = body.get("kind")
        self.require(
            kind in ROLE_OF and record["type"] == kind,
            "format",
            f"unknown or inconsistent kind {str(kind)[:40]!r}",
        )
        self.require(record["round"] == body.get("round"), "format", "round differs from body")
        blobs = record["blobs"]
        self.require(isinstance(blobs, dict), "format", "'blobs' is not an object")
        if seq == 0:
            self.require(kind == "Header", "header", "the first record is not the header")
            self._header(body)
        self.require(self.key is not None, "header", "no valid header before this record")
        self._signature(record, body, kind)
        for digest, text in blobs.items():
            self._public_blob(digest, text)
        exact_check = EXACT_CHECKS.get(kind)  # solver: exact (evidence/exact_checks.py)
        if exact_check is not None:
            exact_check(self, body)
        else:
            getattr(self, "_on_" + kind)(body)
        if any(d not in self.refs for d in blobs):
            self.fail("ciphertexts", "the record carries ciphertexts that no signed body names")

    def _signature(self, record: Mapping[str, Any], body: Mapping[str, Any], kind: str) -> None:
        self.require(body.get("key") == self.key_id, "key", "signed for another Paillier key")
        signer = recover_signer(body, record["signature"])
        self.require(
            signer is not None and signer.lower() == str(record["signer"]).lower(),
            "signature",
            "the signature is not the named signer's signature over this body",
        )
        self.ok("signature")
        party = record["party"]
        declared = self.participants.get(party) if isinstance(party, str) else None
        role = ROLE_OF[kind]
        self.require(declared is not None, "participant", f"unknown party {str(party)[:40]!r}")
        assert declared is not None
        declared_role, declared_address = declared
        allowed = {"owner": ("trainer", "validator")}.get(role, (role,))
        self.require(
            declared_role in allowed,
            "participant",
            f"{party} is a {declared_role}; a {kind} comes from a {role}",
        )
        self.require(
            declared_address.lower() == str(signer).lower(),
            "participant",
            f"signed by {signer}, but {party} is {declared_address or 'unregistered'}",
        )
        self.ok("participant")

    def _public_blob(self, digest: str, text: object) -> None:
        """Keep a record's ciphertexts if they match their digest (else report, once)."""
        try:
            blob = decode_blob(text)
        except DeltaMLValueError as exc:
            blob = b""
            problem = str(exc)
        else:
            problem = "" if hashlib.sha256(blob).hexdigest() == digest else "do not match"
        if problem:
            self.fail("ciphertexts", f"the record's ciphertexts {digest[:12]}… {problem}")
            self.cache[digest] = None
        else:
            self.public_blobs.setdefault(digest, blob)

    # -- vectors ----------------------------------------------------------------------------
    def declare(self, ref: object) -> str:
        """Register a vector reference from a signed body; return its digest."""
        self.require(
            isinstance(ref, dict)
            and isinstance(ref.get("sha256"), str)
            and type(ref.get("length")) is int
            and type(ref.get("exponent")) is int,
            "format",
            "malformed vector reference",
        )
        assert isinstance(ref, dict)
        self.refs.setdefault(ref["sha256"], ref)
        return str(ref["sha256"])

    def vector(self, digest: str, *, sealed: bool) -> list[int] | None:
        """The ciphertexts of a declared vector; ``None`` when sealed and not available."""
        if digest in self.cache:
            cached = self.cache[digest]
            if cached is None:  # reported where it failed
                raise _Skip
            return cached
        ref = self.refs.get(digest)
        self.require(ref is not None, "link", f"vector {digest[:12]}… was never declared")
        assert ref is not None and self.key is not None
        blob = self.public_blobs.get(digest)
        if blob is None and self.sealed is not None:
            blob = self.sealed.get(digest)
        if blob is None:
            if sealed and self.sealed is None:
                return None
            where = "sealed ciphertexts" if sealed else "record"
            self.fail("ciphertexts", f"the ciphertexts of {digest[:12]}… are not in the {where}")
            self.cache[digest] = None
            raise _Skip
        try:
            values = ciphertexts_of(self.key, blob, ref)
        except DeltaMLValueError as exc:
            self.fail("ciphertexts", f"vector {digest[:12]}…: {exc}")
            self.cache[digest] = None
            raise _Skip from None
        self.ok("ciphertexts")
        self.cache[digest] = values
        return values

    def exponent(self, digest: str) -> int:
        return int(self.refs[digest]["exponent"])

    # -- header and statistics -----------------------------------------------------------
    def _header(self, body: Mapping[str, Any]) -> None:
        self.require(body.get("format") == FORMAT, "header", "unknown transcript format")
        try:
            key = PublicKey.from_dict(body["public_key"])
        except (DeltaMLValueError, KeyError, TypeError):
            self.fail("header", "malformed public key")
            raise _Skip from None
        spec = body.get("spec")
        self.require(isinstance(spec, dict), "header", "no spec")
        self.spec = dict(spec)  # type: ignore[arg-type]
        try:
            self.model = model_type(self.spec["model"], self.spec.get("l2"))
        except (DeltaMLValueError, KeyError):
            self.fail("header", "unknown model type")
            raise _Skip from None
        people = body.get("participants")
        self.require(isinstance(people, list), "header", "no participants")
        for p in people:  # type: ignore[union-attr]
            self.require(
                isinstance(p, dict)
                and all(isinstance(p.get(k), str) for k in ("id", "role", "address")),
                "header",
                "malformed participant",
            )
            self.participants[p["id"]] = (p["role"], p["address"])
        self.owners = list(body.get("owners", []))
        self.trainers = list(body.get("trainers", []))
        self.active = list(self.trainers)
        self.validators = list(body.get("validators", []))
        self.n_features = int(body.get("n_features", 0))
        roles = Counter(role for role, _ in self.participants.values())
        self.require(
            roles["buyer"] == 1 and roles["aggregator"] == 1, "header", "needs one buyer, one FA"
        )
        try:
            split = split_roles(
                self.owners, float(self.spec["trainer_fraction"]), int(self.spec["split_seed"])
            )
        except (DeltaMLValueError, KeyError, TypeError, ValueError):
            self.fail("split", "the split cannot be recomputed")
            raise _Skip from None
        declared = {pid: role for pid, (role, _) in self.participants.items() if pid in self.owners}
        self.expect(
            split == (self.trainers, self.validators)
            and all(declared.get(t) == "trainer" for t in self.trainers)
            and all(declared.get(v) == "validator" for v in self.validators)
            and len(declared) == len(self.owners),
            "split",
            "trainers and validators are not the split of the recorded seed",
        )
        self.key, self.key_id = key, key_id(key)  # a usable header: the rest can be checked

    def _on_Header(self, body: Mapping[str, Any]) -> None:
        self.require(self.seq == 0, "header", "a second header")

    def _on_EncryptedSums(self, body: Mapping[str, Any]) -> None:
        party = self.records[self.seq]["party"]
        self.require(party not in self.sums, "completeness", f"{party} sent statistics twice")
        self.sums[party] = self.declare(body["sums"])

    def _on_StatsTotal(self, body: Mapping[str, Any]) -> None:
        total = self.declare(body["total"])
        inputs = body["inputs"]
        self.require(
            inputs == [self.sums.get(o) for o in self.owners]
            and body["contributors"] == len(self.owners),
            "link",
            "the statistics total is not over every owner's signed sums, once each",
        )
        self.ok("link")
        self.stats_total = {"total": total, "include_target": bool(body["include_target"])}
        self._check_sum(total, inputs)

    def _on_PublicStats(self, body: Mapping[str, Any]) -> None:
        self.require(self.stats_total is not None, "link", "statistics before their total")
        assert self.stats_total is not None and self.key is not None
        digest = self.stats_total["total"]
        self.require(body["total"] == digest, "link", "the buyer decrypted another total")
        # The published statistics are what later metrics use, proven or not.
        self.stats = Standardization(
            int(body["count"]),
            np.array(body["means"], dtype=np.float64),
            np.array(body["scales"], dtype=np.float64),
            float(body["target_mean"]),
            float(body["target_scale"]),
        )
        values = self._proven(digest, body["plaintexts"], body["randomness"])
        try:
            stats = stats_from_ints(
                values, self.exponent(digest), self.n_features, self.stats_total["include_target"]
            )
        except DeltaMLValueError as exc:
            self.fail("statistics", f"cannot recompute: {exc}")
            raise _Skip from None
        published = (
            body["count"],
            list(body["means"]),
            list(body["scales"]),
            body["target_mean"],
            body["target_scale"],
        )
        recomputed = (
            stats.count,
            [float(v) for v in stats.means],
            [float(v) for v in stats.scales],
            float(stats.target_mean),
            float(stats.target_scale),
        )
        self.expect(
            published == recomputed,
            "statistics",
            "the published means and scales are not those of the proven total",
        )

    def _proven(self, digest: str, plaintexts: object, randomness: object) -> list[int]:
        """Check the proofs for a public vector; return the signed plaintexts."""
        assert self.key is not None
        ciphertexts = self.vector(digest, sealed=False)
        assert ciphertexts is not None
        bits = self.key.key_bits
        try:
            ms = parse_hex_ints(plaintexts, "plaintexts", bits)
            rs = parse_hex_ints(randomness, "randomness", bits)
        except DeltaMLValueError as exc:
            self.fail("format", str(exc))
            raise _Skip from None
        self.require(
            len(ms) == len(rs) == len(ciphertexts),
            "decryption proof",
            f"{len(ms)} plaintexts and {len(rs)} proofs for {len(ciphertexts)} ciphertexts",
        )
        failed = failed_decryptions(self.key, ciphertexts, ms, rs)
        self.require(
            not failed,
            "decryption proof",
            f"value(s) {_indices(failed)} do not open their ciphertexts",
        )
        self.ok("decryption proof", len(ms))
        half = self.key.max_int
        self.require(
            all(v <= half or v >= self.key.n - half for v in ms),
            "decryption proof",
            "a proven plaintext lies in the overflow band",
        )
        return [signed_plaintext(self.key, v) for v in ms]

    def _proven_packed(self, digests: Sequence[str], body: Mapping[str, Any]) -> list[list[int]]:
        """Check a packed decryption of public vectors; return each vector's signed values.

        The packed ciphertexts are recomputed from the vectors' ciphertexts with the
        public layout (:class:`~deltaml.crypto.packing.PackingLayout`), never taken from
        the buyer; the body's ``slot_bits`` must be the layout's.
        """
        assert self.key is not None
        vectors = [self.vector(d, sealed=False) or [] for d in digests]  # public: never None
        ciphertexts = [c for v in vectors for c in v]
        layout = PackingLayout.of(
            self.key, [len(v) for v in vectors], [self.exponent(d) for d in digests]
        )
        self.require(
            body.get("slot_bits") == layout.slot_bits,
            "packing",
            f"slots of {body.get('slot_bits')!r} bits, the public rule gives {layout.slot_bits}",
        )
        bits = self.key.key_bits
        try:
            ms = parse_hex_ints(body["plaintexts"], "plaintexts", bits)
            rs = parse_hex_ints(body["randomness"], "randomness", bits)
        except DeltaMLValueError as exc:
            self.fail("format", str(exc))
            raise _Skip from None
        self.require(
            len(ms) == len(rs) == layout.packed_count,
            "decryption proof",
            f"{len(ms)} plaintexts and {len(rs)} proofs for {layout.packed_count} packed "
            f"ciphertexts of {layout.count} values",
        )
        failed = failed_packed_decryptions(self.key, layout, ciphertexts, ms, rs)
        self.require(
            not failed,
            "decryption proof",
            f"packed value(s) {_indices(failed)} do not open their packed ciphertexts",
        )
        self.ok("decryption proof", len(ms))
        try:
            values = layout.unpack(self.key, ms)
        except PackingError as exc:
            self.fail("packing", str(exc))
            raise _Skip from None
        self.ok("packing")
        return values

    # -- rounds -----------------------------------------------------------------------------
    def _on_InitialTotal(self, body: Mapping[str, Any]) -> None:
        assert self.key is not None
        model = self.declare(body["model"])
        total = self.declare(body["total"])
        multiplier = body["multiplier"]
        self.require(
            multiplier == len(self.trainers) and self.current_total is None,
            "link",
            "the initial total is not the initial model times the number of trainers",
        )
        self.current_total = total
        a, b = self.vector(model, sealed=False), self.vector(total, sealed=False)
        assert a is not None and b is not None
        n2 = self.key.nsquare
        self.expect(
            len(a) == len(b)
            and self.exponent(model) == self.exponent(total)
            and all(int(gmpy2.powmod(x, multiplier, n2)) == y for x, y in zip(a, b, strict=False)),
            "sum",
            "the initial total is not the initial model times the number of trainers",
        )

    def _on_Broadcast(self, body: Mapping[str, Any]) -> None:
        assert self.key is not None
        k, purpose = body["round"], body["purpose"]
        self.require(
            purpose in ("round", "evaluate", "final") and type(k) is int,
            "format",
            "unknown broadcast",
        )
        self.require(
            body["source"] == self.current_total,
            "link",
            f"the {purpose} broadcast of round {k} is not of the current total",
        )
        if purpose == "round":
            self.require(
                k == self._rounds_done() + 1,
                "link",
                f"round {k} follows round {self._rounds_done()}",
            )
        else:
            self.require(k == self._rounds_done(), "link", f"{purpose} of round {k} out of order")
        self.ok("link")
        outgoing = self.declare(body["outgoing"])
        self.require((purpose, k) not in self.broadcasts, "completeness", "a second broadcast")
        self.broadcasts[(purpose, k)] = outgoing
        exponents = parse_hex_ints(body["exponents"], "exponents", 2 * self.key.key_bits)
        self._check_rerandomization([body["source"]], [outgoing], [exponents])

    def _on_Dropped(self, body: Mapping[str, Any]) -> None:
        """Trainers that did not answer leave; round ``k`` starts again from a refresh."""
        k, dropped, remaining = body["round"], body["dropped"], body["remaining"]
        minimum = max(1, int(self.spec.get("min_trainers", 1)))
        self.require(
            type(k) is int
            and k == self._rounds_done() + 1
            and isinstance(dropped, list)
            and len(dropped) > 0
            and set(dropped) <= set(self.active)
            and remaining == [t for t in self.active if t not in dropped]
            and len(remaining) >= minimum,
            "link",
            f"round {k} drops trainers that are not in it, or too many",
        )
        self.ok("link")
        self.active = list(remaining)
        # What round k had done is void: the remaining trainers refresh and answer again.
        self.broadcasts.pop(("round", k), None)
        self.states.pop((k, "refresh"), None)
        self.states.pop((k, "round"), None)
        self.summed.discard((k, "refresh"))
        self.current_total = None  # the next broadcast must follow a new (refresh) sum

    def _on_DeadlineStop(self, body: Mapping[str, Any]) -> None:
        """The aggregator stopped after round ``k`` so as to finish before the deadline.

        Allowed once, right after an evaluated round ``k`` before the last (its metric
        published), before the contributions and the final model; the run then ends as
        if the spec had ``k`` rounds. Its ``deadline`` must be the request's on chain
        (:func:`verify_against_chain`); when it stopped is the aggregator's word.
        """
        k, every = body.get("round"), self.spec.get("eval_every")
        rounds = self.spec.get("rounds")
        self.require(
            type(k) is int
            and type(every) is int
            and type(rounds) is int
            and type(body.get("deadline")) is int
            and type(body.get("at")) is int,
            "format",
            "malformed deadline stop",
        )
        assert isinstance(k, int) and isinstance(every, int) and isinstance(rounds, int)
        self.require(
            self.deadline_stop is None
            and 0 < k < rounds
            and k == self._rounds_done()
            and is_evaluated(k, rounds, every)
            and k in self.report.metrics
            and self.request is None
            and not any(purpose == "final" for purpose, _ in self.broadcasts),
            "stopping",
            f"a deadline stop after round {k} is not right after an evaluated round"
            " before the last, once, before the contributions and the final model",
        )
        self.ok("stopping")
        self.deadline_stop = dict(body)

    def _rounds_done(self) -> int:
        return max((k for (k, phase) in self.summed if phase == "round"), default=0)

    def _on_StateUpdate(self, body: Mapping[str, Any]) -> None:
        k, phase = body["round"], body["phase"]
        party = self.records[self.seq]["party"]
        self.require(phase in ("round", "refresh"), "format", "unknown state phase")
        if phase == "round":
            self.require(
                body["input"] == self.broadcasts.get(("round", k)),
                "link",
                f"{party}'s state does not answer round {k}'s total",
            )
            self.ok("link")
        states = self.states.setdefault((k, phase), {})
        self.require(party not in states, "completeness", f"{party} sent two states")
        states[party] = self.declare(body["state"])

    def _on_Sum(self, body: Mapping[str, Any]) -> None:
        k, phase = body["round"], body["phase"]
        states = self.states.get((k, phase), {})
        inputs = body["inputs"]
        self.require(
            inputs == [states.get(t) for t in self.active] and (k, phase) not in self.summed,
            "link",
            f"the {phase} sum of round {k} is not over every trainer's signed state, once each",
        )
        self.ok("link")
        total = self.declare(body["total"])
        self.summed.add((k, phase))
        self.current_total = total
        self._check_sum(total, inputs)

    def _on_EncryptedResiduals(self, body: Mapping[str, Any]) -> None:
        k = body["round"]
        party = self.records[self.seq]["party"]
        self.require(
            body["input"] == self.broadcasts.get(("evaluate", k)),
            "link",
            f"{party} did not evaluate round {k}'s model",
        )
        self.ok("link")
        rows = body["rows"]
        self.require(type(rows) is int and rows > 0, "format", "rows must be positive")
        parts = self.residuals.setdefault(k, {})
        self.require(party not in parts, "completeness", f"{party} answered twice")
        parts[party] = (self.declare(body["vector"]), rows)

    def _on_Mix(self, body: Mapping[str, Any]) -> None:
        k = body["round"]
        parts = self.residuals.get(k, {})
        self.require(
            body["inputs"] == [parts.get(v, ("", 0))[0] for v in self.validators]
            and body["rows"] == sum(parts.get(v, ("", 0))[1] for v in self.validators)
            and k not in self.mixes,
            "link",
            f"the mixed vector of round {k} is not over every validator's signed vector",
        )
        self.ok("link")
        self.require(_is_hex(body["commitment"], 64), "format", "malformed rotation commitment")
        self.mixes[k] = {"mixed": self.declare(body["mixed"]), "rows": body["rows"]}

    def _remixer(self, party: str, named: str | None, what: str) -> None:
        """The remix of ``what`` comes from the validator the public rule names."""
        self.require(
            named is not None, "remixer", f"a remix of {what}, but a single validator has none"
        )
        self.require(
            party == named,
            "remixer",
            f"{party} remixed {what}, but the public rule names {named}",
        )
        self.ok("remixer")

    def _remixed_ref(self, source: str, remixed: str) -> None:
        """A remix keeps the length and adds exactly ``precision_bits`` to the exponent."""
        bits = self.spec.get("precision_bits")
        self.require(type(bits) is int, "format", "no precision_bits in the spec")
        assert isinstance(bits, int)
        self.require(
            self.refs[remixed]["length"] == self.refs[source]["length"]
            and self.exponent(remixed) == self.exponent(source) + bits,
            "remixer",
            "the remix does not keep the length, or adds other than precision_bits of exponent",
        )

    def _on_Remix(self, body: Mapping[str, Any]) -> None:
        k = body["round"]
        party = self.records[self.seq]["party"]
        every = self.spec.get("eval_every")
        self.require(type(every) is int and every >= 1, "format", "no eval_every in the spec")
        assert isinstance(every, int)
        self._remixer(party, metric_remixer(self.validators, k, every), f"round {k}")
        mix = self.mixes.get(k)
        self.require(
            mix is not None and body["input"] == mix["mixed"] and k not in self.remixes,
            "link",
            f"the remix of round {k} is not of round {k}'s mixed vector, once",
        )
        assert mix is not None
        self.ok("link")
        self.require(_is_hex(body["commitment"], 64), "format", "malformed rotation commitment")
        remixed = self.declare(body["vector"])
        self._remixed_ref(mix["mixed"], remixed)
        self.remixes[k] = remixed

    def _on_MetricValue(self, body: Mapping[str, Any]) -> None:
        k = body["round"]
        mix = self.mixes.get(k)
        # Every metric vector is remixed, by the only validator too: the buyer decrypts
        # only a seated owner's signed output.
        decrypted = self.remixes.get(k)
        what = "remixed"
        self.require(
            mix is not None
            and decrypted is not None
            and body["vector"] == decrypted
            and body["rows"] == mix["rows"],
            "link",
            f"the metric of round {k} is not a decryption of round {k}'s {what} vector",
        )
        self.ok("link")
        assert mix is not None and decrypted is not None and self.model is not None
        self.require(self.stats is not None, "link", "a metric before the statistics")
        assert self.stats is not None
        self.require(k not in self.report.metrics, "completeness", f"a second metric, round {k}")
        published = body["value"]
        self.require(_is_number(published), "format", "the metric is not a number")
        self.report.metrics[k] = float(published)
        (values,) = self._proven_packed([decrypted], body)
        noise = float(self.spec.get("metric_noise", 0.0))
        sse = denoised_sse(sse_from_ints(values, self.exponent(decrypted)), mix["rows"], noise)
        recomputed = metric_value(self.model, sse, mix["rows"], self.stats)
        self.sse[k] = sse
        self.expect(
            published == recomputed,
            "metric",
            f"round {k}: published {published!r}, the proven plaintexts give {recomputed!r}",
        )

    # -- contributions ----------------------------------------------------------------------
    def _on_ContributionRequest(self, body: Mapping[str, Any]) -> None:
        assert self.key is not None
        first = self.states.get((1, "round"), {})
        sources = body["sources"]
        self.require(
            sources == [first.get(t) for t in self.active] and self.request is None,
            "link",
            "the contribution request is not over every trainer's signed round-one state",
        )
        self.ok("link")
        outgoing = [self.declare(ref) for ref in body["outgoing"]]
        exponents = [
            parse_hex_ints(e, "exponents", 2 * self.key.key_bits) for e in body["exponents"]
        ]
        self.require(len(outgoing) == len(sources) == len(exponents), "format", "sizes differ")
        self.request = {"outgoing": outgoing}
        self._check_rerandomization(sources, outgoing, exponents)

    def _on_ContributionColumns(self, body: Mapping[str, Any]) -> None:
        party = self.records[self.seq]["party"]
        self.require(
            self.request is not None and body["inputs"] == self.request["outgoing"],
            "link",
            f"{party}'s columns are not computed from the requested updates",
        )
        self.ok("link")
        self.require(party not in self.columns, "completeness", f"{party} answered twice")
        columns = [self.declare(ref) for ref in body["columns"]]
        self.require(
            len(columns) == len(self.active) + 1, "format", "one column per trainer plus one"
        )
        self.columns[party] = columns

    def _on_MixColumns(self, body: Mapping[str, Any]) -> None:
        self.require(
            body["inputs"] == [self.columns.get(v) for v in self.validators]
            and self.mix_columns is None,
            "link",
            "the mixed columns are not over every validator's signed columns",
        )
        self.ok("link")
        self.require(_is_hex(body["commitment"], 64), "format", "malformed rotation commitment")
        columns = [self.declare(ref) for ref in body["columns"]]
        self.require(
            len(columns) == len(self.active) + 1, "format", "one column per trainer plus one"
        )
        self.mix_columns = {"columns": columns}
        self.mix_columns_hash = self.hashes[self.seq]

    def _on_RemixColumns(self, body: Mapping[str, Any]) -> None:
        party = self.records[self.seq]["party"]
        self._remixer(party, contribution_remixer(self.validators), "the contribution columns")
        mixed = self.mix_columns
        self.require(
            mixed is not None
            and body["inputs"] == mixed["columns"]
            and self.remixed_columns is None,
            "link",
            "the remixed columns are not of the aggregator's mixed columns, once",
        )
        assert mixed is not None
        self.ok("link")
        self.require(_is_hex(body["commitment"], 64), "format", "malformed rotation commitment")
        columns = [self.declare(ref) for ref in body["columns"]]
        self.require(len(columns) == len(mixed["columns"]), "remixer", "one column per column")
        for source, remixed in zip(mixed["columns"], columns, strict=True):
            self._remixed_ref(source, remixed)
        self.remixed_columns = columns
        self.mix_columns_hash = self.hashes[self.seq]

    def _on_ContributionValues(self, body: Mapping[str, Any]) -> None:
        what = "remixed"  # by the only validator too
        decrypted = self.remixed_columns
        self.require(
            decrypted is not None and body["columns"] == decrypted,
            "link",
            f"the contributions are not a decryption of the {what} columns",
        )
        assert decrypted is not None
        values = body["values"]
        m = len(self.active)
        self.require(
            isinstance(values, list) and len(values) == m and all(_is_number(v) for v in values),
            "format",
            "one Shapley value per trainer",
        )
        self.contributions = [float(v) for v in values]
        measured = dict(zip(self.active, self.contributions, strict=True))
        self.report.contributions = {t: measured.get(t, 0.0) for t in self.trainers}
        base_round = body["base_round"]
        self.require(
            base_round == 0 and base_round in self.sse,
            "link",
            "contributions must be measured from the round-0 metric",
        )
        self.ok("link")
        columns = self._proven_packed(decrypted, body)
        gram = gram_from_ints(columns, [self.exponent(d) for d in decrypted])
        published_gram = body["gram"]
        self.expect(
            published_gram == [[float(v) for v in row] for row in gram],
            "gram",
            "the published Gram matrix is not that of the proven columns",
        )
        base_sse = self.sse[base_round]
        self.expect(
            body["base_sse"] == base_sse,
            "shapley",
            "the empty coalition's error is not the proven round-0 error",
        )
        seed = shapley_seed(self.mix_columns_hash)
        self.expect(
            body["seed"] == seed and body["method"] == shapley_method(m),
            "shapley seed",
            "the Shapley seed or method is not the one the transcript fixes",
        )
        recomputed = shapley_values(gram, base_sse)
        scale = max(1.0, float(np.max(np.abs(recomputed))))
        bad = [
            i
            for i, (v, r) in enumerate(zip(values, recomputed, strict=True))
            if not abs(v - r) <= SHAPLEY_RTOL * scale
        ]
        self.expect(
            not bad,
            "shapley",
            "Shapley value(s) of "
            + ", ".join(self.active[i] for i in bad)
            + " do not recompute from the proven Gram matrix",
        )

    # -- settlement -------------------------------------------------------------------------
    def _on_Payouts(self, body: Mapping[str, Any]) -> None:
        self.require(not self.payouts_seen, "completeness", "a second payout record")
        self.payouts_seen = True
        rounds = self._last_round()
        deposit = body["deposit_wei"]
        self.require(
            deposit == self.spec.get("deposit_wei")
            and body["final_round"] == rounds
            and body["initial_round"] == 0
            and body["trainers"] == self.trainers
            and body["validators"] == self.validators,
            "payouts",
            "deposit, rounds or participants differ from the header",
        )
        metrics = self.report.metrics
        self.require(
            0 in metrics and rounds in metrics,
            "payouts",
            "the initial or final metric is missing",
        )
        self.expect(
            body["initial_metric"] == scale_metric(metrics[0])
            and body["final_metric"] == scale_metric(metrics[rounds]),
            "payouts",
            "the metrics paid on are not the published ones",
        )
        phi = self.contributions
        measured = (  # unmeasured: the trainers still in the run share alike
            dict(zip(self.active, contribution_weights(np.array(phi)), strict=True))
            if phi is not None
            else dict.fromkeys(self.active, 1)
        )
        weights = [measured.get(t, 0) for t in self.trainers]  # nothing for a dropped trainer
        self.expect(
            body["contribution_weights"] == weights,
            "weights",
            "the contribution weights are not those of the published Shapley values",
        )
        payouts = compute_payouts(
            deposit,
            scale_metric(metrics[0]),
            scale_metric(metrics[rounds]),
            weights,
            len(self.validators),
        )
        paid = (
            body["trainers_wei"],
            body["validators_wei"],
            body["aggregator_wei"],
            body["refund_wei"],
        )
        expected = (
            list(payouts.trainers),
            list(payouts.validators),
            payouts.aggregator,
            payouts.refund,
        )
        self.expect(paid == expected, "payouts", "the split does not recompute")
        self._settlement(body, deposit, weights)
        aggregator = next(p for p, (role, _) in self.participants.items() if role == "aggregator")
        self.report.payouts_wei = {
            **dict(zip(self.trainers, payouts.trainers, strict=True)),
            **dict(zip(self.validators, payouts.validators, strict=True)),
            aggregator: payouts.aggregator,
        }
        self.report.refund_wei = payouts.refund

    def _settlement(self, body: Mapping[str, Any], deposit: int, weights: list[int]) -> None:
        """The final record's binding to the settlement: seats, key, chain (format 4)."""
        assert self.key is not None
        seats = body.get("seats")
        self.require(
            isinstance(seats, dict)
            and set(seats) == {"trainers", "validators"}
            and all(
                isinstance(v, list) and all(isinstance(a, str) for a in v) for v in seats.values()
            ),
            "format",
            "the final record has no seats",
        )
        assert isinstance(seats, dict)
        declared = {pid: address for pid, (_, address) in self.participants.items()}
        trainers = [declared.get(t, "") for t in self.trainers]
        validators = [declared.get(v, "") for v in self.validators]
        self.expect(
            [a.lower() for a in seats["trainers"]] == [a.lower() for a in trainers]
            and [a.lower() for a in seats["validators"]] == [a.lower() for a in validators],
            "final record",
            "its seats are not the addresses of the header's trainers and validators",
        )
        fingerprint = key_fingerprint(self.key).hex()
        self.expect(
            body.get("key_fingerprint") == fingerprint,
            "final record",
            "it names another Paillier key fingerprint than the header's key",
        )
        chain = body.get("chain")
        self.require(chain is None or _is_binding(chain), "format", "malformed chain binding")
        requirements = chain["requirements"] if chain is not None else None
        try:
            committed = request_commitment(self.spec, requirements)
        except DeltaMLValueError as exc:
            self.fail("format", f"the spec cannot be hashed: {exc}")
            raise _Skip from None
        role_of = {role: address for role, address in self.participants.values()}
        self.report.settlement = Settlement(
            buyer=role_of.get("buyer", ""),
            aggregator=role_of.get("aggregator", ""),
            key_fingerprint=fingerprint,
            spec_hash=committed.hex(),
            deposit_wei=deposit,
            trainers=tuple(trainers),
            validators=tuple(validators),
            initial_metric=int(body["initial_metric"]),
            final_metric=int(body["final_metric"]),
            contributions=tuple(weights),
            chain_id=None if chain is None else chain["chain_id"],
            contract=None if chain is None else chain["contract"],
            request_id=None if chain is None else chain["request_id"],
            deadline=None if self.deadline_stop is None else int(self.deadline_stop["deadline"]),
            published={k: scale_metric(v) for k, v in self.report.metrics.items()},
        )

    # -- homomorphic checks (sealed) --------------------------------------------------------
    def _check_sum(self, total: str, inputs: Iterable[str]) -> None:
        assert self.key is not None
        parts = [self.vector(d, sealed=True) for d in inputs]
        result = self.vector(total, sealed=True)
        if result is None or any(p is None for p in parts):
            return
        n2 = self.key.nsquare
        exponent = self.exponent(total)
        expected = [1] * len(result)
        for digest, part in zip(inputs, parts, strict=True):
            assert part is not None
            shift = exponent - self.exponent(digest)
            self.require(
                shift >= 0 and len(part) == len(result),
                "sum",
                "a summand does not fit the total's length or exponent",
            )
            factor = 1 << shift
            expected = [
                e * int(gmpy2.powmod(c, factor, n2)) % n2
                for e, c in zip(expected, part, strict=True)
            ]
        bad = [i for i, (e, c) in enumerate(zip(expected, result, strict=True)) if e != c]
        self.expect(not bad, "sum", f"element(s) {_indices(bad)} are not the product of the inputs")

    def _check_rerandomization(
        self, sources: Sequence[str], outgoing: Sequence[str], exponents: Sequence[list[int]]
    ) -> None:
        assert self.key is not None
        for source, out, alphas in zip(sources, outgoing, exponents, strict=True):
            before = self.vector(source, sealed=True)
            after = self.vector(out, sealed=True)
            if before is None or after is None:
                continue
            self.require(
                len(before) == len(after) == len(alphas)
                and self.exponent(source) == self.exponent(out),
                "re-randomization",
                "sizes or exponents differ",
            )
            bad = failed_rerandomizations(self.key, before, after, alphas)
            self.expect(
                not bad,
                "re-randomization",
                f"element(s) {_indices(bad)} do not encrypt what was summed",
            )

    # -- completeness -------------------------------------------------------------------------
    def _last_round(self) -> int:
        """The round training must end after, by the spec's rounds and stopping rule."""
        rounds = self.spec.get("rounds", 0)
        target = self.spec.get("target_improvement", 0.0)
        if type(rounds) is not int or not _is_number(target):
            self.fail("format", "no rounds or a malformed target_improvement in the spec")
            return 0
        rule = last_round(rounds, float(target), self.report.metrics)
        if self.deadline_stop is not None:
            return min(rule, int(self.deadline_stop["round"]))
        return rule

    def _completeness(self) -> None:
        if self.key is None:
            return
        if self.spec.get("solver") == "exact":
            gaps = exact_missing(self)
            if gaps:
                self.fail("completeness", "missing " + "; ".join(gaps), whole=True)
            else:
                self.ok("completeness")
            return
        missing = []
        rounds = self._last_round()
        every = max(1, int(self.spec.get("eval_every", 1)))
        if set(self.sums) != set(self.owners):
            missing.append("an owner's statistics")
        if self.stats is None:
            missing.append("the published statistics")
        evaluated = [k for k in range(rounds + 1) if is_evaluated(k, rounds, every)]
        for k in range(1, rounds + 1):
            if (k, "round") not in self.summed:
                missing.append(f"round {k}")
        beyond = sorted(k for k, phase in self.summed if phase == "round" and k > rounds)
        if beyond:
            self.fail(
                "stopping",
                f"round(s) {_indices(beyond)} trained after the target improvement was"
                f" reached at round {rounds}",
                whole=True,
            )
        for k in evaluated:
            if k not in self.report.metrics:
                missing.append(f"the metric of round {k}")
        if self.spec.get("contributions") and self.contributions is None:
            missing.append("the contributions")
        if ("final", rounds) not in self.broadcasts:
            missing.append("the final model")
        if not self.payouts_seen:
            missing.append("the payouts")
        elif self.records[-1].get("type") != "Payouts":
            missing.append("nothing after the payouts")
        if missing:
            self.fail("completeness", "missing " + "; ".join(missing[:8]), whole=True)
        else:
            self.ok("completeness")


def _indices(values: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in values[:8])
    return shown + (f" and {len(values) - 8} more" if len(values) > 8 else "")


def _is_hex(value: object, length: int) -> bool:
    return (
        isinstance(value, str)
        and len(value) == length
        and all(c in "0123456789abcdef" for c in value)
    )


def _is_binding(value: object) -> bool:
    """A well-formed ``chain`` of the final record (:class:`ChainBinding` as JSON)."""
    return (
        isinstance(value, dict)
        and set(value) == {"chain_id", "contract", "request_id", "requirements"}
        and type(value["chain_id"]) is int
        and type(value["request_id"]) is int
        and isinstance(value["contract"], str)
        and (value["requirements"] is None or isinstance(value["requirements"], dict))
    )


def request_commitment(spec: Mapping[str, Any], requirements: Mapping[str, Any] | None) -> bytes:
    """The spec hash a request commits to on chain, recomputed from a transcript.

    ``spec_hash`` of the header's spec (``deltaml simulate``), or of the spec and the
    data requirements together (the marketplace services), as
    :class:`~deltaml.evidence.transcript.ChainBinding` says.
    """
    from deltaml.marketplace import spec_hash

    try:
        if requirements is None:
            return spec_hash(dict(spec))
        return spec_hash({"spec": dict(spec), "requirements": dict(requirements)})
    except (TypeError, ValueError) as exc:
        raise DeltaMLValueError(str(exc)) from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
