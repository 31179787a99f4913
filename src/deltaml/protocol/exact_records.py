"""The exact solve's transcript records (``solver: exact``; written by
:mod:`deltaml.roles.exact_aggregator`, checked by :mod:`deltaml.evidence.checks.exact`).
:mod:`deltaml.protocol.records` re-exports them with every other kind."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from deltaml.protocol.record_base import OPTIONAL, Record, VectorRef


@dataclasses.dataclass(frozen=True)
class ExactSystem(Record):
    """A trainer's encrypted system ``[H_i | g_i]``."""

    KIND: ClassVar[str] = "ExactSystem"
    system: VectorRef


@dataclasses.dataclass(frozen=True)
class ExactMasked(Record):
    """A trainer's masked system, the part the buyer solves."""

    KIND: ClassVar[str] = "ExactMasked"
    masked: VectorRef
    #: With contributions: the digest of the unmasking values it was sent.
    mask_digest: str = dataclasses.field(default="", metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class ExactCheck(Record):
    """A trainer's check part, handed to the buyer only with the model."""

    KIND: ClassVar[str] = "ExactCheck"
    check: VectorRef


@dataclasses.dataclass(frozen=True)
class ExactSolution(Record):
    """The buyer's encrypted solution of the masked sum it names."""

    KIND: ClassVar[str] = "ExactSolution"
    solution: VectorRef
    masked_sum: str


@dataclasses.dataclass(frozen=True)
class ExactSums(Record):
    """The aggregator's sums of every trainer's system and masked part, in seat order."""

    KIND: ClassVar[str] = "ExactSums"
    precision_bits: int
    systems: list[str]
    masked: list[str]
    checks: list[str]
    system_total: VectorRef
    masked_total: VectorRef
    #: Right-hand sides beyond the model's: each trainer's part and the check column.
    extra_columns: int = dataclasses.field(default=0, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class ExactSolveCheck(Record):
    """The buyer's proof that its solution's check column holds: the weights and shift
    the aggregator revealed, and the randomness of the combination (which is 0)."""

    KIND: ClassVar[str] = "ExactSolveCheck"
    solution: str
    weights: list[str]
    shift: list[str]
    randomness: list[str]


@dataclasses.dataclass(frozen=True)
class ExactParts(Record):
    """Every trainer's part ``Enc(m·u_i)`` of the exact model (sealed), unmasked from the
    solution it names with the ``D`` and offsets in ``secrets`` (sealed: never the
    buyer's), whose digest every trainer signed."""

    KIND: ClassVar[str] = "ExactParts"
    solution: str
    multiplier: int
    secrets: VectorRef
    parts: list[VectorRef]


@dataclasses.dataclass(frozen=True)
class ExactModel(Record):
    """The aggregator's encrypted model, unmasked from the buyer's solution it names."""

    KIND: ClassVar[str] = "ExactModel"
    solution: str
    model: VectorRef


@dataclasses.dataclass(frozen=True)
class ExactTotal(Record):
    """The exact model times the number of trainers: the total the validators evaluate
    as round 1 (sealed, as the model is)."""

    KIND: ClassVar[str] = "ExactTotal"
    model: str
    multiplier: int
    total: VectorRef


@dataclasses.dataclass(frozen=True)
class ExactDisclosure(Record):
    """The buyer's opening of its model ``w``, the solution ``u`` and the two residuals,
    each value with the randomness that proves its decryption (hex integers)."""

    KIND: ClassVar[str] = "ExactDisclosure"
    model: list[str]
    model_randomness: list[str]
    solution: list[str]
    solution_randomness: list[str]
    model_residual: list[str]
    model_residual_randomness: list[str]
    solve_residual: list[str]
    solve_residual_randomness: list[str]


# -- How a run ends.
