"""The verifier as small checks, one module per concern.

:class:`~deltaml.evidence.checks.base.Verifier` walks the records and checks what
they all share (hash chain, format, signature, participant, ciphertexts); the body
of each record goes to the one function :data:`HANDLERS` names for its kind:

- :mod:`.header` — the header (key, spec, seats, split) and the statistics;
- :mod:`.rounds` — initial total, broadcasts, states, sums, drops, a deadline stop;
- :mod:`.metrics` — residuals, mix, remix and the published metric;
- :mod:`.contributions` — the contribution columns, their mixes and Shapley values;
- :mod:`.settlement` — the payouts, the final record, completeness;
- :mod:`.exact` — the one-shot exact solve (``solver: exact``), :mod:`.exact_parts` its
  trainers' parts (with contributions);
- :mod:`.forms` — the Gram metric (``metric_protocol: gram``): the validators' Gram
  matrices, each batch of forms, the metric or contributions from them;
- :mod:`.proofs` — decryption proofs, sums and re-randomizations the others share.

A new record kind is one dataclass in :mod:`deltaml.protocol.records`, its role in
:data:`~deltaml.evidence.checks.base.ROLE_OF`, and one function here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deltaml.evidence.checks import (
    contributions,
    exact,
    forms,
    header,
    metrics,
    rounds,
    settlement,
)
from deltaml.evidence.checks.base import Handler, Registry, Verifier
from deltaml.evidence.report import VerificationReport

#: Record kind → the function that checks its body.
HANDLERS: Mapping[str, Handler] = {
    "Header": header.on_header,
    "EncryptedSums": header.on_encrypted_sums,
    "StatsTotal": header.on_stats_total,
    "PublicStats": header.on_public_stats,
    "InitialTotal": rounds.on_initial_total,
    "Broadcast": rounds.on_broadcast,
    "Dropped": rounds.on_dropped,
    "DeadlineStop": rounds.on_deadline_stop,
    "StateUpdate": rounds.on_state_update,
    "Sum": rounds.on_sum,
    "EncryptedResiduals": metrics.on_encrypted_residuals,
    "Mix": metrics.on_mix,
    "Remix": metrics.on_remix,
    "MetricValue": metrics.on_metric_value,
    "ContributionRequest": contributions.on_contribution_request,
    "ContributionColumns": contributions.on_contribution_columns,
    "MixColumns": contributions.on_mix_columns,
    "RemixColumns": contributions.on_remix_columns,
    "ContributionValues": contributions.on_contribution_values,
    "Payouts": settlement.on_payouts,
    **exact.EXACT_CHECKS,  # solver: exact
    **forms.FORM_CHECKS,  # metric_protocol: gram
}

REGISTRY = Registry(
    handlers=HANDLERS, header=header.check_header, finish=settlement.check_completeness
)


def run_checks(
    records: list[Mapping[str, Any]],
    sealed: Mapping[str, bytes] | None,
    report: VerificationReport,
    expected_head: str | None = None,
) -> None:
    """Check ``records`` (and ``sealed`` ciphertexts by digest), adding to ``report``."""
    Verifier(records, sealed, report, expected_head, registry=REGISTRY).run()
