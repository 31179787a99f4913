"""Issue 15: claims against the payout root, one party against the contract.

The contract holds a request's payouts only as a Merkle root and a posted total;
each seat claims with its leaf's proof. Each test plays one attack on the
embedded chain and on anvil, and fails if it pays off: (a) a seat claims with the
proof of another seat's leaf, (b) a seat claims twice, (c) a proof (or a whole
root) of another request or another contract is replayed, (d) the aggregator
posts a root whose leaves add up to more than its posted total.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ledger holds the shared market helpers (no package: --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_testkit import ETH, EVIDENCE, Market, reverts

from deltaml.ledger import RequestStatus, Role
from deltaml.ledger.chain import Chain, RpcChain
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.ledger.web3_ledger import Web3Ledger
from deltaml.protocol.merkle import PayoutClaim, SeatBook


@pytest.fixture(scope="module", params=["embedded", "anvil"])
def market(request: pytest.FixtureRequest) -> Iterator[Market]:
    chain: Chain
    if request.param == "embedded":
        chain = EmbeddedChain()
    else:
        chain = RpcChain(request.getfixturevalue("anvil_url"))
    try:
        yield Market(chain)
    finally:
        chain.close()


def _settled(
    market: Market, deposit: int = 10 * ETH
) -> tuple[int, list[Web3Ledger], list[Web3Ledger]]:
    """3 trainers (contributions 5, 3, 1) + 2 validators, approved by everyone."""
    rid, trainers, validators = market.finished_request(
        3, 2, deposit, initial_metric=10_000_000, final_metric=4_000_000, contributions=[5, 3, 1]
    )
    market.approve_all(rid, trainers, validators)
    assert market.buyer.request(rid).status is RequestStatus.SETTLED
    return rid, trainers, validators


# ------------------------------------------------ (a) another seat's leaf


def test_a_claim_with_the_proof_of_another_leaf_is_refused(market: Market) -> None:
    """The smallest payee takes the largest payee's amount and proof (both public in
    the transcript): the leaf is rebuilt from the caller's own address, so the proof
    proves nothing for it; nor does its own proof with the larger amount."""
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = _settled(market)
    thief, victim = trainers[2], trainers[0]
    stolen = market.claim_of(rid, victim.account)
    own = market.claim_of(rid, thief.account)
    assert stolen.amount_wei > own.amount_wei > 0
    with reverts("InvalidProof", rid, thief.account):
        thief.claim(rid, stolen)
    with reverts("InvalidProof", rid, thief.account):
        thief.claim(rid, PayoutClaim(stolen.amount_wei, own.proof))
    with reverts("InvalidProof", rid, thief.account):
        thief.claim(rid, PayoutClaim(own.amount_wei + 1, own.proof))
    # a validator's proof with a trainer's leaf of the same address does not exist
    with reverts("InvalidProof", rid, validators[0].account):
        validators[0].claim(rid, PayoutClaim(stolen.amount_wei, stolen.proof))
    assert market.buyer.request(rid).claimed_wei == 0
    # everyone is then paid exactly its own leaf, and the escrow is back where it was
    for party in [*trainers, *validators, market.aggregator, market.buyer]:
        party.withdraw(rid)
    assert market.ledger.contract_balance_wei() == escrow_before


# ------------------------------------------------------------ (b) twice


def test_a_double_claim_is_refused(market: Market) -> None:
    rid, trainers, validators = _settled(market)
    for seat in [trainers[0], validators[1]]:
        claim = market.claim_of(rid, seat.account)
        assert seat.claim(rid, claim) == claim.amount_wei
        assert seat.has_withdrawn(rid) and seat.claimable(rid) == 0
        with reverts("AlreadyWithdrawn", rid, seat.account):
            seat.claim(rid, claim)
        with reverts("AlreadyWithdrawn", rid, seat.account):
            seat.withdraw(rid)
    state = market.buyer.request(rid)
    paid = sum(market.claim_of(rid, s.account).amount_wei for s in [trainers[0], validators[1]])
    assert state.claimed_wei == paid


# --------------------------------- (c) a proof of another request or contract


def test_a_proof_or_root_of_another_request_is_no_good(market: Market) -> None:
    """The same seats in two requests: the aggregator posts in the second the first
    one's payout root (public), where the trainer of the larger share was someone
    else. Leaves are bound to the request, so no proof of the first request
    verifies in the second, and the copied root pays nobody."""
    rid, trainers, validators = _settled(market)
    first = market.claim_of(rid, trainers[0].account)
    second = market.open_request(10 * ETH, window_s=60)
    market.join_all(second, [*trainers, *validators])
    accounts = ([t.account for t in trainers], [v.account for v in validators])
    market.aggregator.start(second, *accounts)
    copied = market.buyer.request(rid).payout_root
    total = market.buyer.request(rid).payout_total_wei
    market.aggregator.finish_with_root(second, 10_000_000, 4_000_000, copied, total, EVIDENCE)
    market.chain.advance_time(61)
    market.buyer.settle(second)
    with reverts("InvalidProof", second, trainers[0].account):
        trainers[0].claim(second, first)
    # and the second request's own leaves are not in the copied root either
    honest = SeatBook.from_payouts(*accounts, [first.amount_wei, 0, 0], [0, 0])
    own = honest.claim(market.buyer.binding(second), trainers[0].account)
    with reverts("InvalidProof", second, trainers[0].account):
        trainers[0].claim(second, own)


def test_a_proof_of_another_contract_is_no_good(market: Market) -> None:
    """Another deployment of the Marketplace on the same chain with the same request
    id and a copied root: leaves are bound to the contract's address."""
    rid, trainers, validators = _settled(market)
    other = Market(market.chain)
    while True:  # the same request id in the other contract
        other_rid = other.open_request(10 * ETH, window_s=60)
        if other_rid >= rid:
            break
        other.buyer.cancel(other_rid)
    assert other_rid == rid
    owners = [other.ledger.for_account(p._account) for p in [*trainers, *validators]]
    for owner in owners:
        owner.register(Role.DATA_OWNER)
    other.join_all(rid, owners)
    other.aggregator.start(rid, [o.account for o in owners[:3]], [o.account for o in owners[3:]])
    state = market.buyer.request(rid)
    other.aggregator.finish_with_root(
        rid, 10_000_000, 4_000_000, state.payout_root, state.payout_total_wei, EVIDENCE
    )
    other.chain.advance_time(61)
    other.buyer.settle(rid)
    claim = market.claim_of(rid, trainers[0].account)
    assert claim.amount_wei <= state.payout_total_wei
    with reverts("InvalidProof", rid, trainers[0].account):
        owners[0].claim(rid, claim)


# ---------------------------------- (d) a root worth more than its posted total


def test_claims_stop_at_the_posted_total(market: Market) -> None:
    """The aggregator posts a total within the rule's bound but a root whose leaves
    add up to far more (each seat a large leaf): the first claims are paid, then
    every claim that would go past the total is refused — the rest of the escrow
    (other requests') is never touched, and payouts + refund = deposit."""
    deposit = 10 * ETH
    escrow_before = market.ledger.contract_balance_wei()
    bystander = market.open_request(7 * ETH)  # another buyer's escrow in the contract
    rid, trainers, validators = market.started_request(3, 2, deposit, window_s=60)
    seats = [*trainers, *validators]
    accounts = ([t.account for t in trainers], [v.account for v in validators])
    inflated = SeatBook.from_payouts(*accounts, [3 * ETH] * 3, [3 * ETH] * 2)  # 15 ETH
    binding = market.buyer.binding(rid)
    total = 5 * ETH  # within pool (0.7 × 0.6 × 10) + validators (2): 6.2 ETH
    market.aggregator.finish_with_root(
        rid, 10_000_000, 4_000_000, inflated.payout_root(binding), total, EVIDENCE
    )
    market.chain.advance_time(61)
    market.buyer.settle(rid)
    paid = 0
    for seat in seats:
        claim = inflated.claim(binding, seat.account)
        remaining = total - paid
        if claim.amount_wei <= remaining:
            assert seat.claim(rid, claim) == claim.amount_wei
            paid += claim.amount_wei
        else:
            with reverts("PayoutExhausted", rid, claim.amount_wei, remaining):
                seat.claim(rid, claim)
    assert paid == market.buyer.request(rid).claimed_wei <= total
    assert market.aggregator.withdraw(rid) == deposit // 10
    refund = market.buyer.withdraw(rid)
    assert refund == deposit - total - deposit // 10
    # what stays is the unclaimed rest of the posted total and the bystander's escrow
    assert market.ledger.contract_balance_wei() == escrow_before + 7 * ETH + (total - paid)
    assert paid + refund + deposit // 10 + (total - paid) == deposit
    market.buyer.cancel(bystander)


def test_a_posted_total_beyond_the_rule_is_refused(market: Market) -> None:
    rid, _, _ = market.started_request(1, 1, 10 * ETH)
    bound = 10 * ETH * 70 * 6 // (100 * 10) + 10 * ETH * 20 // 100
    with reverts("PayoutTotalTooLarge", rid, bound + 1, bound):
        market.aggregator.finish_with_root(
            rid, 10_000_000, 4_000_000, b"\x01" * 32, bound + 1, EVIDENCE
        )
    assert market.buyer.request(rid).status is RequestStatus.IN_PROGRESS
