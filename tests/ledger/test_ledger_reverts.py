"""Every backend's way of reporting a revert becomes the same ``LedgerError``."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from ledger_testkit import ETH, EVIDENCE, Market, reverts
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    Web3RPCError,
)

from deltaml.errors import DeltaMLError, LedgerError
from deltaml.ledger import RequestStatus, Role
from deltaml.ledger.artifact import load_artifact
from deltaml.ledger.embedded import EmbeddedChain, _keep_revert_data
from deltaml.ledger.reverts import RawRevert, RevertDecoder
from deltaml.ledger.web3_ledger import Web3Ledger

ADDRESS = "0x00000000000000000000000000000000DeaDBeef"


def _custom(signature: str, types: list[str], values: list[object]) -> bytes:
    return keccak(text=signature)[:4] + encode(types, values)


WRONG_STATUS = _custom("WrongStatus(uint256,uint8)", ["uint256", "uint8"], [7, 3])
NOTHING = _custom(
    "NothingToWithdraw(uint256,address)", ["uint256", "address"], [32, ADDRESS.lower()]
)
ERROR_STRING = bytes.fromhex("08c379a0") + encode(["string"], ["boom"])
PANIC = bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])


@pytest.fixture(scope="module")
def decoder() -> RevertDecoder:
    return RevertDecoder([load_artifact().abi])


def test_ledger_error_is_a_project_error() -> None:
    error = LedgerError("NotBuyer", (1, ADDRESS))
    assert isinstance(error, DeltaMLError)
    assert isinstance(error, RuntimeError)
    assert str(error) == f"NotBuyer(1, '{ADDRESS}')"


def test_custom_errors_decode_with_typed_arguments(decoder: RevertDecoder) -> None:
    error = decoder.decode(WRONG_STATUS)
    assert (error.error_name, error.args_) == ("WrongStatus", (7, RequestStatus.FINISHED))
    assert error.args_[1] is RequestStatus.FINISHED
    error = decoder.decode(NOTHING)
    assert (error.error_name, error.args_) == ("NothingToWithdraw", (32, ADDRESS))
    role = _custom("NotRegistered(address,uint8)", ["address", "uint8"], [ADDRESS, 2])
    assert decoder.decode(role).args_ == (ADDRESS, Role.AGGREGATOR)
    assert decoder.decode(_custom("Reentrancy()", [], [])).error_name == "Reentrancy"


def test_standard_and_unknown_reverts(decoder: RevertDecoder) -> None:
    assert (decoder.decode(ERROR_STRING).error_name, decoder.decode(ERROR_STRING).args_) == (
        "Revert",
        ("boom",),
    )
    panic = decoder.decode(PANIC)
    assert (panic.error_name, panic.args_) == ("Panic", (0x11,))
    assert "overflow" in str(panic)
    assert decoder.decode(b"").error_name == "Revert"
    unknown = decoder.decode(bytes.fromhex("deadbeef") + b"\x00" * 32)
    assert unknown.error_name == "Unknown"
    assert unknown.args_[0].startswith("0xdeadbeef")
    truncated = decoder.decode(WRONG_STATUS[:20])
    assert truncated.error_name == "Unknown"


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(TransactionFailed(NOTHING), id="eth-tester-bytes"),
        pytest.param(TransactionFailed(repr(NOTHING)), id="eth-tester-bytes-repr"),
        pytest.param(
            TransactionFailed(f"execution reverted: {NOTHING!r}"), id="web3-eth-tester-string"
        ),
        pytest.param(TransactionFailed(Exception(NOTHING)), id="eth-tester-wrapped"),
        pytest.param(RawRevert(NOTHING), id="embedded-raw"),
        pytest.param(ContractCustomError("0x" + NOTHING.hex(), "0x" + NOTHING.hex()), id="anvil"),
        pytest.param(
            ContractLogicError("execution reverted", {"data": "0x" + NOTHING.hex()}),
            id="logic-error-dict",
        ),
        pytest.param(
            Web3RPCError(
                "execution reverted",
                rpc_response={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "error": {
                        "code": 3,
                        "message": "execution reverted",
                        "data": "0x" + NOTHING.hex(),
                    },
                },
            ),
            id="json-rpc-error",
        ),
    ],
)
def test_every_backend_shape_maps_to_the_same_error(
    decoder: RevertDecoder, exc: BaseException
) -> None:
    error = decoder.from_exception(exc)
    assert error is not None
    assert (error.error_name, error.args_) == ("NothingToWithdraw", (32, ADDRESS))


def test_reason_strings_and_panics_from_nodes(decoder: RevertDecoder) -> None:
    error = decoder.from_exception(ContractLogicError("execution reverted: boom", None))
    assert error is not None and (error.error_name, error.args_) == ("Revert", ("boom",))
    panic = decoder.from_exception(ContractPanicError("Panic", "0x" + PANIC.hex()))
    assert panic is not None and panic.error_name == "Panic"
    assert decoder.from_exception(TransactionFailed("execution reverted")).error_name == "Revert"  # type: ignore[union-attr]


def test_node_rejections_and_transport_failures(decoder: RevertDecoder) -> None:
    funds = Web3RPCError(
        "insufficient funds",
        rpc_response={
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": -32003, "message": "insufficient funds for gas * price + value"},
        },
    )
    error = decoder.from_exception(funds)
    assert error is not None and error.error_name == "Rejected"
    timeout = decoder.from_exception(TimeExhausted("not mined"))
    assert timeout is not None and timeout.error_name == "Timeout"
    unreachable = decoder.from_exception(ConnectionRefusedError("refused"))
    assert unreachable is not None and unreachable.error_name == "ChainUnreachable"
    assert decoder.from_exception(KeyError("a bug")) is None


def test_embedded_endpoints_keep_the_raw_bytes() -> None:
    """web3's eth-tester provider decodes revert bytes as Error(string): for
    NothingToWithdraw(32, address) that read an address as a string length and
    crashed with OverflowError. The embedded chain intercepts the bytes first."""

    def reverting_endpoint(*_: object) -> None:
        raise TransactionFailed(NOTHING)

    with pytest.raises(RawRevert) as info:
        _keep_revert_data(reverting_endpoint)(None, [])
    assert info.value.data == NOTHING


def test_embedded_chain_names_an_error_web3_would_garble() -> None:
    """End to end on a fresh embedded chain: request 32's NothingToWithdraw."""
    chain = EmbeddedChain()
    market = Market(chain)
    buyer = Web3Ledger(
        chain, market.ledger.contract_address, market.buyer._account, gas_limit=200_000
    )
    for _ in range(31):
        market.open_request(1, buyer=buyer)
    rid = market.open_request(1)
    assert rid == 32
    market.aggregator.abort(rid)
    stranger = market.party()
    with reverts("NothingToWithdraw", 32, stranger.account):
        stranger.withdraw(32)


# --------------------------------------------------- on every backend


def test_status_zero_receipts_are_replayed_for_their_error(market: Market) -> None:
    rid, trainers, _ = market.started_request(1, 1)
    w3 = market.chain.w3
    fixed_gas = Web3Ledger(
        market.chain, market.ledger.contract_address, trainers[0]._account, gas_limit=200_000
    )
    nonce = w3.eth.get_transaction_count(trainers[0].account)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        fixed_gas.withdraw(rid)
    # the transaction was mined (and paid for) rather than refused up front
    assert w3.eth.get_transaction_count(trainers[0].account) == nonce + 1


def test_out_of_gas_is_named(market: Market) -> None:
    party = market.party()
    starved = Web3Ledger(
        market.chain, market.ledger.contract_address, party._account, gas_limit=22_000
    )
    with reverts("OutOfGas", 22_000):
        starved.register(Role.BUYER)
    assert not party.has_role(party.account, Role.BUYER)


def test_insufficient_funds_is_a_ledger_error(market: Market) -> None:
    poor = market.party(Role.BUYER, fund_wei=ETH // 100)
    with reverts("Rejected"):
        market.open_request(10 * ETH, buyer=poor)


def test_errors_from_calls_and_transactions_agree(market: Market) -> None:
    rid, _, _ = market.started_request(1, 1)
    with reverts("NotAggregator", rid, market.buyer.account):
        market.buyer.finish(rid, 10, 5, [1], EVIDENCE)
    fn = market.ledger._contract.functions.finish(rid, 10, 5, b"\x01" * 32, 0, EVIDENCE)
    with reverts("NotAggregator", rid, market.buyer.account):
        market.buyer._call(fn)
