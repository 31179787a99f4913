"""The record's time by phase: wall seconds, and in a simulation the CPU split between
the central parties (aggregator, buyer) and the owners (issue 15)."""

from __future__ import annotations

import pytest

from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.roles.training_state import PhaseClock, TrainingRecord
from deltaml.simulation import SimulationConfig, simulate_shares


@pytest.mark.parametrize("solver", ["admm", "exact"])
def test_a_simulation_splits_each_phase_between_central_and_owners(solver: str) -> None:
    config = SimulationConfig(
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        verify=False,
        rounds=2,
        eval_every=2,
        solver=solver,
    )
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    result = simulate_shares(config, "linear", "regression", split_owners(train, 5), test)
    cpu = result.record.cpu
    assert set(cpu) == {"setup", "training", "metrics", "contributions"}
    for phase, split in cpu.items():
        assert split["owners"] > 0 and split["central"] > 0, (phase, split)
    # Owners compute the rounds; the buyer's decryptions and the aggregator's sums are
    # central: neither side's time is counted on the other's. (The exact solve's is
    # the buyer's decryptions and solve: mostly central.)
    if solver == "admm":
        assert cpu["training"]["owners"] > 0.1 * cpu["training"]["central"]
    assert result.to_json()["cpu_seconds"] == {
        p: {k: round(v, 4) for k, v in s.items()} for p, s in cpu.items()
    }


def test_without_local_parties_only_wall_time_is_recorded() -> None:
    record = TrainingRecord(["a"], ["b"], 0)
    clock = PhaseClock(lambda: None, "buyer")  # the parties run on their own machines
    with clock.phase(record, "training"):
        sum(range(10_000))
    assert record.training_seconds > 0 and record.cpu == {}


def test_the_buyer_counts_as_central() -> None:
    spent = {"buyer": 0.0, "owner-1": 0.0}
    record = TrainingRecord(["owner-1"], [], 0)
    clock = PhaseClock(lambda: dict(spent), "buyer")
    with clock.phase(record, "metrics"):
        spent["buyer"] += 5.0
        spent["owner-1"] += 0.25
    assert record.cpu["metrics"]["owners"] == 0.25
