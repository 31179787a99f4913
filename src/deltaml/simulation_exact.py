"""The one-shot exact solve in simulation (``SimulationConfig(solver="exact")``).

Split from :mod:`deltaml.simulation` (which re-exports :func:`simulate_exact`). The same
owners, seats and federated standardization as the iterative protocol; the phases of
:mod:`deltaml.learning.exact_run`, timed apart: ``setup_seconds`` holds what does not
depend on the data (the aggregator's mask and its encryption, the parties' randomizers,
the parties' worker processes) and the standardization; ``training_seconds`` the rest,
from the trainers' messages to the buyer's decryption of the model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from deltaml.crypto.paillier import generate_keypair
from deltaml.learning.data import Dataset
from deltaml.learning.exact_run import Cores, prepare, train
from deltaml.learning.exact_solve import ExactBuyer
from deltaml.learning.models import model_type, raw_coefficients
from deltaml.learning.standardize import local_sums, stats_from_sums
from deltaml.roles.aggregator import split_roles
from deltaml.roles.messages import TrainingSpec

if TYPE_CHECKING:
    from deltaml.simulation import SimulationConfig, SimulationResult


def simulate_exact(
    config: SimulationConfig,
    model_name: str,
    task: str,
    shares: list[Dataset],
    test: Dataset | None,
) -> SimulationResult:
    """Train by the exact solve on ``shares``; compare with the optimum on ``test``."""
    from deltaml.learning.baseline import baseline_metrics
    from deltaml.simulation import SimulationResult, objective_gap, owner_ids

    t_start = time.perf_counter()
    k0 = time.perf_counter()
    public_key, private_key = generate_keypair(
        config.key_bits, allow_test_keys=config.allow_test_keys
    )
    keygen_seconds = time.perf_counter() - k0
    ids = owner_ids(len(shares))
    spec = TrainingSpec(model=model_name, rounds=config.rounds, split_seed=config.seed)
    trainers, validators = split_roles(ids, spec.trainer_fraction, spec.split_seed)
    regression = task == "regression"
    s0 = time.perf_counter()
    with Cores() as cores:
        total = np.sum([local_sums(s.X, s.y, regression) for s in shares], axis=0)
        stats = stats_from_sums(total, shares[0].n_features, regression)
        model = model_type(model_name, config.l2)
        trainer_shares = [shares[ids.index(oid)] for oid in trainers]
        terms = [model.local_terms(s.X, s.y, stats) for s in trainer_shares]
        prep = prepare(public_key, len(terms[0].linear), len(terms))
        setup_seconds = time.perf_counter() - s0
        t0 = time.perf_counter()
        outcome = train(terms, public_key, ExactBuyer(public_key, private_key), prep, cores)
        training_seconds = time.perf_counter() - t0
    weights = outcome.weights
    coef, intercept = raw_coefficients(weights, stats)
    result = SimulationResult(
        config=config,
        model=model_name,
        task=task,
        trainers=trainers,
        validators=validators,
        rounds=[],
        refreshes=0,
        seconds=time.perf_counter() - t_start - keygen_seconds,
        setup_seconds=setup_seconds,
        training_seconds=training_seconds,
        metric_seconds=0.0,
        contribution_seconds=0.0,
        keygen_seconds=keygen_seconds,
        objective_gap=objective_gap(model, stats, trainer_shares, weights),
        weights=weights,
        coefficients=coef,
        intercept=intercept,
        features=shares[0].feature_names,
        target=shares[0].target_name,
        classes=shares[0].classes,
    )
    if test is not None:
        x_train = np.concatenate([s.X for s in trainer_shares])
        y_train = np.concatenate([s.y for s in trainer_shares])
        result.test, result.baseline_note = baseline_metrics(
            model, stats, weights, x_train, y_train, test.X, test.y
        )
    return result
