"""The walk over a transcript, the state its checks share, and how a check reports.

:class:`Verifier` checks what every record shares (the hash chain, the format, the
signature, the participant, the ciphertexts it carries) and hands the body to the
check its :class:`Registry` names for the record's kind.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deltaml.crypto import PublicKey
from deltaml.errors import DeltaMLError, DeltaMLValueError
from deltaml.evidence.published import (
    last_round,
)
from deltaml.evidence.report import Failure, VerificationReport
from deltaml.evidence.signatures import (
    ciphertexts_of,
    decode_blob,
    recover_signer,
)
from deltaml.evidence.transcript import (
    GENESIS,
    RECORD_FIELDS,
    record_hash,
)
from deltaml.learning.models import ModelType, Standardization
from deltaml.protocol.records import DeadlineStop
from deltaml.protocol.rules import EXACT_ROUND

Handler = Callable[["Verifier", Mapping[str, Any]], None]


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
    # solver: exact (checks/exact.py)
    "ExactSystem": "trainer",
    "ExactMasked": "trainer",
    "ExactCheck": "trainer",
    "ExactSums": "aggregator",
    "ExactSolution": "buyer",
    "ExactSolveCheck": "buyer",
    "ExactParts": "aggregator",
    "ExactModel": "aggregator",
    "ExactTotal": "aggregator",
    "ExactDisclosure": "buyer",
    # metric_protocol: gram (checks/forms.py); the holders are validators (the first is
    # the aggregator when there is one validator), the second is the remixer
    "GramShare": "validator",
    "FormMask": "aggregator",
    "FormMasked": "holder",
    "FormCross": "validator",
    "FormOpened": "buyer",
    "FormShare": "holder",
    "FormCombined": "validator",
    "FormValues": "buyer",
}


@dataclass(frozen=True)
class Registry:
    """Which function checks each record kind, the header, and the end of the walk."""

    handlers: Mapping[str, Handler]
    header: Handler
    finish: Callable[[Verifier], None]


class Skip(Exception):
    """Stop checking the current record (a failure has been reported)."""


class Verifier:
    """The walk over a transcript and the state its checks share."""

    def __init__(
        self,
        records: list[Mapping[str, Any]],
        sealed: Mapping[str, bytes] | None,
        report: VerificationReport,
        expected_head: str | None = None,
        *,
        registry: Registry,
    ) -> None:
        self.registry = registry
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
        #: ``solver: exact``: the denominator its model's metric was raised to.
        self.exact_denominator = 0
        self.payouts_seen = False
        #: The initial model's digest (``InitialTotal``).
        self.initial_model = ""
        #: ``metric_protocol: gram``: the validators' shares, ``Enc(H)`` and each batch.
        self.forms: dict[str, Any] = {}
        #: The ``DeadlineStop`` record, if any: training ended early at its round.
        self.deadline_stop: DeadlineStop | None = None

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
            raise Skip

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
            except Skip:
                pass
            except (DeltaMLError, ValueError, TypeError, KeyError, OverflowError) as exc:
                self.fail("format", f"unreadable body ({type(exc).__name__}: {exc})")
            if self.key is None:  # without a header nothing else can be checked
                break
        self.seq, self.kind = -1, None
        self.registry.finish(self)

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
            self.registry.header(self, body)
        self.require(self.key is not None, "header", "no valid header before this record")
        self._signature(record, body, kind)
        for digest, text in blobs.items():
            self._public_blob(digest, text)
        self.registry.handlers[kind](self, body)
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
        allowed = {"owner": ("trainer", "validator"), "holder": ("validator", "aggregator")}.get(
            role, (role,)
        )
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
                raise Skip
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
            raise Skip
        try:
            values = ciphertexts_of(self.key, blob, ref)
        except DeltaMLValueError as exc:
            self.fail("ciphertexts", f"vector {digest[:12]}…: {exc}")
            self.cache[digest] = None
            raise Skip from None
        self.ok("ciphertexts")
        self.cache[digest] = values
        return values

    def exponent(self, digest: str) -> int:
        return int(self.refs[digest]["exponent"])

    def _rounds_done(self) -> int:
        return max((k for (k, phase) in self.summed if phase == "round"), default=0)

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

    # -- homomorphic checks (sealed) --------------------------------------------------------

    # -- completeness -------------------------------------------------------------------------
    def _last_round(self) -> int:
        """The round training must end after, by the spec's rounds and stopping rule
        (the exact solve: its one round)."""
        if self.spec.get("solver") == "exact":
            return EXACT_ROUND
        rounds = self.spec.get("rounds", 0)
        target = self.spec.get("target_improvement", 0.0)
        if type(rounds) is not int or not _is_number(target):
            self.fail("format", "no rounds or a malformed target_improvement in the spec")
            return 0
        rule = last_round(rounds, float(target), self.report.metrics)
        if self.deadline_stop is not None:
            return min(rule, self.deadline_stop.round)
        return rule


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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
