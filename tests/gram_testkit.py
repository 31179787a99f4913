"""Small runs of the Gram metric (``metric_protocol: gram``) on diabetes, for the attack
tests: 1,024-bit test keys, 3 rounds, evaluations at rounds 0 and 3, contributions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport.base import Transport

CONFIG = SimulationConfig(
    rounds=3, eval_every=3, key_bits=1024, allow_test_keys=True, chain=False,
    metric_protocol="gram",
)  # fmt: skip


def run_gram(
    owners: int = 5,
    wrapper: Callable[[Transport], Transport] | None = None,
    **changes: Any,
) -> SimulationResult:
    """A run of ``owners`` (5: one validator, so the aggregator holds the first mask;
    7: two validators), the aggregator's transport wrapped by ``wrapper``."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, owners, seed=0)
    config = dataclasses.replace(CONFIG, **changes)
    wrap = {"transport_wrapper": wrapper} if wrapper is not None else {}
    return simulate_shares(config, "linear", "regression", shares, None, **wrap)
