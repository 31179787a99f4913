"""The contract's payment rule is exactly ``deltaml.ledger.payouts.compute_payouts``.

The contract exposes its rule as the pure function ``computePayouts``; these
tests evaluate it by ``eth_call`` on every backend and compare it, wei for wei,
with the Python rule on chosen and on generated inputs. The flow tests check
that ``finish`` stores what this function returns.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_testkit import Market, reverts

from deltaml.ledger.payouts import (
    MAX_CONTRIBUTION,
    MAX_DEPOSIT_WEI,
    MAX_METRIC,
    MAX_PARTICIPANTS,
    compute_payouts,
)


def _assert_agree(
    market: Market,
    deposit: int,
    initial: int,
    final: int,
    contributions: list[int],
    n_validators: int,
) -> None:
    expected = compute_payouts(deposit, initial, final, contributions, n_validators)
    trainers, per_validator, aggregator, refund = market.ledger.compute_payouts(
        deposit, initial, final, contributions, n_validators
    )
    assert trainers == expected.trainers
    assert (per_validator,) * n_validators == expected.validators
    assert aggregator == expected.aggregator
    assert refund == expected.refund
    assert sum(trainers) + per_validator * n_validators + aggregator + refund == deposit


@pytest.mark.parametrize(
    ("deposit", "initial", "final", "contributions", "n_validators"),
    [
        pytest.param(1, 1, 0, [1], 1, id="1-wei"),
        pytest.param(99, 100, 1, [1, 1, 1], 3, id="99-wei"),
        pytest.param(1_000_000_007, 7919, 104_729, [2, 3], 5, id="primes-worse"),
        pytest.param(1_000_000_007, 104_729, 7919, [2, 3], 5, id="primes-better"),
        pytest.param(10**18, 0, 0, [1], 1, id="zero-metrics"),
        pytest.param(10**18, 5, 5, [1], 1, id="unchanged"),
        pytest.param(10**18, 10, 9, [0, 0, 0], 2, id="no-contribution"),
        pytest.param(MAX_DEPOSIT_WEI, MAX_METRIC, 0, [MAX_CONTRIBUTION] * 63, 1, id="all-max"),
        pytest.param(MAX_DEPOSIT_WEI, MAX_METRIC, 1, [MAX_CONTRIBUTION, 1], 62, id="max-skewed"),
        pytest.param(MAX_DEPOSIT_WEI, 1, 0, [1], 63, id="max-deposit-tiny-metric"),
        pytest.param(3, MAX_METRIC, MAX_METRIC - 1, [1] * 50, 14, id="64-participants"),
        pytest.param(3, MAX_METRIC, MAX_METRIC - 1, [1] * 700, 300, id="1000-participants"),
    ],
)
def test_contract_and_python_agree_on_chosen_inputs(
    market: Market,
    deposit: int,
    initial: int,
    final: int,
    contributions: list[int],
    n_validators: int,
) -> None:
    _assert_agree(market, deposit, initial, final, contributions, n_validators)


@st.composite
def payout_inputs(draw: st.DrawFn) -> tuple[int, int, int, list[int], int]:
    n_trainers = draw(st.integers(1, MAX_PARTICIPANTS - 1))
    n_validators = draw(st.integers(1, MAX_PARTICIPANTS - n_trainers))
    deposit = draw(
        st.one_of(st.integers(1, 1_000), st.integers(1, 10**24), st.integers(1, MAX_DEPOSIT_WEI))
    )
    metric = st.one_of(st.integers(0, 100), st.integers(0, 10**13), st.integers(0, MAX_METRIC))
    contribution = st.one_of(st.integers(0, 10), st.integers(0, MAX_CONTRIBUTION))
    contributions = draw(st.lists(contribution, min_size=n_trainers, max_size=n_trainers))
    return deposit, draw(metric), draw(metric), contributions, n_validators


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=payout_inputs())
def test_contract_and_python_agree_on_generated_inputs(
    market: Market, case: tuple[int, int, int, list[int], int]
) -> None:
    _assert_agree(market, *case)


@settings(max_examples=100, deadline=None)
@given(case=payout_inputs())
def test_python_rule_accounts_for_every_wei(case: tuple[int, int, int, list[int], int]) -> None:
    deposit, initial, final, contributions, n_validators = case
    payouts = compute_payouts(deposit, initial, final, contributions, n_validators)
    assert payouts.total() == deposit
    assert all(share >= 0 for share in payouts.trainers)
    assert payouts.refund >= 0
    if final >= initial:
        assert not any(payouts.trainers)
    assert sum(payouts.trainers) <= deposit * 70 // 100


def test_contract_refuses_inputs_beyond_its_bounds(market: Market) -> None:
    pay = market.ledger.compute_payouts
    with reverts("DepositTooLarge", MAX_DEPOSIT_WEI + 1, MAX_DEPOSIT_WEI):
        pay(MAX_DEPOSIT_WEI + 1, 10, 5, [1], 1)
    with reverts("MetricTooLarge", MAX_METRIC + 1, MAX_METRIC):
        pay(100, MAX_METRIC + 1, 5, [1], 1)
    with reverts("MetricTooLarge", MAX_METRIC + 1, MAX_METRIC):
        pay(100, 10, MAX_METRIC + 1, [1], 1)
    with reverts("ContributionTooLarge", MAX_CONTRIBUTION + 1, MAX_CONTRIBUTION):
        pay(100, 10, 5, [1, MAX_CONTRIBUTION + 1], 1)
    with reverts("NoTrainers"):
        pay(100, 10, 5, [], 1)
    with reverts("NoValidators"):
        pay(100, 10, 5, [1], 0)
    with reverts("TooManyParticipants", 1001, 1000):
        pay(100, 10, 5, [1] * 996, 5)
