"""Sending transactions to the Marketplace (or any contract) and checking inputs.

Transactions are signed locally with the party's key (``eth_account``) and sent
raw, so the same code runs on the embedded chain, on anvil and on a testnet.
Every failure the chain reports comes out as :class:`deltaml.errors.LedgerError`
(see :mod:`deltaml.ledger.reverts`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from eth_utils import is_address, to_checksum_address

from deltaml.errors import DeltaMLValueError, LedgerError
from deltaml.ledger.artifact import ContractArtifact, load_artifact
from deltaml.ledger.base import Receipt
from deltaml.ledger.chain import Chain
from deltaml.ledger.reverts import RevertDecoder

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_typing import ChecksumAddress
    from web3.contract.contract import ContractFunction
    from web3.types import TxParams

logger = logging.getLogger(__name__)

DEFAULT_RECEIPT_TIMEOUT_S = 120.0


def check_uint(value: object, name: str, bits: int = 256) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeltaMLValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < 2**bits:
        raise DeltaMLValueError(f"{name} must be in [0, 2**{bits}), got {value}")
    return value


def check_address(value: object, name: str) -> ChecksumAddress:
    if not isinstance(value, str) or not is_address(value):
        raise DeltaMLValueError(f"{name} must be an Ethereum address, got {value!r}")
    return to_checksum_address(value)


def check_bytes32(value: object, name: str) -> bytes:
    raw: bytes | None = None
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str) and value.startswith("0x"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raw = None
    if raw is None or len(raw) != 32:
        raise DeltaMLValueError(f"{name} must be 32 bytes (or 0x + 64 hex digits)")
    return raw


def send_transaction(
    chain: Chain,
    account: LocalAccount,
    fn: ContractFunction | Any,
    decoder: RevertDecoder,
    *,
    value_wei: int = 0,
    gas_limit: int | None = None,
    timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
) -> tuple[Receipt, Mapping[str, Any]]:
    """Sign ``fn`` (a bound contract function or constructor) with ``account``,
    send it, wait for it to be mined, and map any failure to ``LedgerError``.

    Parameters
    ----------
    gas_limit:
        Send with this gas and skip estimation: a transaction the contract
        rejects is then mined with status 0, and is replayed as a call to learn
        the error. ``None`` estimates, which reports a rejection before sending.

    Returns
    -------
    The receipt summary and web3's full receipt (for its logs).
    """
    w3 = chain.w3
    sender = account.address
    params: dict[str, Any] = {
        "from": sender,
        "value": value_wei,
        "nonce": w3.eth.get_transaction_count(sender, "pending"),
    }
    if gas_limit is not None:
        params["gas"] = gas_limit
    try:
        tx: Any = fn.build_transaction(cast("TxParams", params))
        signed = account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        raw = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout_s, poll_latency=0.05)
    except Exception as exc:
        error = decoder.from_exception(exc)
        if error is None:
            raise
        raise error from exc
    if raw["status"] != 1:
        raise _failed_receipt_error(chain, tx, raw, decoder)
    receipt = Receipt(
        tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
        block_number=int(raw["blockNumber"]),
        gas_used=int(raw["gasUsed"]),
        fee_wei=int(raw["gasUsed"]) * int(raw.get("effectiveGasPrice", 0)),
    )
    return receipt, raw


def _failed_receipt_error(
    chain: Chain, tx: Mapping[str, Any], raw: Mapping[str, Any], decoder: RevertDecoder
) -> LedgerError:
    """Explain a status-0 receipt: out of gas, or replay it to get the revert data."""
    tx_hash = "0x" + bytes(raw["transactionHash"]).hex()
    gas = int(tx["gas"])
    if int(raw["gasUsed"]) >= gas:
        return LedgerError("OutOfGas", (gas,), f"transaction {tx_hash} ran out of its {gas} gas")
    call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
    try:
        chain.w3.eth.call(call, block_identifier=int(raw["blockNumber"]) - 1)  # type: ignore[arg-type]
    except Exception as exc:
        error = decoder.from_exception(exc)
        if error is not None:
            return error
    return LedgerError("Reverted", (tx_hash,), f"transaction {tx_hash} reverted")


def deploy_contract(
    chain: Chain,
    account: LocalAccount,
    artifact: ContractArtifact,
    *constructor_args: object,
    timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
) -> tuple[str, Receipt]:
    """Deploy ``artifact`` from ``account``; returns its checksum address and receipt."""
    factory = chain.w3.eth.contract(abi=list(artifact.abi), bytecode=artifact.bytecode)
    decoder = RevertDecoder([artifact.abi])
    receipt, raw = send_transaction(
        chain, account, factory.constructor(*constructor_args), decoder, timeout_s=timeout_s
    )
    address = str(raw["contractAddress"])
    logger.info("deployed %s at %s on chain %s", artifact.name, address, chain.chain_id)
    return address, receipt


def deploy_marketplace(chain: Chain, account: LocalAccount) -> str:
    """Deploy the shipped Marketplace contract; returns its address."""
    return deploy_contract(chain, account, load_artifact())[0]
