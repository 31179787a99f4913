"""A whole simulated marketplace escrows and settles on a chain, embedded and anvil."""

from __future__ import annotations

import pytest

from deltaml.errors import DeltaMLValueError
from deltaml.simulation import SimulationConfig, run_simulation

SMALL = {"key_bits": 512, "allow_test_keys": True, "rounds": 4, "eval_every": 2}


def _check_settled(result) -> None:  # type: ignore[no-untyped-def]
    st = result.settlement
    assert st is not None and st.status == "SETTLED"
    assert result.verified is True
    deposit = result.config.deposit_wei
    assert sum(st.withdrawn_wei.values()) == deposit
    for pid, wei in result.payouts_wei.items():
        assert st.withdrawn_wei.get(pid, 0) == wei
    assert st.withdrawn_wei["buyer"] == result.refund_wei


def test_simulation_settles_on_the_embedded_chain() -> None:
    result = run_simulation(SimulationConfig(deposit_wei=10**18 + 7, **SMALL))
    _check_settled(result)
    assert result.settlement.chain == "embedded"


def test_simulation_settles_on_anvil(anvil_url: str) -> None:
    result = run_simulation(SimulationConfig(chain_url=anvil_url, deposit_wei=999_999_937, **SMALL))
    _check_settled(result)
    assert result.settlement.chain == anvil_url


def test_without_a_chain_the_rule_still_splits_the_deposit() -> None:
    result = run_simulation(SimulationConfig(chain=False, **SMALL))
    assert result.settlement is None
    assert sum(result.payouts_wei.values()) + result.refund_wei == result.config.deposit_wei


def test_more_owners_than_the_contract_seats_need_no_chain() -> None:
    with pytest.raises(DeltaMLValueError, match="--no-chain"):
        SimulationConfig(owners=1001)
