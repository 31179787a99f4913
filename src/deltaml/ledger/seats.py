"""What a seat does with Merkle proofs: approve, dispute, claim (part of ``Web3Ledger``).

The contract keeps the seats and payouts as Merkle roots only; a seat proves its
leaf (:mod:`deltaml.protocol.merkle`) from a :class:`SeatBook` that a ledger is
given (``seats=``) or remembers (what it posted itself, or :meth:`remember`).
The buyer and the aggregator never need a proof: their credits are on chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deltaml.errors import DeltaMLValueError
from deltaml.ledger.base import Receipt
from deltaml.ledger.transactions import check_bytes32 as _bytes32
from deltaml.ledger.transactions import check_uint as _uint
from deltaml.protocol.merkle import Binding, PayoutClaim, SeatBook, SeatProof
from deltaml.protocol.payouts import compute_payouts

if TYPE_CHECKING:
    from eth_typing import ChecksumAddress

    from deltaml.ledger.base import RequestState
    from deltaml.ledger.chain import Chain


class SeatActions:
    """The methods of :class:`~deltaml.ledger.web3_ledger.Web3Ledger` that need seats."""

    _books: dict[int, SeatBook]
    _contract: Any
    _chain: Chain

    if TYPE_CHECKING:  # provided by Web3Ledger

        @property
        def account(self) -> str: ...
        @property
        def contract_address(self) -> str: ...
        def request(self, request_id: int) -> RequestState: ...
        def finish_with_root(
            self,
            request_id: int,
            initial_metric: int,
            final_metric: int,
            payout_root: bytes,
            payout_total_wei: int,
            evidence_hash: bytes,
        ) -> Receipt: ...
        def _transact(self, fn: Any, value_wei: int = 0) -> Receipt: ...
        def _send(self, fn: Any, value_wei: int = 0) -> tuple[Receipt, Mapping[str, Any]]: ...
        def _view(self, fn: Any) -> Any: ...
        def _who(self, account: str | None) -> ChecksumAddress: ...
        def _events(self, name: str, raw: Mapping[str, Any]) -> list[Any]: ...

    # ---------------------------------------------------------- seat books

    def binding(self, request_id: int) -> Binding:
        """What binds this contract's Merkle leaves to request ``request_id``."""
        return Binding(self._chain.chain_id, self.contract_address, _uint(request_id, "request_id"))

    def remember(self, request_id: int, seats: SeatBook) -> None:
        if not isinstance(seats, SeatBook):
            raise DeltaMLValueError(f"seats must be a SeatBook, got {type(seats).__name__}")
        known = self._books.get(request_id)
        if known is None or seats.payouts_wei is not None or known.payouts_wei is None:
            self._books[request_id] = seats

    def _book(self, request_id: int, seats: SeatBook | None, *, payouts: bool = False) -> SeatBook:
        if seats is not None:
            self.remember(request_id, seats)
        book = seats if seats is not None else self._books.get(request_id)
        if book is None or (payouts and book.payouts_wei is None):
            what = "payouts" if payouts else "seats"
            raise DeltaMLValueError(
                f"the {what} of request {request_id} are needed for a Merkle proof"
                " (pass seats=SeatBook(...), e.g. from the transcript)"
            )
        return book

    def finish(
        self,
        request_id: int,
        initial_metric: int,
        final_metric: int,
        contributions: Sequence[int],
        evidence_hash: bytes,
        *,
        seats: SeatBook | None = None,
    ) -> Receipt:
        book = self._book(request_id, seats)
        if len(contributions) != len(book.trainers):
            raise DeltaMLValueError(
                f"{len(contributions)} contributions for {len(book.trainers)} trainers"
            )
        deposit = self.request(request_id).deposit_wei
        split = compute_payouts(
            deposit, initial_metric, final_metric, list(contributions), len(book.validators)
        )
        book = SeatBook.from_payouts(
            book.trainers, book.validators, split.trainers, split.validators
        )
        receipt = self.finish_with_root(
            request_id,
            initial_metric,
            final_metric,
            book.payout_root(self.binding(request_id)),
            book.payout_total,
            evidence_hash,
        )
        self.remember(request_id, book)
        return receipt

    def _seat_proof(self, request_id: int, seats: SeatBook | None) -> SeatProof:
        """This account's seat proof, from ``seats`` or what is remembered; an empty
        one for anyone else (the buyer needs none; the contract refuses a non-seat)."""
        book = seats if seats is not None else self._books.get(request_id)
        if book is None or book.kind_of(self.account) is None:
            return SeatProof(False, ())
        self.remember(request_id, book)
        return book.seat_proof(self.binding(request_id), self.account)

    def approve(self, request_id: int, *, seats: SeatBook | None = None) -> Receipt:
        return self.approve_with_proof(request_id, self._seat_proof(request_id, seats))

    def approve_with_proof(self, request_id: int, proof: SeatProof) -> Receipt:
        """Approve with this seat proof, as it is (the buyer sends an empty one)."""
        fn = self._contract.functions.approve(
            _uint(request_id, "request_id"), bool(proof.is_trainer), list(proof.proof)
        )
        return self._transact(fn)

    def dispute(
        self, request_id: int, reason_hash: bytes, *, seats: SeatBook | None = None
    ) -> Receipt:
        return self.dispute_with_proof(request_id, reason_hash, self._seat_proof(request_id, seats))

    def dispute_with_proof(self, request_id: int, reason_hash: bytes, proof: SeatProof) -> Receipt:
        """Dispute with this seat proof, as it is (the buyer sends an empty one)."""
        fn = self._contract.functions.dispute(
            _uint(request_id, "request_id"),
            _bytes32(reason_hash, "reason_hash"),
            bool(proof.is_trainer),
            list(proof.proof),
        )
        return self._transact(fn)

    def withdraw(self, request_id: int, *, seats: SeatBook | None = None) -> int:
        book = seats if seats is not None else self._books.get(request_id)
        if book is not None and book.payouts_wei is not None and self.payout_known(book):
            self.remember(request_id, book)
            return self.claim(request_id, book.claim(self.binding(request_id), self.account))
        # the buyer's refund or the aggregator's fee (anyone else is owed nothing)
        fn = self._contract.functions.withdraw(_uint(request_id, "request_id"))
        return self._paid(self._send(fn)[1])

    def payout_known(self, book: SeatBook, account: str | None = None) -> bool:
        """Whether ``book`` has a payout leaf for ``account`` (default: this one)."""
        who = self.account if account is None else account
        return book.payouts_wei is not None and book.kind_of(who) is not None

    def claim(self, request_id: int, claim: PayoutClaim) -> int:
        """Claim a seat's payout with this amount and proof, as they are."""
        fn = self._contract.functions.claim(
            _uint(request_id, "request_id"),
            _uint(claim.amount_wei, "amount_wei"),
            list(claim.proof),
        )
        return self._paid(self._send(fn)[1])

    def _paid(self, raw: Mapping[str, Any]) -> int:
        return sum(
            int(e["args"]["amount"])
            for e in self._events("Withdrawn", raw)
            if e["args"]["account"] == self.account
        )

    def claimable(
        self, request_id: int, account: str | None = None, *, seats: SeatBook | None = None
    ) -> int:
        rid, who = _uint(request_id, "request_id"), self._who(account)
        book = seats if seats is not None else self._books.get(rid)
        if book is None or not self.payout_known(book, who):
            # the buyer's refund or the aggregator's fee (0 for anyone else)
            return int(self._view(self._contract.functions.claimable(rid, who)))
        if book.payout_of(who) == 0:
            return 0
        claim = book.claim(self.binding(rid), who)
        fn = self._contract.functions.claimableWithProof(
            rid, who, claim.amount_wei, list(claim.proof)
        )
        return int(self._view(fn))

    def seat_of(
        self,
        request_id: int,
        account: str | None = None,
        *,
        seats: SeatBook | None = None,
    ) -> int | None:
        rid, who = _uint(request_id, "request_id"), self._who(account)
        book = seats if seats is not None else self._books.get(rid)
        if book is None or book.kind_of(who) is None:
            return None
        proof = book.seat_proof(self.binding(rid), who)
        fn = self._contract.functions.isSeat(rid, who, proof.is_trainer, list(proof.proof))
        if not self._view(fn):
            return None
        order = [a.lower() for a in (*book.trainers, *book.validators)]
        return order.index(who.lower())
