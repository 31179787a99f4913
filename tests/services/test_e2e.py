"""The whole marketplace as separate processes over real HTTP, settling on a real anvil.

Each test runs ``deltaml demo``'s machinery (:func:`run_demo`): an aggregator, a
buyer and five owner nodes as child processes on 127.0.0.1, the contract on the
session's anvil node. Small keys and few rounds keep them to about a minute each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.services.demo import DemoConfig, DemoResult, run_demo
from deltaml.simulation import SimulationConfig, simulate_shares

pytestmark = pytest.mark.slow

ROUNDS = 5
KEY_BITS = 1024


def _demo(tmp_path: Path, anvil_url: str, **kwargs: object) -> DemoResult:
    config = DemoConfig(
        work_dir=tmp_path / "demo",
        rounds=ROUNDS,
        eval_every=1,  # a metric every round: the tests below look at each
        key_bits=KEY_BITS,
        chain_url=anvil_url,
        timeout=600,
        **kwargs,  # type: ignore[arg-type]
    )
    return run_demo(config, say=lambda _line: None)


def _in_process(result: DemoResult) -> float:
    """The core library's test MSE, in one process, on the same shares and the same roles.

    The aggregator splits the owners' addresses by the public rule
    (:func:`deltaml.protocol.rules.split_roles`, the request's seed 0); the simulation
    splits its own owner ids by the same rule. Each simulated trainer gets the share of
    a demo trainer and each simulated validator that of a demo validator (in address
    order), so both runs train on the same rows.
    """
    from deltaml.protocol.rules import split_roles
    from deltaml.simulation import owner_ids

    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, len(result.owners), seed=0)
    address = {o["name"]: o["address"] for o in result.owners}
    demo_trainers = {o["name"] for o in result.owners if o["role"] == "trainer"}
    # The aggregator seated them by the public rule over the addresses.
    by_rule, _ = split_roles(list(address.values()), 0.7, 0)
    assert {address[name] for name in demo_trainers} == set(by_rule)

    ids = owner_ids(len(shares))
    sim_trainers, sim_validators = split_roles(ids, 0.7, 0)
    in_order = sorted(range(len(shares)), key=lambda i: result.owners[i]["address"])
    demo_t = [i for i in in_order if result.owners[i]["name"] in demo_trainers]
    demo_v = [i for i in in_order if result.owners[i]["name"] not in demo_trainers]
    share_of = dict(zip([*sim_trainers, *sim_validators], [*demo_t, *demo_v], strict=True))
    config = SimulationConfig(
        rounds=ROUNDS,
        eval_every=1,
        key_bits=KEY_BITS,
        allow_test_keys=True,
        seed=0,
        chain=False,
        verify=False,
    )
    sim = simulate_shares(config, "linear", "regression", [shares[share_of[i]] for i in ids], test)
    assert set(sim.trainers) == set(sim_trainers)
    return sim.test["test_mse"]


def test_the_marketplace_settles_over_http_like_the_core_library(
    tmp_path: Path, anvil_url: str
) -> None:
    result = _demo(tmp_path, anvil_url)
    assert result.status == "FINISHED"
    assert set(result.statuses.values()) == {"FINISHED"} and len(result.statuses) == 5
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert len(result.payouts_wei) == 6  # five owners and the aggregator were paid
    assert result.verified
    assert result.test_mse is not None
    # The same rounds over HTTP as in one process: the same model, to rounding.
    assert result.test_mse == pytest.approx(_in_process(result), rel=1e-9)
    verify = subprocess.run(
        [sys.executable, "-m", "deltaml", "verify", result.transcript],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_aggregator_killed_mid_training_resumes_to_the_same_model(
    tmp_path: Path, anvil_url: str
) -> None:
    result = _demo(tmp_path, anvil_url, crash_after_round=2)
    assert result.restarts == 1
    assert (result.status, result.verified) == ("FINISHED", True), result.error
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert result.test_mse is not None
    # The same rounds from the same states: the same model as without the crash.
    assert result.test_mse == pytest.approx(_in_process(result), rel=1e-9)
    assert sorted(int(r) for r in result.metrics) == list(range(1, ROUNDS + 1))


def test_a_trainer_that_stops_answering_is_dropped_and_the_rest_finish(
    tmp_path: Path, anvil_url: str
) -> None:
    result = _demo(tmp_path, anvil_url, kill_owner_after_round=2, party_timeout=5.0)
    assert result.status == "FINISHED" and result.verified
    dropped = [a for a, status in result.statuses.items() if status == "FAILED"]
    assert len(dropped) == 1 and list(result.statuses.values()).count("FINISHED") == 4
    assert dropped[0] not in result.payouts_wei  # it earned nothing, so it withdrew nothing
    assert result.contributions[dropped[0]] == 0.0
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.deposit_wei
    assert sorted(int(r) for r in result.metrics) == list(range(1, ROUNDS + 1))


def test_a_validator_that_stops_answering_fails_the_request_and_the_buyer_gets_it_all_back(
    tmp_path: Path, anvil_url: str
) -> None:
    result = _demo(
        tmp_path, anvil_url, kill_owner_after_round=1, kill_role="validator", party_timeout=5.0
    )
    assert result.status == "FAILED"
    assert "no answer within 5 s" in result.error
    assert result.refund_wei == result.deposit_wei and not result.payouts_wei
    assert np.isfinite(float(result.metrics["1"]))
