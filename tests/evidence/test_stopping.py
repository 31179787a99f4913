"""A target improvement ends training early, by one public rule the verifier enforces:
the aggregator can neither stop before the target nor train (and be paid for) rounds
after it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deltaml.evidence.published import last_round
from deltaml.evidence.transcript import read_records
from deltaml.evidence.verify import verify_transcript
from deltaml.roles import aggregator as aggregator_module
from deltaml.simulation import SimulationConfig, run_simulation

SMALL = {"key_bits": 512, "allow_test_keys": True, "chain": False}


def test_the_rule_stops_at_the_first_evaluation_that_reaches_the_target() -> None:
    metrics = {0: 100.0, 3: 70.0, 6: 55.0, 9: 50.0, 12: 49.0}
    assert last_round(12, 0.0, metrics) == 12  # no target: every round
    assert last_round(12, 30.0, metrics) == 3  # exactly 30 % counts
    assert last_round(12, 40.0, metrics) == 6
    assert last_round(12, 51.0, metrics) == 12  # never reached: every round
    assert last_round(12, 50.0, {0: 100.0, 12: 40.0}) == 12  # the last round is the last
    assert last_round(12, 10.0, {3: 1.0}) == 12  # no initial metric: no basis to stop


def test_training_stops_at_the_target_and_the_run_verifies(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    config = {**SMALL, "chain": True}  # settles on the embedded chain too
    result = run_simulation(
        SimulationConfig(rounds=12, target_improvement=40.0, transcript=str(path), **config)
    )
    assert result.verified, result.verification_failures
    assert result.settlement is not None and result.settlement.status == "SETTLED"
    stopped = result.rounds[-1].round
    assert stopped < 12 and stopped % 3 == 0
    gain = 100 * (result.initial_metric - result.rounds[-1].metric) / result.initial_metric
    assert gain >= 40.0
    earlier = [r.metric for r in result.rounds[:-1] if r.metric is not None]
    assert all(100 * (result.initial_metric - m) / result.initial_metric < 40 for m in earlier)
    final = [r for r in read_records(path) if r["type"] == "Broadcast"][-1]
    assert final["body"]["purpose"] == "final" and final["body"]["round"] == stopped


@pytest.mark.parametrize(
    ("stops_at", "target", "check", "detail"),
    [
        # trains past the target: 40 % is reached at round 3, it goes on to 6
        (lambda rounds: rounds, 40.0, "stopping", "round(s) 4, 5, 6 trained after"),
        # stops short of it: 99 % is never reached, it stops at 3
        (lambda rounds: 3, 99.0, "completeness", "missing round 4"),
    ],
    ids=["past-the-target", "short-of-it"],
)
def test_an_aggregator_that_breaks_the_stopping_rule_is_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stops_at: Callable[[int], int],
    target: float,
    check: str,
    detail: str,
) -> None:
    monkeypatch.setattr(
        aggregator_module, "last_round", lambda rounds, target, metrics: stops_at(rounds)
    )
    path = tmp_path / "run.jsonl"
    run_simulation(
        SimulationConfig(
            rounds=6, target_improvement=target, transcript=str(path), verify=False, **SMALL
        )
    )
    report = verify_transcript(path)
    assert not report.ok and check in report.failed_checks()
    assert any(detail in f.detail for f in report.failures), report.failures
