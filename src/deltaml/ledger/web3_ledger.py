"""``Ledger`` on web3 (v8): the Marketplace contract on any chain backend.

Transactions are signed locally with the party's key (``eth_account``) and sent
raw (:mod:`deltaml.ledger.transactions`), so the same code runs on the embedded
chain, on anvil and on a testnet. Every failure the chain reports comes out as
:class:`deltaml.errors.LedgerError` (see :mod:`deltaml.ledger.reverts`). Seats
prove their place with Merkle proofs built by :mod:`deltaml.protocol.merkle`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from web3.logs import DISCARD

from deltaml.errors import DeltaMLValueError, LedgerError
from deltaml.ledger.artifact import load_artifact
from deltaml.ledger.base import (
    Ledger,
    LedgerEvent,
    Receipt,
    RequestState,
    RequestStatus,
    Role,
)
from deltaml.ledger.chain import Chain
from deltaml.ledger.events import REORG_DEPTH_BLOCKS, EventLog
from deltaml.ledger.reverts import RevertDecoder
from deltaml.ledger.seats import SeatActions
from deltaml.ledger.transactions import (
    DEFAULT_RECEIPT_TIMEOUT_S,
    check_address,
    check_bytes32,
    check_uint,
    deploy_contract,
    deploy_marketplace,
    send_transaction,
)
from deltaml.protocol.merkle import SeatBook

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_typing import ChecksumAddress

__all__ = [
    "DEFAULT_RECEIPT_TIMEOUT_S",
    "REORG_DEPTH_BLOCKS",
    "Web3Ledger",
    "deploy_contract",
    "deploy_marketplace",
    "send_transaction",
]

logger = logging.getLogger(__name__)

_uint = check_uint
_address = check_address
_bytes32 = check_bytes32


class Web3Ledger(SeatActions, Ledger):
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
    books:
        Seats and payouts known per request (see :meth:`remember`); shared by
        the ledgers :meth:`for_account` makes.
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
        books: dict[int, SeatBook] | None = None,
    ) -> None:
        self._chain = chain
        self._from_block = from_block
        self._artifact = load_artifact()
        self._extra_abis = tuple(extra_abis)
        self._contract = chain.w3.eth.contract(
            address=check_address(contract_address, "contract_address"),
            abi=list(self._artifact.abi),
        )
        self._account = account
        self._gas_limit = gas_limit
        self._receipt_timeout_s = receipt_timeout_s
        self._decoder = RevertDecoder([self._artifact.abi, *self._extra_abis])
        self._lock = threading.Lock()  # one transaction at a time per instance: nonces
        self._log = EventLog(chain, self._contract, self._artifact, from_block)
        # the seats (and payouts) of requests, shared with every for_account copy
        self._books: dict[int, SeatBook] = {} if books is None else books
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
            books=self._books,
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
        book = SeatBook.of(
            [_address(a, "trainer") for a in trainers],
            [_address(a, "validator") for a in validators],
        )
        root = book.seat_root(self.binding(request_id))
        receipt = self.start_with_root(request_id, root, len(trainers), len(validators))
        self.remember(request_id, book)
        return receipt

    def start_with_root(
        self, request_id: int, seat_root: bytes, n_trainers: int, n_validators: int
    ) -> Receipt:
        """Post ``seat_root`` and the seat counts as they are (``start`` builds them)."""
        fn = self._contract.functions.start(
            _uint(request_id, "request_id"),
            _bytes32(seat_root, "seat_root"),
            _uint(n_trainers, "n_trainers"),
            _uint(n_validators, "n_validators"),
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

    def finish_with_root(
        self,
        request_id: int,
        initial_metric: int,
        final_metric: int,
        payout_root: bytes,
        payout_total_wei: int,
        evidence_hash: bytes,
    ) -> Receipt:
        """Post a payout root and total as they are (``finish`` builds them by the rule)."""
        fn = self._contract.functions.finish(
            _uint(request_id, "request_id"),
            _uint(initial_metric, "initial_metric"),
            _uint(final_metric, "final_metric"),
            _bytes32(payout_root, "payout_root"),
            _uint(payout_total_wei, "payout_total_wei"),
            _bytes32(evidence_hash, "evidence_hash"),
        )
        return self._transact(fn)

    def abort(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.abort(_uint(request_id, "request_id")))

    # ------------------------------------------ the result: approve or dispute

    def resolve(self, request_id: int, upheld: bool) -> Receipt:
        if not isinstance(upheld, bool):
            raise DeltaMLValueError(f"upheld must be a bool, got {type(upheld).__name__}")
        fn = self._contract.functions.resolve(_uint(request_id, "request_id"), upheld)
        return self._transact(fn)

    # -------------------------------------------------------------- anyone

    def settle(self, request_id: int) -> Receipt:
        return self._transact(self._contract.functions.settle(_uint(request_id, "request_id")))

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
            seat_root=bytes(v[18]),
            payout_root=bytes(v[19]),
            payout_total_wei=int(v[20]),
            claimed_wei=int(v[21]),
        )

    def has_withdrawn(self, request_id: int, account: str | None = None) -> bool:
        fn = self._contract.functions.hasWithdrawn(
            _uint(request_id, "request_id"), self._who(account)
        )
        return bool(self._view(fn))

    def has_joined(self, request_id: int, account: str | None = None) -> bool:
        fn = self._contract.functions.hasJoined(_uint(request_id, "request_id"), self._who(account))
        return bool(self._view(fn))

    def has_approved(self, request_id: int, account: str | None = None) -> bool:
        fn = self._contract.functions.hasApproved(
            _uint(request_id, "request_id"), self._who(account)
        )
        return bool(self._view(fn))

    def history(self, request_id: int) -> list[LedgerEvent]:
        """Every event about ``request_id``, oldest first (see :class:`EventLog`)."""
        return self._log.history(request_id)

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
