"""A trainer that stops answering is dropped and training goes on; anything else fails."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from deltaml.errors import ProtocolError
from deltaml.learning.data import load_dataset, split_owners, train_test_split
from deltaml.protocol import messages as m
from deltaml.roles.aggregator import split_roles
from deltaml.simulation import SimulationConfig, owner_ids, simulate_shares
from deltaml.transport import PartyTimeout, Transport

OWNERS = 6
#: Enough rounds for the remaining trainers (SHA-256 split: owner-1, -3, -4, -5 train)
#: to come within 0.1 % of their optimum after one drops at round 3 (15 are not).
ROUNDS = 18


class SilentFrom(Transport):
    """``party`` stops answering at round ``from_round`` (as the services' queue reports it)."""

    def __init__(self, inner: Transport, party: str, from_round: int) -> None:
        self.inner, self.party, self.from_round = inner, party, from_round
        self.asked_after_drop = 0

    def request(self, party_id: str, message: m.Message) -> m.Message:
        return self.request_all([(party_id, message)])[0]

    def request_all(self, requests: Sequence[tuple[str, m.Message]]) -> list[m.Message]:
        for pid, msg in requests:
            if pid == self.party and int(getattr(msg, "round", 0)) >= self.from_round:
                self.asked_after_drop += 1
                raise PartyTimeout([pid], 5)
        return self.inner.request_all(requests)


def _run(silent_role: str, from_round: int, **config: object):
    train, test = train_test_split(load_dataset("diabetes"), 0.2, 0)
    shares = split_owners(train, OWNERS, seed=0)
    ids = owner_ids(OWNERS)
    trainers, validators = split_roles(ids, 0.7, 0)
    party = (trainers if silent_role == "trainer" else validators)[0]
    holder: dict[str, SilentFrom] = {}

    def wrap(inner: Transport) -> Transport:
        holder["t"] = SilentFrom(inner, party, from_round)
        return holder["t"]

    cfg = SimulationConfig(
        rounds=ROUNDS,
        key_bits=512,
        allow_test_keys=True,
        eval_every=3,
        **config,  # type: ignore[arg-type]
    )
    result = simulate_shares(cfg, "linear", "regression", shares, test, transport_wrapper=wrap)
    return result, party, shares, ids


def test_a_silent_trainer_is_dropped_and_the_rest_reach_their_own_optimum() -> None:
    result, dropped, shares, ids = _run("trainer", from_round=3)
    assert result.verified, result.verification.failures if result.verification else None
    assert len(result.rounds) == ROUNDS
    i = result.trainers.index(dropped)
    assert result.contributions[i] == 0.0 and result.contribution_weights[i] == 0
    assert result.payouts_wei[dropped] == 0
    others = [t for t in result.trainers if t != dropped]
    assert all(result.payouts_wei[t] > 0 for t in others)
    # The model is the optimum of the remaining trainers' rows, not of the dropped one's.
    rest = [shares[ids.index(t)] for t in others]
    x = np.concatenate([s.X for s in rest])
    y = np.concatenate([s.y for s in rest])
    ols = LinearRegression().fit(x, y)
    ours = np.sum((x @ result.coefficients + result.intercept - y) ** 2)
    best = np.sum((ols.predict(x) - y) ** 2)
    assert (ours - best) / best < 1e-3


def test_a_silent_validator_fails_the_request() -> None:
    with pytest.raises(ProtocolError, match="no answer within 5 s from owner-"):
        _run("validator", from_round=2)


def test_too_few_remaining_trainers_fail_the_request() -> None:
    with pytest.raises(ProtocolError, match="fewer than the 4 the request needs"):
        _run("trainer", from_round=2, min_trainers=4)
