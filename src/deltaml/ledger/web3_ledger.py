"""``Ledger`` on web3 (v8): the Marketplace contract on any chain backend.

Transactions are signed locally with the party's key (``eth_account``) and sent
raw, so the same code runs on the embedded chain, on anvil and on a testnet.
Every failure the chain reports comes out as :class:`deltaml.errors.LedgerError`
(see :mod:`deltaml.ledger.reverts`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from eth_utils import is_address, keccak, to_checksum_address
from web3.logs import DISCARD

from deltaml.errors import DeltaMLValueError, LedgerError
from deltaml.ledger.artifact import ContractArtifact, load_artifact
from deltaml.ledger.base import (
    Ledger,
    LedgerEvent,
    Receipt,
    RequestState,
    RequestStatus,
    Role,
)
from deltaml.ledger.chain import Chain
from deltaml.ledger.reverts import RevertDecoder

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_typing import ChecksumAddress
    from web3.contract.contract import ContractFunction
    from web3.types import TxParams

logger = logging.getLogger(__name__)

DEFAULT_RECEIPT_TIMEOUT_S = 120.0
#: Blocks behind the head that ``history`` re-reads on a public chain.
REORG_DEPTH_BLOCKS = 64


def _uint(value: object, name: str, bits: int = 256) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DeltaMLValueError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= value < 2**bits:
        raise DeltaMLValueError(f"{name} must be in [0, 2**{bits}), got {value}")
    return value


def _address(value: object, name: str) -> ChecksumAddress:
    if not isinstance(value, str) or not is_address(value):
        raise DeltaMLValueError(f"{name} must be an Ethereum address, got {value!r}")
    return to_checksum_address(value)


def _bytes32(value: object, name: str) -> bytes:
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


class Web3Ledger(Ledger):
    """The Marketplace contract at ``contract_address``, acting as ``account``.

    Parameters
    ----------
    chain:
        Where the contract lives (:func:`deltaml.ledger.chain.connect`).
    contract_address:
        Address of a deployed Marketplace (:func:`deploy_marketplace`).
    account:
        The key this ledger signs with; it pays the gas.
    gas_limit:
        Fixed gas per transaction instead of an estimate (see
        :func:`send_transaction`).
    receipt_timeout_s:
        How long to wait for a transaction to be mined.
    extra_abis:
        ABIs of other contracts whose custom errors may surface in a revert.
    check_code:
        Refuse (``LedgerError("NotMarketplace")``) an address whose code is not
        the shipped artifact's runtime code.
    from_block:
        The block the contract was deployed in (``history`` reads no earlier).
    """

    def __init__(
        self,
        chain: Chain,
        contract_address: str,
        account: LocalAccount,
        *,
        gas_limit: int | None = None,
        receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
        extra_abis: Iterable[Sequence[Mapping[str, Any]]] = (),
        from_block: int = 0,
        check_code: bool = True,
    ) -> None:
        self._chain = chain
        self._from_block = from_block
        self._history_cache: dict[int, tuple[int, list[LedgerEvent]]] = {}
        self._artifact = load_artifact()
        self._extra_abis = tuple(extra_abis)
        self._contract = chain.w3.eth.contract(
            address=_address(contract_address, "contract_address"),
            abi=list(self._artifact.abi),
        )
        self._account = account
        self._gas_limit = gas_limit
        self._receipt_timeout_s = receipt_timeout_s
        self._decoder = RevertDecoder([self._artifact.abi, *self._extra_abis])
        self._lock = threading.Lock()  # one transaction at a time per instance: nonces
        self._event_topics: dict[bytes, Any] | None = None
        if check_code:
            self._check_code()
        self.last_receipt = None

    def _check_code(self) -> None:
        code = bytes(self._chain.w3.eth.get_code(self._contract.address))
        if "0x" + code.hex() != self._artifact.deployed_bytecode:
            raise LedgerError(
                "NotMarketplace",
                (self._contract.address,),
                f"{self._contract.address} does not hold this version of the Marketplace"
                + (" (no code at all)" if not code else ""),
            )

    @classmethod
    def deploy(cls, chain: Chain, account: LocalAccount, **kwargs: Any) -> Web3Ledger:
        """Deploy a new Marketplace from ``account`` and return a ledger on it."""
        address, receipt = deploy_contract(chain, account, load_artifact())
        kwargs.setdefault("from_block", receipt.block_number)
        ledger = cls(chain, address, account, **kwargs)
        ledger.last_receipt = receipt
        return ledger

    def for_account(self, account: LocalAccount) -> Web3Ledger:
        """The same contract on the same chain, acting as ``account``."""
        return Web3Ledger(
            self._chain,
            self.contract_address,
            account,
            gas_limit=self._gas_limit,
            receipt_timeout_s=self._receipt_timeout_s,
            extra_abis=self._extra_abis,
            from_block=self._from_block,
            check_code=False,
        )

    @property
    def chain(self) -> Chain:
        return self._chain

    @property
    def account(self) -> str:
        return str(self._account.address)

    @property
    def contract_address(self) -> str:
        return str(self._contract.address)

    @property
    def decoder(self) -> RevertDecoder:
        """Maps this contract's reverts to ``LedgerError``."""
        return self._decoder

    # ------------------------------------------------------------ plumbing

    def _send(self, fn: Any, value_wei: int = 0) -> tuple[Receipt, Mapping[str, Any]]:
        with self._lock:
            receipt, raw = send_transaction(
                self._chain,
                self._account,
                fn,
                self._decoder,
                value_wei=value_wei,
                gas_limit=self._gas_limit,
                timeout_s=self._receipt_timeout_s,
            )
            self.last_receipt = receipt
        logger.debug("%s: gas %d", fn.fn_name, receipt.gas_used)
        return receipt, raw

    def _transact(self, fn: Any, value_wei: int = 0) -> Receipt:
        return self._send(fn, value_wei)[0]

    def _call(self, fn: Any) -> Any:
        """Evaluate a function (``eth_call``) as :attr:`account`: what a transaction
        from it would return or revert with, without sending one."""
        return self._decoded(lambda: fn.call({"from": self._account.address}))

    def _view(self, fn: Any) -> Any:
        """Evaluate a view function (``eth_call``) from no account.

        No view of the contract reads ``msg.sender``, and a development chain
        (eth-tester) refuses a call "from" an account without ether: reading the
        chain must need neither a key nor funds (``deltaml verify --chain-url``).
        """
        return self._decoded(fn.call)

    def _decoded(self, call: Any) -> Any:
        try:
            return call()
        except Exception as exc:
            error = self._decoder.from_exception(exc)
            if error is None:
                raise
            raise error from exc

    def _events(self, name: str, raw: Mapping[str, Any]) -> list[Any]:
        event = getattr(self._contract.events, name)()
        return list(event.process_receipt(raw, errors=DISCARD))

    def _who(self, account: str | None) -> ChecksumAddress:
        return _address(self.account if account is None else account, "account")

    # -------------------------------------------------------- registration

    def register(self, role: Role) -> Receipt:
        return self._transact(self._contract.functions.register(int(Role(role))))

    def has_role(self, account: str, role: Role) -> bool:
        fn = self._contract.functions.hasRole(_address(account, "account"), int(Role(role)))
        return bool(self._view(fn))

    # ----------------------------------------------------------- the buyer

    def create_request(
        self,
        aggregator: str,
        deposit_wei: int,
        deadline: int,
        challenge_window_s: int,
        spec_hash: bytes,
        *,
        arbiter: str,
        key_hash: bytes,
    ) -> int:
        fn = self._contract.functions.createRequest(
            _address(aggregator, "aggregator"),
            _address(arbiter, "arbiter"),
            _uint(deadline, "deadline", 64),
            _uint(challenge_window_s, "challenge_window_s", 64),
            _bytes32(spec_hash, "spec_hash"),
            _bytes32(key_hash, "key_hash"),
        )
        _, raw = self._send(fn, _uint(deposit_wei, "deposit_wei"))
        (created,) = self._events("RequestCreated", raw)
        return int(created["args"]["id"])

    def cancel(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.cancel(_uint(request_id, "request_id")))

    def reclaim(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.reclaim(_uint(request_id, "request_id")))

    # --------------------------------------------------------- data owners

    def join(self, request_id: int, spec_hash: bytes, key_hash: bytes) -> Receipt:
        fn = self._contract.functions.join(
            _uint(request_id, "request_id"),
            _bytes32(spec_hash, "spec_hash"),
            _bytes32(key_hash, "key_hash"),
        )
        return self._transact(fn)

    # ------------------------------------------------------ the aggregator

    def start(self, request_id: int, trainers: Sequence[str], validators: Sequence[str]) -> Receipt:
        fn = self._contract.functions.start(
            _uint(request_id, "request_id"),
            [_address(a, "trainer") for a in trainers],
            [_address(a, "validator") for a in validators],
        )
        return self._transact(fn)

    def post_metric(
        self, request_id: int, round_: int, metric: int, evidence_hash: bytes
    ) -> Receipt:
        fn = self._contract.functions.postMetric(
            _uint(request_id, "request_id"),
            _uint(round_, "round_", 32),
            _uint(metric, "metric"),
            _bytes32(evidence_hash, "evidence_hash"),
        )
        return self._transact(fn)

    def finish(
        self,
        request_id: int,
        initial_metric: int,
        final_metric: int,
        contributions: Sequence[int],
        evidence_hash: bytes,
    ) -> Receipt:
        fn = self._contract.functions.finish(
            _uint(request_id, "request_id"),
            _uint(initial_metric, "initial_metric"),
            _uint(final_metric, "final_metric"),
            [_uint(c, "contribution") for c in contributions],
            _bytes32(evidence_hash, "evidence_hash"),
        )
        return self._transact(fn)

    def abort(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.abort(_uint(request_id, "request_id")))

    # ------------------------------------------ the result: approve or dispute

    def approve(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.approve(_uint(request_id, "request_id")))

    def dispute(self, request_id: int, reason_hash: bytes) -> Receipt:
        fn = self._contract.functions.dispute(
            _uint(request_id, "request_id"), _bytes32(reason_hash, "reason_hash")
        )
        return self._transact(fn)

    def resolve(self, request_id: int, upheld: bool) -> Receipt:
        if not isinstance(upheld, bool):
            raise DeltaMLValueError(f"upheld must be a bool, got {type(upheld).__name__}")
        fn = self._contract.functions.resolve(_uint(request_id, "request_id"), upheld)
        return self._transact(fn)

    # -------------------------------------------------------------- anyone

    def settle(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.settle(_uint(request_id, "request_id")))

    def withdraw(self, request_id: int) -> int:
        fn = self._contract.functions.withdraw(_uint(request_id, "request_id"))
        _, raw = self._send(fn)
        return sum(
            int(e["args"]["amount"])
            for e in self._events("Withdrawn", raw)
            if e["args"]["account"] == self.account
        )

    # --------------------------------------------------------------- views

    def request(self, request_id: int) -> RequestState:
        fn = self._contract.functions.getRequest(_uint(request_id, "request_id"))
        v = self._view(fn)
        return RequestState(
            request_id=request_id,
            buyer=str(v[0]),
            aggregator=str(v[1]),
            status=RequestStatus(v[2]),
            deadline=int(v[3]),
            challenge_window_s=int(v[4]),
            finished_at=int(v[5]),
            deposit_wei=int(v[6]),
            refund_wei=int(v[7]),
            initial_metric=int(v[8]),
            final_metric=int(v[9]),
            last_round=int(v[10]),
            n_trainers=int(v[11]),
            n_validators=int(v[12]),
            spec_hash=bytes(v[13]),
            evidence_hash=bytes(v[14]),
            arbiter=str(v[15]),
            key_hash=bytes(v[16]),
            approvals=int(v[17]),
        )

    def claimable(self, request_id: int, account: str | None = None) -> int:
        fn = self._contract.functions.claimable(_uint(request_id, "request_id"), self._who(account))
        return int(self._view(fn))

    def has_withdrawn(self, request_id: int, account: str | None = None) -> bool:
        fn = self._contract.functions.hasWithdrawn(
            _uint(request_id, "request_id"), self._who(account)
        )
        return bool(self._view(fn))

    def seat_of(self, request_id: int, account: str | None = None) -> int | None:
        fn = self._contract.functions.seatOf(_uint(request_id, "request_id"), self._who(account))
        seated, seat = self._view(fn)
        return int(seat) if seated else None

    def has_joined(self, request_id: int, account: str | None = None) -> bool:
        fn = self._contract.functions.hasJoined(_uint(request_id, "request_id"), self._who(account))
        return bool(self._view(fn))

    def has_approved(self, request_id: int, account: str | None = None) -> bool:
        fn = self._contract.functions.hasApproved(
            _uint(request_id, "request_id"), self._who(account)
        )
        return bool(self._view(fn))

    def contributions(self, request_id: int) -> list[int]:
        fn = self._contract.functions.contributionsOf(_uint(request_id, "request_id"))
        return [int(c) for c in self._view(fn)]

    def participants(self, request_id: int) -> tuple[list[str], list[str]]:
        fn = self._contract.functions.participantsOf(_uint(request_id, "request_id"))
        trainers, validators = self._view(fn)
        return [str(a) for a in trainers], [str(a) for a in validators]

    def history(self, request_id: int) -> list[LedgerEvent]:
        """Every event about ``request_id``, oldest first.

        Logs are read from the contract's deployment block on, and each
        request's events are cached up to the last block deep enough not to be
        reorganised (the latest block on a dev chain, 64 behind it elsewhere),
        so polling reads only new blocks.
        """
        rid = _uint(request_id, "request_id")
        w3 = self._chain.w3
        latest = int(w3.eth.block_number)
        final = latest if self._chain.is_dev_chain else latest - REORG_DEPTH_BLOCKS
        cached = self._history_cache.setdefault(rid, (self._from_block - 1, []))
        scanned_to, known = cached
        if latest <= scanned_to:
            return list(known)
        # every per-request event has the request id as its first indexed topic
        topic = rid.to_bytes(32, "big")
        address = self._contract.address
        logs: list[Any] = []
        for first, last in self._chain.log_block_ranges(address, [topic], scanned_to + 1, latest):
            logs += w3.eth.get_logs(
                {
                    "address": address,
                    "fromBlock": first,
                    "toBlock": last,
                    "topics": [None, "0x" + topic.hex()],
                }
            )
        fresh = [event for event in map(self._decode_log, logs) if event is not None]
        settled = [e for e in fresh if e.block_number <= final]
        if final > scanned_to:
            self._history_cache[rid] = (final, known + settled)
        return known + fresh

    def _decode_log(self, log: Any) -> LedgerEvent | None:
        event = self._events_by_topic.get(bytes(log["topics"][0]))
        if event is None:
            return None
        decoded = event().process_log(log)
        return LedgerEvent(
            name=str(decoded["event"]),
            args=dict(decoded["args"]),
            block_number=int(decoded["blockNumber"]),
            tx_hash="0x" + bytes(decoded["transactionHash"]).hex(),
        )

    @property
    def _events_by_topic(self) -> dict[bytes, Any]:
        if self._event_topics is None:
            topics = {}
            for entry in self._artifact.abi:
                if entry.get("type") != "event":
                    continue
                types = ",".join(i["type"] for i in entry["inputs"])
                topic = keccak(text=f"{entry['name']}({types})")
                topics[topic] = getattr(self._contract.events, entry["name"])
            self._event_topics = topics
        return self._event_topics

    def balance_wei(self, account: str | None = None) -> int:
        return int(self._chain.w3.eth.get_balance(self._who(account)))

    def now(self) -> int:
        return self._chain.now()

    # ------------------------------------------------------ beyond Ledger

    def compute_payouts(
        self,
        deposit_wei: int,
        initial_metric: int,
        final_metric: int,
        contributions: Sequence[int],
        n_validators: int,
    ) -> tuple[tuple[int, ...], int, int, int]:
        """The contract's own payment rule, evaluated by the chain (no transaction).

        Returns
        -------
        (trainer shares, per-validator share, aggregator share, refund), in wei.
        """
        fn = self._contract.functions.computePayouts(
            _uint(deposit_wei, "deposit_wei"),
            _uint(initial_metric, "initial_metric"),
            _uint(final_metric, "final_metric"),
            [_uint(c, "contribution") for c in contributions],
            _uint(n_validators, "n_validators"),
        )
        trainers, per_validator, aggregator, refund = self._view(fn)
        return tuple(int(t) for t in trainers), int(per_validator), int(aggregator), int(refund)

    def contract_balance_wei(self) -> int:
        """Wei held by the contract (all requests' unpaid escrow)."""
        return int(self._chain.w3.eth.get_balance(self._contract.address))
