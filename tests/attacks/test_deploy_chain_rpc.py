"""Attack: whoever reaches the compose stack's chain port rewrites the escrow's world.

The stack's chain is anvil, a development node: it answers ``evm_increaseTime`` (move
``block.timestamp`` past a request's deadline, so a buyer reclaims its deposit from a
finished training or a challenge window closes early), ``anvil_setStorageAt`` /
``anvil_setBalance`` (rewrite the contract's books), ``anvil_impersonateAccount`` and
``eth_sendTransaction`` (send as anyone). The port is reachable from every container of
the stack and, published on 127.0.0.1, from every process of the host.

Defence: anvil listens on the chain container's loopback only; what the others reach is
deploy/chain/chain-node, which answers over TLS and passes on only the methods a public
Ethereum node offers, by exact name (a first version passed every ``eth_*``, and with it
anvil's ``eth_sendUnsignedTransaction``, which moves anyone's ether without a
signature: this test caught it). A batch with one refused call is refused whole. Checked
failing with the filter removed (``allowed`` returning True) and with the ``eth_*``
prefix rule: the clock moved, balances were rewritten, the unsigned transfer went
through.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

from chain_node_testkit import ChainNode, chain_node, post

DAY_S = 86_400
REFUSED = -32601


def _timestamp(node: ChainNode) -> int:
    return int(node.rpc("eth_getBlockByNumber", ["latest", False])["result"]["timestamp"], 16)


def _balance(node: ChainNode, address: str) -> int:
    return int(node.rpc("eth_getBalance", [address, "latest"])["result"], 16)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ChainNode]:
    with chain_node(tmp_path, tmp_path / "state.json") as running:
        yield running


def test_no_one_can_move_the_chains_clock(node: ChainNode) -> None:
    before = _timestamp(node)
    for method, params in [
        ("evm_increaseTime", [30 * DAY_S]),
        ("evm_setNextBlockTimestamp", [before + 30 * DAY_S]),
        ("anvil_setTime", [before + 30 * DAY_S]),
    ]:
        answer = node.rpc(method, params)
        assert answer.get("error", {}).get("code") == REFUSED, (method, answer)
    node.rpc("evm_mine")  # refused too; a block mined by a real transaction would do
    assert _timestamp(node) < before + DAY_S


def test_no_one_can_rewrite_balances_storage_or_send_as_another(node: ChainNode) -> None:
    victim = node.faucet.address
    thief = Account.create().address
    before = _balance(node, victim)
    for method, params in [
        ("anvil_setBalance", [victim, "0x0"]),
        ("hardhat_setBalance", [victim, "0x0"]),
        ("anvil_setStorageAt", [victim, "0x0", "0x" + "00" * 32]),
        ("anvil_impersonateAccount", [victim]),
        ("eth_sendTransaction", [{"from": victim, "to": thief, "value": hex(before // 2)}]),
        # anvil's own eth_* method: sends from any account, no signature asked.
        ("eth_sendUnsignedTransaction", [{"from": victim, "to": thief, "value": "0x1"}]),
        ("eth_sign", [victim, "0x00"]),
        ("anvil_loadState", ["0x00"]),
        ("debug_traceTransaction", ["0x" + "00" * 32]),
    ]:
        answer = node.rpc(method, params)
        assert answer.get("error", {}).get("code") == REFUSED, (method, answer)
    assert _balance(node, victim) == before
    assert _balance(node, thief) == 0


def test_a_refused_call_hidden_in_a_batch_refuses_the_batch(node: ChainNode) -> None:
    victim = node.faucet.address
    before = _balance(node, victim)
    answer = post(
        node,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "anvil_setBalance", "params": [victim, "0x1"]},
        ],
    )
    assert [a["error"]["code"] for a in answer] == [REFUSED]
    assert _balance(node, victim) == before
    # What a public node answers still works, in a batch too.
    answer = post(node, [{"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []}])
    assert answer == [{"jsonrpc": "2.0", "id": 7, "result": hex(31337)}]
