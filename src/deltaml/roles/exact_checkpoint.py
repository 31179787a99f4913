"""What the aggregator keeps of the exact route (``solver: exact``) to go on after a
restart (:func:`deltaml.roles.exact_aggregator.train_exact`).

Each trainer answers its ``ExactRequest`` once per set-up and the buyer solves once per
request (the anti-oracle guards of :mod:`deltaml.roles.exact`), so the route cannot be
started over once the trainers were asked: what they and the buyer answered must
survive. The stages, each saved before the step after it:

- ``asked``: set-up and the initial model's metric done, the trainers about to be asked.
  A restart here cannot go on (the trainers may have answered, the buyer may have
  solved, and neither answers again): the request fails, refundable, with one line.
- ``solved``: the buyer's signed solution accepted, the model unmasked (``ExactModel``
  recorded). What is left — the exact model's metric, the parts and contributions, the
  split, the delivery — asks no trainer and the buyer nothing it has answered.
- ``measured``: the exact model's metric done.
- ``checked`` (contributions): the buyer proved the check column, the parts unmasked.
- ``valued`` (contributions): the contributions measured; the split is recomputed.

A restart inside a step goes on from the stage before it, asking that step again; the
steps the parties answer once (the buyer's check of the parts, a validator's remix) are
each the only such question of their step, so only a crash between that answer and the
next save fails the request.

Secrets: the mask's ``D``, the parts' offsets and check weights and the rotation
openings are the aggregator's own (``L`` is not kept: nothing after the solution needs
it). They are kept, like the iterative checkpoint's rotation openings, only in the
aggregator's database, next to the sealed transcript (which holds ``D`` and the offsets
anyway, for verification); never sent to the buyer and never logged (their ``repr``
hides them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deltaml.crypto import EncryptedVector
from deltaml.crypto.serialization import pack_vectors, unpack_vectors
from deltaml.errors import ProtocolError
from deltaml.evidence.signatures import hex_ints
from deltaml.learning.exact_parts import PartsSecret
from deltaml.learning.exact_solve import Mask
from deltaml.protocol.exact_messages import ExactCheck, ExactSolution
from deltaml.protocol.rules import EXACT_ROUND
from deltaml.roles.training_state import (
    TrainingRecord,
    openings_from_json,
    openings_to_json,
    record_from_json,
    record_to_json,
)

ASKED, SOLVED, MEASURED, CHECKED, VALUED = "asked", "solved", "measured", "checked", "valued"
STAGES = (ASKED, SOLVED, MEASURED, CHECKED, VALUED)

#: Why a restart before the buyer's solution was saved fails the request.
NOT_RESUMABLE = (
    "the aggregator restarted after asking the trainers for the exact solve and before "
    "it had saved the buyer's solution: each trainer answers once per set-up and the "
    "buyer solves once per request, so the solve cannot be asked again; the request "
    "fails and the deposit is refundable"
)


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v, 16) for v in values)


@dataclass
class ExactCheckpoint:
    """The exact route's state after ``stage`` (see the module's docstring)."""

    stage: str
    record: TrainingRecord
    rotation_openings: dict[str, tuple[int, bytes]] = field(repr=False)
    transcript_head: str
    transcript_count: int
    #: ``Enc(w)``, unmasked (from ``solved`` on).
    model: EncryptedVector | None = None
    #: Every trainer's signed check part (delivered with the model), trainer order.
    checks: tuple[ExactCheck, ...] = ()
    #: The buyer's signed solution, the mask and, with contributions, the parts' secret.
    solution: ExactSolution | None = None
    mask: Mask | None = field(default=None, repr=False)
    secret: PartsSecret | None = field(default=None, repr=False)
    #: Each trainer's part ``Enc(m·u_i)`` (from ``checked`` on).
    parts: tuple[EncryptedVector, ...] = ()
    #: The sealed sums, the precision and the columns (``residuals`` recomputes from them).
    sums: tuple[EncryptedVector, EncryptedVector, int, int, int] | None = None

    @property
    def round(self) -> int:
        """Rounds done, as the status pages count them: the exact model's once measured."""
        return EXACT_ROUND if STAGES.index(self.stage) >= STAGES.index(MEASURED) else 0

    @property
    def first(self) -> bool:
        """The first checkpoint of a run (set-up and the initial model's metric done);
        the exact solve saves two at round 0, before the trainers are asked and after the
        buyer's solution."""
        return self.stage == ASKED

    def to_json(self) -> dict[str, Any]:
        vectors: list[EncryptedVector] = []

        def put(vector: EncryptedVector) -> int:
            vectors.append(vector)
            return len(vectors) - 1

        data: dict[str, Any] = {
            "exact": self.stage,
            "round": self.round,
            "record": record_to_json(self.record),
            "rotation_openings": openings_to_json(self.rotation_openings),
            "transcript_head": self.transcript_head,
            "transcript_count": self.transcript_count,
            "checks": [[put(c.check), c.signature] for c in self.checks],
            "parts": [put(p) for p in self.parts],
        }
        if self.model is not None:
            data["model"] = put(self.model)
        if self.solution is not None:
            s = self.solution
            data["solution"] = [put(s.solution), s.masked_digest, s.signature]
        if self.mask is not None:
            data["mask"] = {
                "matrix": [hex_ints(row) for row in self.mask.matrix],
                "scale": hex_ints(self.mask.scale),
            }
        if self.secret is not None:
            data["secret"] = {
                "offsets": [hex_ints(t) for t in self.secret.offsets],
                "weights": hex_ints(self.secret.weights),
                "shift": hex_ints(self.secret.shift),
            }
        if self.sums is not None:
            system, masked, p, k, extra = self.sums
            data["sums"] = [put(system), put(masked), p, k, extra]
        data["vectors"] = pack_vectors(vectors) if vectors else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExactCheckpoint:
        stage = str(data["exact"])
        if stage not in STAGES:
            raise ProtocolError(f"the saved checkpoint names an unknown exact stage {stage!r}")
        vectors = unpack_vectors(data["vectors"]) if data.get("vectors") else []
        solution = mask = secret = sums = None
        if "solution" in data:
            at, digest, signature = data["solution"]
            solution = ExactSolution(vectors[at], str(digest), str(signature))
        if "mask" in data:
            mask = Mask(
                tuple(_ints(row) for row in data["mask"]["matrix"]), _ints(data["mask"]["scale"])
            )
        if "secret" in data:
            raw = data["secret"]
            secret = PartsSecret(
                tuple(_ints(t) for t in raw["offsets"]), _ints(raw["weights"]), _ints(raw["shift"])
            )
        if "sums" in data:
            system, masked, p, k, extra = data["sums"]
            sums = (vectors[system], vectors[masked], int(p), int(k), int(extra))
        return cls(
            stage=stage,
            record=record_from_json(data["record"]),
            rotation_openings=openings_from_json(data["rotation_openings"]),
            transcript_head=str(data["transcript_head"]),
            transcript_count=int(data["transcript_count"]),
            model=vectors[data["model"]] if "model" in data else None,
            checks=tuple(ExactCheck(vectors[at], str(sig)) for at, sig in data["checks"]),
            solution=solution,
            mask=mask,
            secret=secret,
            parts=tuple(vectors[at] for at in data["parts"]),
            sums=sums,
        )


def is_exact(data: Mapping[str, Any]) -> bool:
    """Whether a saved checkpoint (its JSON) is the exact route's."""
    return "exact" in data
