"""Shapley contributions: bad data earns least, equal data earns equally, useless data
nothing — from the rounds' round-one models and from the exact route's parts alike."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from deltaml.evidence.transcript import read_records
from deltaml.learning.contributions import (
    coalition_sse,
    coalition_values,
    contribution_weights,
    shapley,
    shapley_exact,
)
from deltaml.learning.data import Dataset, load_dataset, split_owners, train_test_split
from deltaml.roles.aggregator import split_roles
from deltaml.simulation import SimulationConfig, owner_ids, simulate_shares

CONFIG = SimulationConfig(rounds=6, eval_every=100, key_bits=512, allow_test_keys=True)


def _shares() -> tuple[list[Dataset], list[int]]:
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 5, seed=0)
    ids = owner_ids(5)
    trainers, _ = split_roles(ids, 0.7, CONFIG.seed)
    return shares, [ids.index(t) for t in trainers]


def _replace(share: Dataset, x: np.ndarray | None = None, y: np.ndarray | None = None) -> Dataset:
    return Dataset(
        share.X if x is None else x,
        share.y if y is None else y,
        share.feature_names,
        share.target_name,
        share.task,
        share.source,
    )


#: The iterative route, and the exact solve (each trainer's part ``m·H⁻¹g_i``).
SOLVERS = pytest.mark.parametrize("solver", ["admm", "exact"])


def _contributions(shares: list[Dataset], solver: str = "admm") -> dict[str, float]:
    config = dataclasses.replace(CONFIG, solver=solver)
    result = simulate_shares(config, "linear", "regression", shares, None)
    return dict(zip(result.trainers, result.contributions, strict=True))


@SOLVERS
def test_a_trainer_with_shuffled_labels_earns_the_least(solver: str) -> None:
    shares, trainers = _shares()
    bad = trainers[1]
    rng = np.random.default_rng(3)
    shares[bad] = _replace(shares[bad], y=rng.permutation(shares[bad].y))
    phi = _contributions(shares, solver)
    worst = min(phi, key=phi.__getitem__)
    assert worst == owner_ids(5)[bad]
    assert contribution_weights(np.array(list(phi.values())))[list(phi).index(worst)] == 0


@SOLVERS
def test_trainers_with_identical_data_earn_within_ten_percent(solver: str) -> None:
    shares, trainers = _shares()
    a, b = trainers[0], trainers[2]
    shares[b] = shares[a]
    phi = _contributions(shares, solver)
    ids = owner_ids(5)
    pa, pb = phi[ids[a]], phi[ids[b]]
    assert pa > 0 and pb > 0
    assert abs(pa - pb) <= 0.1 * max(pa, pb)


@SOLVERS
@pytest.mark.parametrize("kind", ["constant target", "noise features"])
def test_a_trainer_that_sends_nothing_useful_is_not_paid(kind: str, solver: str) -> None:
    shares, trainers = _shares()
    useless = trainers[3]
    share = shares[useless]
    rng = np.random.default_rng(4)
    if kind == "constant target":
        # Every label the same (up to tiny noise): no information about the relation.
        replaced = _replace(
            share, y=np.full(share.n_rows, share.y.mean()) + rng.normal(0, 1e-3, share.n_rows)
        )
    else:
        noise = rng.normal(share.X.mean(0), share.X.std(0), share.X.shape)
        replaced = _replace(share, x=noise)
    shares[useless] = replaced
    phi = _contributions(shares, solver)
    weights = dict(zip(phi, contribution_weights(np.array(list(phi.values()))), strict=True))
    assert weights[owner_ids(5)[useless]] == 0
    assert sum(weights.values()) > 0


# -- the pure functions ---------------------------------------------------------------
def test_exact_shapley_of_an_additive_game_is_each_players_value() -> None:
    worth = [3.0, -1.0, 0.5, 2.0]
    phi = shapley_exact(lambda s: sum(worth[i] for i in s), 4)
    np.testing.assert_allclose(phi, worth)


def test_shapley_is_efficient_and_symmetric_on_a_gram_game() -> None:
    rng = np.random.default_rng(0)
    cols = rng.normal(size=(12, 5))
    cols[:, 1] = cols[:, 0]  # players 0 and 1 are interchangeable
    gram = cols.T @ cols
    base = coalition_sse(gram, [])
    phi = shapley(gram, base)
    value = coalition_values(gram, base)
    assert phi.sum() == pytest.approx(value(frozenset(range(4))))
    assert phi[0] == pytest.approx(phi[1])


def test_contributions_are_exact_beyond_eight_trainers(tmp_path: Path) -> None:
    """Nine trainers (sampled before): the published values are the enumerated ones
    over all 512 coalitions of the buyer's published Gram matrix."""
    train, _ = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, 13, seed=0)
    path = tmp_path / "nine.jsonl"
    config = SimulationConfig(
        rounds=2,
        eval_every=2,
        key_bits=512,
        allow_test_keys=True,
        verify=False,
        chain=False,
        transcript=str(path),
    )
    result = simulate_shares(config, "linear", "regression", shares, None)
    assert len(result.trainers) == 9
    (body,) = [r["body"] for r in read_records(path) if r["type"] == "ContributionValues"]
    assert body["method"] == "exact"
    gram = np.array(body["gram"])
    enumerated = shapley_exact(coalition_values(gram, body["base_sse"]), 9)
    published = np.array(body["values"])
    assert np.max(np.abs(published - enumerated)) <= 1e-12 * np.max(np.abs(enumerated))
    np.testing.assert_array_equal(np.array(result.contributions), published)


def test_coalition_sse_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=(9, 4))  # y1..y3, y0
    gram = y.T @ y
    for size in range(4):
        for s in itertools.combinations(range(3), size):
            direct = (y[:, list(s)].mean(axis=1) if s else 0.0) - y[:, 3]
            assert coalition_sse(gram, list(s)) == pytest.approx(float(direct @ direct))


def test_contribution_weights_clamp_and_scale() -> None:
    assert contribution_weights(np.array([2.0, -1.0, 2.0])) == [500000, 0, 500000]
    assert contribution_weights(np.array([-2.0, -1.0])) == [0, 0]
