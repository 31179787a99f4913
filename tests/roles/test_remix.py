"""The remix in the protocol: its precision budget, and no remix with a single validator."""

from __future__ import annotations

import dataclasses

import pytest

from deltaml.crypto import MASK_STATISTICAL_BITS
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import messages as m
from deltaml.roles.aggregator import _metric_growth
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport import RecordingTransport, Transport

CONFIG = SimulationConfig(
    rounds=16, eval_every=1, key_bits=512, allow_test_keys=True, contributions=False
)


@dataclasses.dataclass
class Run:
    recorder: RecordingTransport
    result: SimulationResult
    n_features: int


def _run(owners: int, config: SimulationConfig = CONFIG) -> Run:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, owners, seed=0)
    holder: dict[str, RecordingTransport] = {}

    def wrap(inner: Transport) -> Transport:
        holder["r"] = RecordingTransport(inner)
        return holder["r"]

    result = simulate_shares(config, "linear", "regression", shares, None, transport_wrapper=wrap)
    return Run(holder["r"], result, shares[0].n_features)


@pytest.fixture(scope="module")
def two_validators() -> Run:
    return _run(7)


def test_the_refresh_schedule_reserves_room_for_the_remix(two_validators: Run) -> None:
    """Every evaluation grows within what the aggregator reserves for it, refreshes included.

    An evaluation is three fixed-point rotations (the validator's, the aggregator's, the
    remixer's). Reserving two, as before the remix, would not cover it; with all three the
    remixed vector never eats into the bits a refresh mask needs.
    """
    run = two_validators
    assert run.result.verified and run.result.refreshes >= 2
    precision = CONFIG.precision_bits
    reserved = _metric_growth(precision, len(run.result.validators), run.n_features)
    totals = {}
    growth = []
    for delivery in run.recorder.deliveries:
        msg = delivery.message
        if isinstance(msg, m.EvaluateRequest):
            totals[msg.round] = msg.total
        elif isinstance(msg, m.Remix):
            total, remixed = totals[msg.round], msg.vector
            assert remixed.headroom_bits >= MASK_STATISTICAL_BITS + 3, msg.round
            if msg.round > 0:  # round 0 evaluates the zero model: there is nothing to grow
                growth.append(remixed.bound.bit_length() - total.bound.bit_length())
    assert len(growth) == CONFIG.rounds
    assert max(growth) <= reserved
    assert max(growth) > 2 * (precision + 8)  # the reservation before the remix was too small


def test_a_single_validator_remixes_too() -> None:
    """Five owners: one validator. It has no secret to hide from the aggregator, but it
    remixes anyway: the buyer decrypts only a seated owner's signed output."""
    run = _run(5, dataclasses.replace(CONFIG, rounds=2, contributions=True))
    assert len(run.result.validators) == 1 and run.result.verified
    kinds = {d.message.kind for d in run.recorder.deliveries}
    assert {"RemixRequest", "Remix", "RemixColumnsRequest", "RemixColumns"} <= kinds
    assert {"MetricRequest", "GramRequest"} <= kinds
    passed = run.result.verification.passed  # type: ignore[union-attr]
    assert passed["remixer"] == 4 and passed["metric"] == 3
