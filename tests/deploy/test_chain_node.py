"""The compose stack's chain (deploy/chain/chain-node) without containers: TLS, persistence.

Runs wherever anvil is installed (npm ci), in seconds; tests/deploy/test_compose_stack.py
checks the same in the containers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chain_node_testkit import chain_node, kill_hard, plain_http_answer, send, stop

from deltaml.errors import LedgerError
from deltaml.ledger.chain import CA_FILE_ENV, connect

# Init code that emits one log (PUSH1 0, PUSH1 0, LOG0) and deploys an empty contract.
LOG_ONCE = "0x60006000a000"


def test_the_chain_answers_over_tls_only_and_trusts_the_stacks_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_node(tmp_path, tmp_path / "state" / "state.json") as node:
        # Plain text gets no HTTP answer at all (the TLS front hangs up).
        assert not plain_http_answer(node.port).startswith(b"HTTP/")
        # The system's CAs do not vouch for the stack's certificate ...
        monkeypatch.delenv(CA_FILE_ENV, raising=False)
        with pytest.raises(LedgerError, match="no Ethereum JSON-RPC node"):
            connect(node.url)
        # ... DELTAML_CA_FILE (the services' --ca) does.
        monkeypatch.setenv(CA_FILE_ENV, str(node.ca_file))
        chain = connect(node.url)
        try:
            assert chain.chain_id == 31337
            # The faucet got its ether at first start; the chain holds no other account.
            assert chain.w3.eth.get_balance(node.faucet.address) == 10**24
            assert chain.w3.eth.accounts == []
        finally:
            chain.close()
        assert any("a new chain" in line for line in node.lines)


def test_the_chain_keeps_blocks_balances_and_logs_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state" / "state.json"
    payee = Account.create().address
    with chain_node(tmp_path, state) as node:
        transfer = send(node, {"to": payee, "value": 12345, "gas": 21_000})
        created = send(node, {"data": LOG_ONCE, "gas": 100_000})
        assert len(created["logs"]) == 1
        block = node.rpc("eth_blockNumber")["result"]
        assert stop(node.process) == 0  # SIGTERM, as `podman stop` sends: anvil writes its state
        assert any("state written" in line for line in node.lines)
    assert state.is_file()
    faucet = node.faucet
    with chain_node(tmp_path, state, faucet=faucet) as again:
        assert any("state restored" in line for line in again.lines)
        assert again.rpc("eth_blockNumber")["result"] == block
        assert again.rpc("eth_getBalance", [payee, "latest"])["result"] == hex(12345)
        receipt = again.rpc("eth_getTransactionReceipt", [transfer["transactionHash"]])["result"]
        assert receipt["blockHash"] == transfer["blockHash"]
        logs = again.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}])["result"]
        assert [log["transactionHash"] for log in logs] == [created["transactionHash"]]
        # The faucet is not topped up again: the restored state says it has ether.
        balance = int(again.rpc("eth_getBalance", [faucet.address, "latest"])["result"], 16)
        assert 0 < balance < 10**24
        # And the chain goes on from there.
        send(again, {"to": payee, "value": 1, "gas": 21_000})
        assert again.rpc("eth_getBalance", [payee, "latest"])["result"] == hex(12346)


def test_a_hard_kill_loses_at_most_the_last_seconds(tmp_path: Path) -> None:
    """SIGKILL (podman kill, a crash): the last snapshot is whole and has what was done
    more than a snapshot interval (2 s) before. Fails with anvil's own --state, which
    writes only at a clean exit (and rewrites the file in place)."""
    import time

    state = tmp_path / "state.json"
    payee = Account.create().address
    with chain_node(tmp_path, state) as node:
        transfer = send(node, {"to": payee, "value": 777, "gas": 21_000})
        time.sleep(4)
        kill_hard(node.process)
    assert not any("state written" in line for line in node.lines)
    with chain_node(tmp_path, state, faucet=node.faucet) as again:
        assert any("state restored" in line for line in again.lines)
        assert again.rpc("eth_getBalance", [payee, "latest"])["result"] == hex(777)
        receipt = again.rpc("eth_getTransactionReceipt", [transfer["transactionHash"]])["result"]
        assert receipt["blockHash"] == transfer["blockHash"]


def test_the_ledger_works_through_the_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything Web3Ledger asks of a chain is among the methods the front passes on:
    deploy the contract, register, escrow a deposit, read the events back."""
    import time

    from deltaml.ledger import Web3Ledger
    from deltaml.ledger.base import MIN_CHALLENGE_WINDOW_S, Role

    with chain_node(tmp_path, tmp_path / "state.json") as node:
        monkeypatch.setenv(CA_FILE_ENV, str(node.ca_file))
        chain = connect(node.url)
        try:
            aggregator = Account.create()
            send(node, {"to": aggregator.address, "value": 10**18, "gas": 21_000})
            buyer = Web3Ledger.deploy(chain, node.faucet)
            buyer.for_account(aggregator).register(Role.AGGREGATOR)
            buyer.register(Role.BUYER)
            rid = buyer.create_request(
                aggregator.address,
                10**15,
                int(time.time()) + 3600,
                MIN_CHALLENGE_WINDOW_S,
                b"\x01" * 32,
                arbiter=Account.create().address,
                key_hash=b"\x02" * 32,
            )
            assert [e.name for e in buyer.history(rid)] == ["RequestCreated"]
        finally:
            chain.close()
