"""The settlement rule, as a pure function of integers (wei).

The contract (``Marketplace.sol``, ``_computePayouts``) implements exactly the same
arithmetic; tests check that both agree on the same inputs.

Rule
----
With deposit ``D`` wei, initial metric ``m0`` and final metric ``m1`` (scaled
integers, lower is better, e.g. MSE × 10⁶):

- trainers share ``pool = D · 70 · max(0, m0 − m1) // (100 · m0)`` (nothing when
  ``m0 == 0`` or the model did not improve), trainer ``i`` getting
  ``pool · c_i // Σc`` by its non-negative contribution weight ``c_i`` (nothing
  at all when ``Σc == 0``);
- validators share ``D · 20 // 100`` equally, each ``(D · 20 // 100) // V``;
- the aggregator gets ``D · 10 // 100``;
- the buyer is refunded ``D`` minus everything above, so every wei is accounted
  for: ``Σ payouts + refund == D`` always, and all roundings favour the buyer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deltaml.errors import DeltaMLValueError

TRAINERS_PERCENT = 70
VALIDATORS_PERCENT = 20
AGGREGATOR_PERCENT = 10
#: Metrics are posted on chain as ``round(value · METRIC_SCALE)``.
METRIC_SCALE = 10**6
# The rule itself has no limit on participants (a simulation without a chain may
# split among more); the contract's MAX_PARTICIPANTS is in deltaml.protocol.spec.
#: The contract refuses larger inputs (``MetricTooLarge``, ``ContributionTooLarge``,
#: ``DepositTooLarge``) so that none of its products can overflow 256 bits; within
#: these bounds it computes exactly what :func:`compute_payouts` computes.
MAX_METRIC = 2**96 - 1
MAX_CONTRIBUTION = 2**96 - 1


@dataclass(frozen=True)
class Payouts:
    """What each party receives, in wei; ``total() == deposit`` always."""

    trainers: tuple[int, ...]
    validators: tuple[int, ...]
    aggregator: int
    refund: int

    def total(self) -> int:
        return sum(self.trainers) + sum(self.validators) + self.aggregator + self.refund

    def by_party(
        self, trainers: Sequence[str], validators: Sequence[str], aggregator: str
    ) -> dict[str, int]:
        """Wei per party id: the trainers and validators in seat order, and the aggregator."""
        return {
            **dict(zip(trainers, self.trainers, strict=True)),
            **dict(zip(validators, self.validators, strict=True)),
            aggregator: self.aggregator,
        }


def scale_metric(value: float) -> int:
    """Scale a non-negative metric (e.g. an MSE) to the integer posted on chain."""
    if not value >= 0:
        raise DeltaMLValueError(f"metric must be a non-negative number, got {value!r}")
    return round(value * METRIC_SCALE)


def compute_payouts(
    deposit_wei: int,
    initial_metric: int,
    final_metric: int,
    contributions: Sequence[int],
    n_validators: int,
) -> Payouts:
    """Split ``deposit_wei`` by the rule in this module's docstring.

    Parameters
    ----------
    deposit_wei:
        The escrowed payment, ``>= 0``.
    initial_metric, final_metric:
        Scaled integer metrics (lower is better), ``>= 0``.
    contributions:
        One non-negative integer weight per trainer (clamp negative Shapley values
        to zero before calling).
    n_validators:
        Number of validators, ``>= 1``.
    """
    ints = [deposit_wei, initial_metric, final_metric, n_validators, *contributions]
    if any(not isinstance(v, int) or isinstance(v, bool) for v in ints):
        raise DeltaMLValueError("payouts are computed on integers only")
    if deposit_wei < 0 or initial_metric < 0 or final_metric < 0:
        raise DeltaMLValueError("deposit and metrics must be non-negative")
    if any(c < 0 for c in contributions):
        raise DeltaMLValueError("contributions must be non-negative (clamp first)")
    if not contributions:
        raise DeltaMLValueError("at least one trainer is needed")
    if n_validators < 1:
        raise DeltaMLValueError("at least one validator is needed")

    gain = initial_metric - final_metric if final_metric < initial_metric else 0
    pool = deposit_wei * TRAINERS_PERCENT * gain // (100 * initial_metric) if gain else 0
    total_c = sum(contributions)
    trainers = tuple(pool * c // total_c if total_c else 0 for c in contributions)
    per_validator = deposit_wei * VALIDATORS_PERCENT // 100 // n_validators
    validators = (per_validator,) * n_validators
    aggregator = deposit_wei * AGGREGATOR_PERCENT // 100
    refund = deposit_wei - sum(trainers) - sum(validators) - aggregator
    return Payouts(trainers, validators, aggregator, refund)
