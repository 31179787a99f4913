"""The exact solve's part of a simulation (``SimulationConfig(solver="exact")``).

The run itself goes through the roles like the iterative protocol
(:mod:`deltaml.roles.exact`); this module holds what the simulation adds: the buyer's
disclosure of its model into the transcript (what a dispute does, so that verification
checks ``H·w = g``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaml.evidence.transcript import TranscriptWriter
from deltaml.roles.exact import key_holder
from deltaml.roles.exact_aggregator import residuals

if TYPE_CHECKING:
    from deltaml.roles import Aggregator, ModelBuyer


def disclose_exact(aggregator: Aggregator, buyer: ModelBuyer, writer: TranscriptWriter) -> None:
    """The buyer discloses ``w`` and ``u`` with proofs; the record goes on the transcript."""
    holder = key_holder(buyer)
    w, u = holder.opened()
    model_residual, solve_residual = residuals(aggregator, w, u)
    body, signature = holder.disclose(model_residual, solve_residual)
    writer.append(party=buyer.party_id, signer=buyer.address, body=body, signature=signature)
