"""The Gram metric's transcript records (``metric_protocol: gram``; written by
:mod:`deltaml.roles.forms`, checked by :mod:`deltaml.evidence.checks.forms`).
:mod:`deltaml.protocol.records` re-exports them with every other kind."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from deltaml.protocol.record_base import Record, VectorRef


@dataclasses.dataclass(frozen=True)
class GramShare(Record):
    """A validator's encrypted Gram matrix (upper triangle) and its row count."""

    KIND: ClassVar[str] = "GramShare"
    gram: VectorRef
    rows: int


@dataclasses.dataclass(frozen=True)
class GramTotal(Record):
    """The aggregator's sum of every validator's share, in seat order."""

    KIND: ClassVar[str] = "GramTotal"
    inputs: list[str]
    rows: int
    total: VectorRef


@dataclasses.dataclass(frozen=True)
class FormMask(Record):
    """A batch: the vectors evaluated (``scale·[w; −1]``, deterministic from earlier
    records), the pairs, and the aggregator's masked vectors (its masks stay secret)."""

    KIND: ClassVar[str] = "FormMask"
    label: str
    scale: int
    pairs: list[int]
    vectors: list[VectorRef]
    masked: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class FormMasked(Record):
    """The remixer's masked vectors, ``Enc(H·a²)`` and its proof of added plaintexts."""

    KIND: ClassVar[str] = "FormMasked"
    label: str
    inputs: list[str]
    vectors: list[VectorRef]
    gram_masks: list[VectorRef]
    proof: list[str]


@dataclasses.dataclass(frozen=True)
class FormProducts(Record):
    """The buyer's ``Enc(Hũ_k)`` and ``Enc(ũ_kᵀHũ_t)``."""

    KIND: ClassVar[str] = "FormProducts"
    label: str
    masked: list[str]
    gram: str
    products: list[VectorRef]
    terms: VectorRef


@dataclasses.dataclass(frozen=True)
class FormShare(Record):
    """The aggregator's share of every pair (its masks' terms)."""

    KIND: ClassVar[str] = "FormShare"
    label: str
    share: VectorRef


@dataclasses.dataclass(frozen=True)
class FormCombined(Record):
    """The remixer's sum of the buyer's terms and both shares, one per pair."""

    KIND: ClassVar[str] = "FormCombined"
    label: str
    terms: str
    share: str
    values: VectorRef


@dataclasses.dataclass(frozen=True)
class FormValues(Record):
    """The buyer's decryption of the forms and of ``ũ``, with proofs, and the results."""

    KIND: ClassVar[str] = "FormValues"
    label: str
    results: list[float]
    values: list[str]
    plaintexts: list[str]
    randomness: list[str]
    opened: list[str]
    opened_randomness: list[str]
    base_sse: float


#: Every kind of this module, for :data:`deltaml.protocol.records.RECORD_TYPES`.
FORM_RECORDS: tuple[type[Record], ...] = (
    GramShare,
    GramTotal,
    FormMask,
    FormMasked,
    FormProducts,
    FormShare,
    FormCombined,
    FormValues,
)
