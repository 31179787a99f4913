"""The Merkle roots on chain against a transcript: seats and payouts recomputed.

The contract keeps a request's seats and the seats' payouts only as Merkle roots
(:mod:`deltaml.protocol.merkle`), bound to its chain id, its address and the
request. Verification rebuilds both trees from what the transcript says — its
seats, and the payment rule applied to the escrow, the proven metrics and the
verified contribution weights — with the chain's own binding, and compares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deltaml.errors import DeltaMLValueError
from deltaml.protocol.merkle import Binding, SeatBook
from deltaml.protocol.payouts import compute_payouts

if TYPE_CHECKING:
    from deltaml.evidence.chain import OnChainRequest
    from deltaml.evidence.verify import Settlement


def settlement_book(s: Settlement) -> SeatBook | str:
    """The seats and the rule's payouts the transcript implies (or why there are none)."""
    try:
        split = compute_payouts(
            s.deposit_wei,
            s.initial_metric,
            s.final_metric,
            list(s.contributions),
            len(s.validators),
        )
        return SeatBook.from_payouts(s.trainers, s.validators, split.trainers, split.validators)
    except DeltaMLValueError as exc:
        return str(exc)


def chain_binding(chain: OnChainRequest) -> Binding | None:
    """The chain's own binding of its leaves (``None``: its chain id is not known)."""
    if chain.chain_id is None:
        return None
    return Binding(chain.chain_id, chain.contract, chain.request_id)


def seat_differences(s: Settlement, chain: OnChainRequest) -> str:
    """How the transcript's seats differ from the request's (empty: they do not)."""
    book, binding = settlement_book(s), chain_binding(chain)
    if (len(s.trainers), len(s.validators)) != (chain.n_trainers, chain.n_validators):
        return f"the request seats {chain.n_trainers} trainer(s) and {chain.n_validators}"
    if isinstance(book, str):
        return book
    if binding is None:
        return "the chain id is unknown, the seat root cannot be recomputed"
    try:
        root = book.seat_root(binding).hex()
    except DeltaMLValueError as exc:
        return str(exc)
    if root != chain.seat_root:
        return f"their root {root[:16]}… is not the seat root on chain {chain.seat_root[:16]}…"
    absent = [a for a in (*s.trainers, *s.validators) if a.lower() not in chain.joined]
    if absent:
        return f"{len(absent)} of them never joined the request (first: {absent[0]})"
    return ""


def payout_differences(s: Settlement, chain: OnChainRequest) -> str:
    """How the posted payouts differ from the rule's split of the evidence (empty: they do not)."""
    book, binding = settlement_book(s), chain_binding(chain)
    if isinstance(book, str):
        return book
    if binding is None:
        return "the chain id is unknown, the payout root cannot be recomputed"
    try:
        root, total = book.payout_root(binding).hex(), book.payout_total
    except DeltaMLValueError as exc:
        return str(exc)
    if total != chain.payout_total_wei:
        return f"posted total {chain.payout_total_wei} wei, the evidence gives {total}"
    if root != chain.payout_root:
        return f"payout root on chain {chain.payout_root[:16]}…, the evidence gives {root[:16]}…"
    return ""
