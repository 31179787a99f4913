"""The settlement rule: moved to :mod:`deltaml.protocol.payouts` (re-exported here)."""

from __future__ import annotations

from deltaml.protocol.payouts import (
    AGGREGATOR_PERCENT,
    MAX_CONTRIBUTION,
    MAX_METRIC,
    METRIC_SCALE,
    TRAINERS_PERCENT,
    VALIDATORS_PERCENT,
    Payouts,
    compute_payouts,
    scale_metric,
)
from deltaml.protocol.spec import MAX_DEPOSIT_WEI, MAX_PARTICIPANTS

__all__ = [
    "AGGREGATOR_PERCENT",
    "MAX_CONTRIBUTION",
    "MAX_DEPOSIT_WEI",
    "MAX_METRIC",
    "MAX_PARTICIPANTS",
    "METRIC_SCALE",
    "TRAINERS_PERCENT",
    "VALIDATORS_PERCENT",
    "Payouts",
    "compute_payouts",
    "scale_metric",
]
