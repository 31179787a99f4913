"""Contributions of the exact route (``solver: exact`` with ``contributions``): every
trainer's part ``m·u_i = m·H⁻¹g_i`` of the exact model is valued by the rounds' closed
form; the values are those of the same game computed in the clear from the owners'
rows, they add up to the exact model's improvement, the transcript verifies, and the
buyer decrypts nothing but uniform values in the solve."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from deltaml.learning.contributions import shapley
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.learning.metrics import validator_factor
from deltaml.learning.models import model_type
from deltaml.learning.standardize import Standardization
from deltaml.protocol.exact_messages import ExactSolveRequest
from deltaml.roles.exact import key_holder
from deltaml.simulation import SimulationConfig, SimulationResult, simulate_shares
from deltaml.transport import RecordingTransport

OWNERS = 6  # 4 trainers, 2 validators
SEED = 2


def _shares() -> tuple[list[Any], Any]:
    train, test = train_test_split(load_dataset("diabetes"), 0.2, SEED)
    return split_owners(train, OWNERS, seed=SEED), test


def run(**overrides: Any) -> tuple[SimulationResult, dict[str, Any]]:
    config = SimulationConfig(
        solver="exact",
        key_bits=1024,
        allow_test_keys=True,
        chain=False,
        contributions=True,
        seed=SEED,
        **overrides,
    )
    shares, test = _shares()
    held: dict[str, Any] = {}

    def wrap(inner: Any) -> RecordingTransport:
        held["inner"], held["recorder"] = inner, RecordingTransport(inner)
        return held["recorder"]

    result = simulate_shares(config, "linear", "regression", shares, test, transport_wrapper=wrap)
    held["buyer"] = held["inner"]._parties["buyer"]
    return result, held


@pytest.fixture(scope="module")
def honest() -> tuple[SimulationResult, dict[str, Any]]:
    return run()


def plain_shapley(result: SimulationResult) -> tuple[np.ndarray, float]:
    """The same game in the clear: members ``m·H⁻¹g_i``, validators' stacked factor."""
    shares, _ = _shares()
    by_id = {f"owner-{i + 1}": s for i, s in enumerate(shares)}
    x = np.concatenate([s.X for s in shares])
    y = np.concatenate([s.y for s in shares])
    stats = Standardization(len(x), x.mean(0), x.std(0), float(y.mean()), float(y.std()))
    model = model_type("linear")
    terms = [model.local_terms(by_id[t].X, by_id[t].y, stats) for t in result.trainers]
    h = sum(np.asarray(t.hessian) for t in terms)
    m = len(terms)
    members = [m * np.linalg.solve(h, np.asarray(t.linear)) for t in terms]
    factor = np.vstack(
        [validator_factor(by_id[v].X, by_id[v].y, model, stats) for v in result.validators]
    )
    weights, target = factor[:, :-1], factor[:, -1]
    columns = np.column_stack([weights @ x_i for x_i in members] + [target])
    base = float(target @ target)  # the initial model is zero
    return shapley(columns.T @ columns, base), base - float(
        np.sum((weights @ np.mean(members, axis=0) - target) ** 2)
    )


def test_the_values_are_the_parts_shapley_values_and_sum_to_the_improvement(honest) -> None:
    result, _ = honest
    assert result.verification is not None and result.verification.ok, result.verification
    assert result.verification.passed["exact check"] >= 1
    measured = np.asarray(result.contributions)
    expected, improvement = plain_shapley(result)
    assert len(measured) == len(result.trainers) == 4
    assert np.allclose(measured, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # efficient: they add up to the exact model's improvement over the initial model
    assert measured.sum() == pytest.approx(improvement, rel=1e-6)
    # and the split pays by them
    assert result.contribution_weights and len(set(result.contribution_weights)) > 1


def test_the_buyer_sees_only_uniform_values_in_the_solve(honest) -> None:
    _, held = honest
    n = held["buyer"].public_key.n
    decrypted = key_holder(held["buyer"]).solver.decrypted
    solve = [values for kind, values in decrypted if kind.startswith("masked")]
    assert solve and all(min(min(v, n - v) for v in values) > n >> 64 for values in solve)


def test_each_party_receives_only_what_it_may(honest) -> None:
    """The buyer gets the masked sum, the check's weights and the mixed columns, never a
    part; trainers get the mask and offsets (uniform); validators get the parts
    re-randomized (which they cannot read)."""
    result, held = honest
    recorder, buyer = held["recorder"], held["buyer"]
    n, d, m = buyer.public_key.n, 11, len(result.trainers)
    for delivery in recorder.deliveries:
        kind, to = delivery.message.kind, delivery.recipient
        if to == "buyer":
            assert kind in {
                "DecryptStats",
                "MetricRequest",
                "ExactSolveRequest",
                "ExactCheckRequest",
                "GramRequest",
                "ExactModel",
            }, kind
        elif kind == "ExactRequest":
            assert to in result.trainers
            offsets = [int(v, 16) for v in delivery.message.offsets]
            assert len(offsets) == m * d and min(min(v, n - v) for v in offsets) > n >> 64
        elif kind in ("ContributionRequest", "RemixColumnsRequest", "EvaluateRequest"):
            assert to in result.validators
    for message in recorder.received_by("buyer"):
        if isinstance(message, ExactSolveRequest):
            for masked in message.masked:  # model, parts, check: uniform on its own
                assert len(masked.masked) == d * d + d * (m + 2)
                opened = [buyer._private_key.raw_decrypt(int(c)) for c in masked.masked.ciphertexts]
                assert min(min(v, n - v) for v in opened) > n >> 64
