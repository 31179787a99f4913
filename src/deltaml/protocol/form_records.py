"""The Gram metric's transcript records (``metric_protocol: gram``; written by
:mod:`deltaml.roles.forms`, checked by :mod:`deltaml.evidence.checks.forms`).
:mod:`deltaml.protocol.records` re-exports them with every other kind.

The shares ``Enc(H_v)``, the second holder's ``Enc(H a²)`` and the first holder's share
are sealed: the buyer holds the key."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from deltaml.protocol.record_base import Record, VectorRef


@dataclasses.dataclass(frozen=True)
class GramShare(Record):
    """A validator's encrypted Gram matrix (upper triangle; sealed), its row count and
    its claimed bound on the entries (hex)."""

    KIND: ClassVar[str] = "GramShare"
    gram: VectorRef
    rows: int
    bound: str


@dataclasses.dataclass(frozen=True)
class FormMask(Record):
    """A batch: the vectors evaluated (``scale·[w; −1]``, deterministic from earlier
    records; sealed), the pairs, and its two mask holders by the public rule."""

    KIND: ClassVar[str] = "FormMask"
    label: str
    scale: int
    pairs: list[int]
    holders: list[str]
    vectors: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class FormMasked(Record):
    """A mask holder's masked vectors and its proof of added plaintexts, with the digest
    of the Gram shares it summed."""

    KIND: ClassVar[str] = "FormMasked"
    label: str
    inputs: list[str]
    vectors: list[VectorRef]
    proof: list[str]
    gram: str


@dataclasses.dataclass(frozen=True)
class FormCross(Record):
    """The second holder's ``Enc(H a²_k)`` (sealed)."""

    KIND: ClassVar[str] = "FormCross"
    label: str
    products: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class FormOpened(Record):
    """The buyer's ``ũ``: the second holder's vectors decrypted packed, with the proof."""

    KIND: ClassVar[str] = "FormOpened"
    label: str
    opened: list[str]
    plaintexts: list[str]
    randomness: list[str]
    masked: list[str]
    first: list[str]


@dataclasses.dataclass(frozen=True)
class FormShare(Record):
    """The first holder's share of every pair (sealed)."""

    KIND: ClassVar[str] = "FormShare"
    label: str
    opened: str
    cross: list[str]
    share: VectorRef


@dataclasses.dataclass(frozen=True)
class FormCombined(Record):
    """The second holder's sum of both shares, one per pair."""

    KIND: ClassVar[str] = "FormCombined"
    label: str
    opened: str
    share: str
    values: VectorRef


@dataclasses.dataclass(frozen=True)
class FormValues(Record):
    """The buyer's decryption of the forms, with proofs, and the results."""

    KIND: ClassVar[str] = "FormValues"
    label: str
    results: list[float]
    values: list[str]
    plaintexts: list[str]
    randomness: list[str]
    base_sse: float


#: Every kind of this module, for :data:`deltaml.protocol.records.RECORD_TYPES`.
FORM_RECORDS: tuple[type[Record], ...] = (
    GramShare,
    FormMask,
    FormMasked,
    FormCross,
    FormOpened,
    FormShare,
    FormCombined,
    FormValues,
)
