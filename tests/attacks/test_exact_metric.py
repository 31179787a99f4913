"""Attack: the aggregator has the validators evaluate something other than the exact
model, to publish a worse final metric (a smaller improvement pays the trainers less
and refunds the buyer more).

The exact model's metric (round 1 of ``solver: exact``) evaluates ``Enc(m·w)``, the
delivered model times the number of trainers. ``deltaml verify`` recomputes that total
from the sealed model (the ``ExactTotal`` record) and fails a run whose evaluated
total is anything else — here the model times ``m + 1``.
"""

from __future__ import annotations

from typing import Any

import pytest

from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.simulation import SimulationConfig, simulate_shares

CONFIG = SimulationConfig(
    solver="exact", key_bits=1024, allow_test_keys=True, chain=False, contributions=False
)


def _run() -> Any:
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 5, seed=0)
    return simulate_shares(CONFIG, "linear", "regression", shares, test)


def test_an_inflated_model_evaluated_as_the_exact_one_fails_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deltaml.roles import exact_aggregator as exact

    honest = _run()
    assert honest.verified is True
    real = exact.exact_total
    monkeypatch.setattr(exact, "exact_total", lambda enc_w, m: real(enc_w, m + 1))
    cheated = _run()
    assert cheated.rounds[-1].metric > honest.rounds[-1].metric  # what it was after
    assert cheated.verification is not None and not cheated.verification.ok
    assert any(
        "does not encrypt the exact model times the trainers" in str(f)
        for f in cheated.verification.failures
    ), cheated.verification.failures
