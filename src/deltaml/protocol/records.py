"""Typed transcript records: the bodies the aggregator writes and the verifier reads.

Each record kind is one frozen dataclass; its fields are the body's fields, with
the same names and JSON encodings as always (vector references are
``{"sha256", "length", "exponent"}`` objects, ciphertext digests hex strings,
big integers hex strings), so transcripts, signatures and the chain commitments
written before these classes existed still verify. :meth:`Record.to_body` gives
the fields (the recorder adds ``kind`` and ``key`` and signs), and
:meth:`Record.from_body` reads a signed body back, checking every field's type
and raising :class:`RecordError` naming the record and the field.

Adding a record kind:

1. here, a frozen dataclass subclassing :class:`Record` with ``KIND = "MyKind"``
   and typed fields (``int``, ``str``, ``bool``, ``float``, ``list[...]``,
   ``dict[str, Any]``, ``... | None``), and add it to :data:`RECORD_TYPES`;
2. the writer: ``evidence.record(MyKind(...), public=..., sealed=...)``
   (:meth:`deltaml.roles.evidence.EvidenceRecorder.record`);
3. the verifier: the role that may sign it in ``deltaml.evidence.checks.base.ROLE_OF``
   and one function ``on_my_kind(vr, body)`` that starts with
   ``rec = MyKind.from_body(body)``, registered in ``deltaml.evidence.checks.HANDLERS``.

The machinery (:class:`Record`, the field type checks) is in
:mod:`deltaml.protocol.record_base`; this module holds the kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from deltaml.protocol.exact_records import (
    ExactCheck,
    ExactDisclosure,
    ExactMasked,
    ExactModel,
    ExactParts,
    ExactSolution,
    ExactSolveCheck,
    ExactSums,
    ExactSystem,
    ExactTotal,
)
from deltaml.protocol.form_records import FORM_RECORDS
from deltaml.protocol.record_base import OPTIONAL, Record, RecordError, VectorRef

__all__ = [
    "EXACT_KINDS",
    "FORM_KINDS",
    "OPTIONAL_KINDS",
    "RECORD_TYPES",
    "Broadcast",
    "ContributionRequest",
    "DeadlineStop",
    "Dropped",
    "ExactCheck",
    "ExactDisclosure",
    "ExactMasked",
    "ExactModel",
    "ExactParts",
    "ExactSolution",
    "ExactSolveCheck",
    "ExactSums",
    "ExactSystem",
    "ExactTotal",
    "Header",
    "InitialTotal",
    "Mix",
    "MixColumns",
    "Payouts",
    "Record",
    "RecordError",
    "StatsTotal",
    "Sum",
    "VectorRef",
]


@dataclasses.dataclass(frozen=True)
class Header(Record):
    """The first record: format, the buyer's public key, the spec, owners, split, seats.

    ``participants`` are ``{"id", "role", "address"}`` objects (buyer, aggregator,
    then every owner as trainer or validator).
    """

    KIND: ClassVar[str] = "Header"
    format: str
    public_key: dict[str, Any]
    spec: dict[str, Any]
    n_features: int
    owners: list[str]
    trainers: list[str]
    validators: list[str]
    participants: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class StatsTotal(Record):
    """The aggregator's sum of the owners' encrypted statistics."""

    KIND: ClassVar[str] = "StatsTotal"
    inputs: list[str]
    contributors: int
    include_target: bool
    total: VectorRef


@dataclasses.dataclass(frozen=True)
class InitialTotal(Record):
    """The initial model times the number of trainers: the total round 1 starts from."""

    KIND: ClassVar[str] = "InitialTotal"
    model: VectorRef
    multiplier: int
    total: VectorRef


@dataclasses.dataclass(frozen=True)
class Broadcast(Record):
    """A re-randomized total sent out (``purpose``: round, evaluate, final), with the
    exponents that prove it encrypts ``source``."""

    KIND: ClassVar[str] = "Broadcast"
    round: int
    purpose: str
    source: str
    exponents: list[str]
    outgoing: VectorRef


@dataclasses.dataclass(frozen=True)
class Sum(Record):
    """The sum of the active trainers' signed states of a round (or refresh)."""

    KIND: ClassVar[str] = "Sum"
    round: int
    phase: str
    inputs: list[str]
    total: VectorRef


@dataclasses.dataclass(frozen=True)
class Dropped(Record):
    """Trainers that did not answer in ``round`` leave; ``remaining`` go on."""

    KIND: ClassVar[str] = "Dropped"
    round: int
    dropped: list[str]
    remaining: list[str]


@dataclasses.dataclass(frozen=True)
class Mix(Record):
    """The aggregator's mixing of the validators' residual vectors of a round."""

    KIND: ClassVar[str] = "Mix"
    round: int
    inputs: list[str]
    rows: int
    commitment: str
    mixed: VectorRef


@dataclasses.dataclass(frozen=True)
class ContributionRequest(Record):
    """The trainers' round-one updates, re-randomized, sent to the validators."""

    KIND: ClassVar[str] = "ContributionRequest"
    sources: list[str]
    exponents: list[list[str]]
    outgoing: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class MixColumns(Record):
    """The aggregator's mixing of the validators' contribution columns."""

    KIND: ClassVar[str] = "MixColumns"
    inputs: list[list[str]]
    commitment: str
    columns: list[VectorRef]


# -- Messages other parties sign: the body each signs is the record (``roles.evidence``).


@dataclasses.dataclass(frozen=True)
class EncryptedSums(Record):
    """An owner's encrypted column sums for the standardization."""

    KIND: ClassVar[str] = "EncryptedSums"
    sums: VectorRef


@dataclasses.dataclass(frozen=True)
class PublicStats(Record):
    """The buyer's decryption of the statistics total, with its proof, and the
    standardization that follows from it."""

    KIND: ClassVar[str] = "PublicStats"
    total: str
    plaintexts: list[str]
    randomness: list[str]
    count: int
    means: list[float]
    scales: list[float]
    target_mean: float
    target_scale: float
    #: More than two classes: each class's rows and standardized means (row-major).
    class_counts: list[int] = dataclasses.field(default_factory=list, metadata=OPTIONAL)
    class_means: list[float] = dataclasses.field(default_factory=list, metadata=OPTIONAL)
    #: Empty cells imputed: each column's mean over the non-empty cells of all owners.
    impute_means: list[float] = dataclasses.field(default_factory=list, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class StateUpdate(Record):
    """A trainer's new encrypted state for ``round`` (``phase``: round or refresh)."""

    KIND: ClassVar[str] = "StateUpdate"
    round: int
    phase: str
    input: str
    state: VectorRef


@dataclasses.dataclass(frozen=True)
class MaskedState(Record):
    """A trainer's state masked for the key holder's refresh: signed, checked by the
    buyer before it decrypts, and not kept in the transcript (not in RECORD_TYPES)."""

    KIND: ClassVar[str] = "MaskedState"
    round: int
    masked: VectorRef


@dataclasses.dataclass(frozen=True)
class EncryptedResiduals(Record):
    """A validator's encrypted residuals of the broadcast model on its ``rows``."""

    KIND: ClassVar[str] = "EncryptedResiduals"
    round: int
    rows: int
    input: str
    vector: VectorRef


@dataclasses.dataclass(frozen=True)
class Remix(Record):
    """The remixer's second rotation of a round's mixed residuals."""

    KIND: ClassVar[str] = "Remix"
    round: int
    input: str
    commitment: str
    vector: VectorRef


@dataclasses.dataclass(frozen=True)
class MetricValue(Record):
    """The buyer's decryption of a round's remixed residuals and the metric from it."""

    KIND: ClassVar[str] = "MetricValue"
    round: int
    rows: int
    vector: str
    slot_bits: int
    plaintexts: list[str]
    randomness: list[str]
    value: float
    #: The exact model's evaluation (``solver: exact``): the common denominator ``δ`` of
    #: the model (hex); the vector's ciphertexts raised to it are what was decrypted.
    denominator: str = dataclasses.field(default="", metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class ContributionColumns(Record):
    """A validator's encrypted contribution columns from the trainers' first updates."""

    KIND: ClassVar[str] = "ContributionColumns"
    inputs: list[str]
    columns: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class RemixColumns(Record):
    """The remixer's second rotation of the mixed contribution columns."""

    KIND: ClassVar[str] = "RemixColumns"
    inputs: list[str]
    commitment: str
    columns: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class ContributionValues(Record):
    """The buyer's decryption of the remixed columns: the Gram matrix and the exact
    Shapley value of each trainer."""

    KIND: ClassVar[str] = "ContributionValues"
    columns: list[str]
    slot_bits: int
    plaintexts: list[str]
    randomness: list[str]
    gram: list[list[float]]
    base_round: int
    base_sse: float
    seed: int
    method: str
    values: list[float]
    #: The exact model's denominator (hex) the columns were raised to (``solver: exact``).
    denominator: str = dataclasses.field(default="", metadata=OPTIONAL)


# -- The exact solve's signed messages (``solver: exact``, roles/exact.py).


@dataclasses.dataclass(frozen=True)
class DeadlineStop(Record):
    """The aggregator stopped after ``round`` so as to finish before the deadline."""

    KIND: ClassVar[str] = "DeadlineStop"
    round: int
    deadline: int
    at: int
    round_seconds: float
    margin_seconds: float
    next_evaluated_round: int


@dataclasses.dataclass(frozen=True)
class Payouts(Record):
    """The final record: the payment split the contract computes, recomputable by anyone,
    and what binds it to the settlement — the seats' addresses in seat order
    (``{"trainers": [...], "validators": [...]}``), the fingerprint of the request's
    Paillier key, and the chain (``None`` for a run without one)."""

    KIND: ClassVar[str] = "Payouts"
    deposit_wei: int
    initial_round: int
    final_round: int
    initial_metric: int
    final_metric: int
    trainers: list[str]
    contribution_weights: list[int]
    validators: list[str]
    trainers_wei: list[int]
    validators_wei: list[int]
    aggregator_wei: int
    refund_wei: int
    seats: dict[str, list[str]]
    key_fingerprint: str
    chain: dict[str, Any] | None


#: Every typed record kind by its name.
RECORD_TYPES: Mapping[str, type[Record]] = {
    cls.KIND: cls
    for cls in (
        StatsTotal,
        InitialTotal,
        Broadcast,
        Sum,
        Dropped,
        Mix,
        ContributionRequest,
        MixColumns,
        EncryptedSums,
        PublicStats,
        StateUpdate,
        EncryptedResiduals,
        Remix,
        MetricValue,
        ContributionColumns,
        RemixColumns,
        ContributionValues,
        ExactSystem,
        ExactMasked,
        ExactCheck,
        ExactSolution,
        ExactSums,
        ExactSolveCheck,
        ExactParts,
        ExactModel,
        ExactTotal,
        ExactDisclosure,
        DeadlineStop,
        Payouts,
    )
} | {cls.KIND: cls for cls in FORM_RECORDS}

#: The kinds only a ``solver: exact`` run writes.
EXACT_KINDS = frozenset(
    {
        "ExactSystem",
        "ExactMasked",
        "ExactCheck",
        "ExactSolution",
        "ExactSums",
        "ExactModel",
        "ExactTotal",
    }
)

#: The kinds only a ``metric_protocol: gram`` run writes.
FORM_KINDS = frozenset(cls.KIND for cls in FORM_RECORDS)

#: Kinds an honest run writes only sometimes: a dropped trainer, a stop before the
#: deadline, the buyer's disclosure of an exact model, the exact route's parts (with
#: contributions).
OPTIONAL_KINDS = frozenset(
    {"Dropped", "DeadlineStop", "ExactDisclosure", "ExactSolveCheck", "ExactParts"}
)
