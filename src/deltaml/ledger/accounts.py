"""Ethereum accounts: generate, keep in encrypted keystores, fund on dev chains.

Every party is identified by an Ethereum account, whose key also signs its API
requests. Keys are stored only as encrypted keystore files (the Web3 Secret
Storage format, scrypt by default) readable by their owner alone; they are never
logged.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from eth_account import Account

from deltaml.errors import DeltaMLValueError, LedgerError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from deltaml.ledger.chain import Chain

logger = logging.getLogger(__name__)


def generate_account() -> LocalAccount:
    """A new account from the operating system's randomness."""
    return Account.create()


def save_keystore(
    account: LocalAccount,
    path: str | Path,
    password: str,
    *,
    overwrite: bool = False,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> Path:
    """Encrypt ``account``'s key with ``password`` into a keystore file.

    Parameters
    ----------
    path:
        File to write (mode 0600; parent folders are created).
    password:
        Must not be empty.
    overwrite:
        Replace an existing file; refused by default so a key is never lost.
    kdf, iterations:
        Key derivation; eth-account's defaults (scrypt, n = 2**18) unless given.
        Lower ``iterations`` only for tests.
    """
    if not password:
        raise DeltaMLValueError("a keystore needs a non-empty password")
    target = Path(path)
    if target.exists() and not overwrite:
        raise DeltaMLValueError(f"{target} exists; pass overwrite=True to replace it")
    keystore = Account.encrypt(account.key, password, kdf=kdf, iterations=iterations)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(keystore, handle)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("saved keystore of %s to %s", account.address, target)
    return target


def load_keystore(path: str | Path, password: str) -> LocalAccount:
    """Decrypt a keystore file written by :func:`save_keystore` (or any client)."""
    source = Path(path)
    try:
        keystore = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DeltaMLValueError(f"no keystore at {source}") from exc
    except ValueError as exc:
        raise DeltaMLValueError(f"{source} is not a keystore file") from exc
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        raise DeltaMLValueError(f"cannot decrypt {source}: wrong password or damaged file") from exc
    account: LocalAccount = Account.from_key(key)
    return account


def fund_from_dev_account(
    chain: Chain,
    addresses: str | Sequence[str],
    amount_wei: int,
    *,
    demo: bool,
    timeout_s: float = 60.0,
) -> None:
    """Send ``amount_wei`` from a dev chain's prefunded account to each address.

    Only for demos and tests: refused unless ``demo`` is true and the chain is a
    known development chain with unlocked prefunded accounts.

    Parameters
    ----------
    addresses:
        One address or several; several are sent back to back and then awaited.
    """
    if not demo:
        raise LedgerError(
            "DemoModeOnly", (), "funding from prefunded accounts is allowed in demo mode only"
        )
    if amount_wei <= 0:
        raise DeltaMLValueError("amount_wei must be positive")
    from eth_utils import to_checksum_address

    w3 = chain.w3
    sources = chain.dev_accounts()  # refuses on a chain that is not a dev chain
    if not sources:
        raise LedgerError("NoDevAccounts", (chain.url,), f"{chain.url} has no prefunded accounts")
    source = sources[0]
    targets = [
        to_checksum_address(a) for a in ([addresses] if isinstance(addresses, str) else addresses)
    ]
    try:
        base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
        priority_fee = int(w3.eth.max_priority_fee)
        fees = {"maxFeePerGas": 2 * base_fee + priority_fee, "maxPriorityFeePerGas": priority_fee}
        hashes = []
        for to in targets:
            tx: dict[str, object] = {"from": source, "to": to, "value": amount_wei, **fees}
            if not w3.eth.get_code(to):
                tx["gas"] = 21_000  # a plain transfer to a key-held account
            hashes.append(w3.eth.send_transaction(tx))  # type: ignore[arg-type]
        for tx_hash in hashes:
            receipt = w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=timeout_s, poll_latency=0.05
            )
            if receipt["status"] != 1:
                raise LedgerError("FundingFailed", (str(receipt["to"]),), "funding transfer failed")
    except LedgerError:
        raise
    except Exception as exc:
        raise LedgerError(
            "FundingFailed", (), f"could not fund {len(targets)} account(s): {exc}"
        ) from exc
    logger.info("funded %d account(s) with %d wei each", len(targets), amount_wei)
