"""Keystores and dev-chain funding."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from ledger_testkit import ETH, reverts

from deltaml.errors import DeltaMLValueError
from deltaml.ledger.accounts import (
    fund_from_dev_account,
    generate_account,
    load_keystore,
    save_keystore,
)
from deltaml.ledger.chain import Chain
from deltaml.ledger.embedded import EmbeddedChain

FAST = {"kdf": "pbkdf2", "iterations": 1000}  # tests only; the default is scrypt n=2**18


def test_generated_accounts_are_distinct() -> None:
    accounts = {generate_account().address for _ in range(5)}
    assert len(accounts) == 5


def test_keystore_round_trip_is_private_and_encrypted(tmp_path: Path) -> None:
    account = generate_account()
    path = save_keystore(account, tmp_path / "keys" / "buyer.json", "correct horse", **FAST)  # type: ignore[arg-type]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert account.key.hex().removeprefix("0x") not in text
    assert json.loads(text)["address"].lower() == account.address.lower().removeprefix("0x")
    assert load_keystore(path, "correct horse").address == account.address
    assert not list(path.parent.glob("*.tmp"))


def test_keystore_with_the_default_kind_of_kdf(tmp_path: Path) -> None:
    account = generate_account()
    path = save_keystore(account, tmp_path / "k.json", "pw", kdf="scrypt", iterations=2**10)
    assert json.loads(path.read_text())["crypto"]["kdf"] == "scrypt"
    assert load_keystore(path, "pw").key == account.key


def test_keystore_refusals(tmp_path: Path) -> None:
    account = generate_account()
    path = save_keystore(account, tmp_path / "k.json", "pw", **FAST)  # type: ignore[arg-type]
    with pytest.raises(DeltaMLValueError, match="wrong password"):
        load_keystore(path, "not the password")
    with pytest.raises(DeltaMLValueError, match="exists"):
        save_keystore(generate_account(), path, "pw", **FAST)  # type: ignore[arg-type]
    assert load_keystore(path, "pw").address == account.address  # not overwritten
    other = generate_account()
    save_keystore(other, path, "pw", overwrite=True, **FAST)  # type: ignore[arg-type]
    assert load_keystore(path, "pw").address == other.address
    with pytest.raises(DeltaMLValueError, match="non-empty password"):
        save_keystore(account, tmp_path / "e.json", "")
    with pytest.raises(DeltaMLValueError, match="no keystore"):
        load_keystore(tmp_path / "missing.json", "pw")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DeltaMLValueError, match="not a keystore"):
        load_keystore(tmp_path / "junk.json", "pw")


def test_funding_works_on_a_dev_chain_in_demo_mode(chain: Chain) -> None:
    accounts = [generate_account().address for _ in range(3)]
    fund_from_dev_account(chain, accounts, 2 * ETH, demo=True)
    fund_from_dev_account(chain, accounts[0], ETH, demo=True)
    balances = [chain.w3.eth.get_balance(a) for a in accounts]  # type: ignore[arg-type]
    assert balances == [3 * ETH, 2 * ETH, 2 * ETH]


def test_funding_is_refused_outside_demo_mode(chain: Chain) -> None:
    target = generate_account().address
    with reverts("DemoModeOnly"):
        fund_from_dev_account(chain, target, ETH, demo=False)
    assert chain.w3.eth.get_balance(target) == 0  # type: ignore[arg-type]


class _PublicLookingChain(EmbeddedChain):
    """An embedded chain that reports mainnet's chain id."""

    @property
    def chain_id(self) -> int:
        return 1


def test_funding_and_time_travel_are_refused_on_a_public_chain() -> None:
    chain = _PublicLookingChain()
    target = generate_account().address
    with reverts("NotADevChain", 1):
        fund_from_dev_account(chain, target, ETH, demo=True)
    with reverts("NotADevChain", 1):
        chain.advance_time(10)
    assert chain.w3.eth.get_balance(target) == 0  # type: ignore[arg-type]
