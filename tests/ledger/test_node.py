"""The embedded chain served over JSON-RPC (``python -m deltaml.ledger.node``).

The whole ledger suite also runs on it as the ``node`` backend (see conftest.py);
these tests cover what is the node's own: the process, the protocol, and that a
revert arrives as the same ``LedgerError`` as on the in-process chain.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import requests
from ledger_testkit import ETH, EVIDENCE, SPEC, Market

from deltaml.errors import LedgerError
from deltaml.ledger import RequestStatus, Role, Web3Ledger, compute_payouts
from deltaml.ledger.accounts import generate_account
from deltaml.ledger.artifact import load_artifact
from deltaml.ledger.chain import Chain, RpcChain, connect
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.ledger.node import READY_PREFIX, main
from deltaml.ledger.node_process import EmbeddedNodeProcess


@pytest.fixture(scope="module")
def node_chain(embedded_node_url: str) -> Iterator[Chain]:
    chain = connect(embedded_node_url)
    try:
        yield chain
    finally:
        chain.close()


@pytest.fixture(scope="module")
def node_market(node_chain: Chain) -> Market:
    return Market(node_chain)


@pytest.fixture(scope="module")
def embedded_market() -> Market:
    return Market(EmbeddedChain())


def _rpc(url: str, payload: object) -> requests.Response:
    return requests.post(url, json=payload, timeout=30)


def test_a_request_lives_and_pays_out_over_the_node(node_market: Market) -> None:
    market = node_market
    assert isinstance(market.chain, RpcChain) and market.chain.is_dev_chain
    deposit = 2 * ETH
    rid, trainers, validators = market.started_request(2, 1, deposit)
    assert market.buyer.request(rid).status is RequestStatus.IN_PROGRESS
    market.aggregator.finish(rid, 1_000, 400, [3, 1], EVIDENCE)
    market.approve_all(rid, trainers, validators)
    expected = compute_payouts(deposit, 1_000, 400, [3, 1], 1)
    paid = 0
    for party, amount in [
        *zip(trainers, expected.trainers, strict=True),
        *zip(validators, expected.validators, strict=True),
        (market.aggregator, expected.aggregator),
        (market.buyer, expected.refund),
    ]:
        before = party.balance_wei()
        paid += party.withdraw(rid)
        fee = party.last_receipt.fee_wei if party.last_receipt else 0
        assert party.balance_wei() == before + amount - fee
    assert paid == deposit
    assert market.buyer.request(rid).spec_hash == SPEC
    names = [e.name for e in market.buyer.history(rid)]
    assert (
        names
        == ["RequestCreated", "Joined", "Joined", "Joined", "RequestStarted"]
        + ["RequestFinished", "Approved", "Approved", "Approved", "Approved", "RequestSettled"]
        + ["Withdrawn"] * 5
    )


def _rejections(market: Market) -> list[LedgerError]:
    """The same mistakes, made on ``market``'s chain."""
    errors: list[LedgerError] = []
    rid = market.open_request(ETH)
    stranger = market.party(Role.BUYER)
    fixed_gas = Web3Ledger(
        market.chain, market.ledger.contract_address, market.new_account(), gas_limit=300_000
    )
    broke = market.ledger.for_account(generate_account())
    for attempt in (
        lambda: stranger.cancel(rid),  # estimated: rejected before sending
        lambda: fixed_gas.cancel(rid),  # fixed gas: mined with status 0, replayed
        lambda: market.buyer.approve(rid),  # an enum argument
        lambda: market.buyer.finish_with_root(rid, 1, 1, b"\x01" * 32, 0, EVIDENCE),
        lambda: broke.register(Role.DATA_OWNER),  # no ether for gas
    ):
        with pytest.raises(LedgerError) as info:
            attempt()
        errors.append(info.value)
    return errors


def test_reverts_arrive_as_on_the_embedded_chain(
    node_market: Market, embedded_market: Market
) -> None:
    over_node = _rejections(node_market)
    in_process = _rejections(embedded_market)
    assert [e.error_name for e in over_node] == [e.error_name for e in in_process]
    assert [e.error_name for e in over_node] == [
        "NotBuyer",
        "NotBuyer",
        "WrongStatus",
        "NotAggregator",
        "Rejected",
    ]
    assert over_node[2].args_[1] is RequestStatus.OPEN
    # arguments decode to the same types (addresses differ between the chains)
    for node_error, embedded_error in zip(over_node, in_process, strict=True):
        assert [type(a) for a in node_error.args_] == [type(a) for a in embedded_error.args_]


def test_a_revert_is_reported_as_anvil_reports_it(node_market: Market) -> None:
    """code 3, the raw revert bytes as ``data``: what web3 turns into a
    ``ContractCustomError`` for any node."""
    market = node_market
    contract = market.contract(load_artifact(), market.ledger.contract_address)
    data = contract.encode_abi("withdraw", args=[10**9])
    reply = _rpc(
        market.chain.url,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [
                {"to": market.ledger.contract_address, "data": data},
                "latest",
            ],
        },
    ).json()
    error = reply["error"]
    assert error["code"] == 3
    selector = error["data"][:10]
    assert error["message"] == f"execution reverted: custom error {selector}"
    decoded = market.ledger.decoder.decode(bytes.fromhex(error["data"][2:]))
    assert (decoded.error_name, decoded.args_) == ("UnknownRequest", (10**9,))


def test_time_travel_uses_anvils_methods(node_chain: Chain) -> None:
    before = node_chain.now()
    assert node_chain.advance_time(3600) >= before + 3600
    block = node_chain.w3.eth.block_number
    reply = _rpc(node_chain.url, {"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []})
    assert reply.json()["result"] == "0x0"
    assert node_chain.w3.eth.block_number == block + 1
    at = node_chain.now() + 50
    _rpc(node_chain.url, {"jsonrpc": "2.0", "id": 3, "method": "evm_mine", "params": [hex(at)]})
    assert node_chain.now() == at
    bad = _rpc(
        node_chain.url, {"jsonrpc": "2.0", "id": 2, "method": "evm_increaseTime", "params": [-5]}
    )
    assert bad.json()["error"]["code"] == -32602


def test_json_rpc_protocol(embedded_node_url: str) -> None:
    url = embedded_node_url
    batch = _rpc(
        url,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # a notification
            {"jsonrpc": "2.0", "id": "b", "method": "no_suchMethod", "params": []},
            17,
        ],
    ).json()
    assert batch[0] == {"jsonrpc": "2.0", "id": 1, "result": hex(131277322940537)}
    assert batch[1]["id"] == "b" and batch[1]["error"]["code"] == -32601
    assert batch[2]["error"]["code"] == -32600
    assert len(batch) == 3
    notification = _rpc(url, {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []})
    assert notification.status_code == 204
    garbage = requests.post(url, data=b"{not json", timeout=30).json()
    assert garbage["error"]["code"] == -32700 and garbage["id"] is None
    assert _rpc(url, []).json()["error"]["code"] == -32600
    assert requests.get(url, timeout=30).status_code == 405


def test_the_process_prints_its_url_and_stops_by_pid() -> None:
    with EmbeddedNodeProcess() as node:
        assert node.url == f"http://127.0.0.1:{node.port}"
        os.kill(node.pid, 0)  # alive
        assert connect(node.url).chain_id == 131277322940537
    assert node.process.returncode == 0  # SIGTERM ends it cleanly
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", node.port))


def test_a_busy_port_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 1
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
        with pytest.raises(LedgerError, match="cannot listen") as info:
            EmbeddedNodeProcess(port=port)
        assert info.value.error_name == "NodeFailed"
    assert READY_PREFIX.endswith("listening on ")
