"""What a verification found: :class:`VerificationReport`, its :class:`Failure` s and the
:class:`Settlement` a transcript ends in."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from deltaml.evidence.transcript import (
    GENESIS,
)

#: One line per limit of public verification, printed by ``deltaml verify``.
NOT_PUBLICLY_CHECKABLE = (
    "what owners computed from their own data: signed, provable only by revealing the data",
    "the mixing rotations of the aggregator and the remixer: only committed to "
    "(opening both would expose each validator's own error); with metric_protocol gram, "
    "their shares of each batch's correction, signed (opening them would unmask the model)",
    "the buyer's re-encryptions in refreshes: trainers sign the states they continue from",
    "when a deadline stop happened: the aggregator's word (only after an evaluated round,"
    " for the deadline on chain)",
)


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
