"""A request of 1,000 seats on the embedded chain (issue 15).

Gas is deterministic, so it is asserted: every transaction stays under 10 M gas,
``start``, ``finish`` and ``resolve`` cost the same for 10 and 1,000 seats, and
``approve``, ``dispute`` and ``claim`` grow only with the proof (log2 of the
seats). The money adds up to the wei with 1,000 payees: a sample of seats joins
and claims on chain (a claim needs the payee to have joined: two transactions
per owner before it), and the rest follows from the sum — the payout root's 1,000
leaves add up to the posted total, whose claims the contract caps, and refund =
deposit − fee − total. Every seat joining and approving is ``bench/gas.py
--seats 1000 --unanimous`` (about 3 minutes here).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ledger_testkit import ETH, EVIDENCE, KEY, REASON, SPEC, Market

from deltaml.ledger import RequestStatus, Role, compute_payouts
from deltaml.ledger.accounts import fund_from_dev_account, generate_account
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.ledger.web3_ledger import Web3Ledger
from deltaml.protocol.merkle import SeatBook, payout_leaf, verify_proof

GAS_CAP = 10_000_000
SAMPLE = 12
#: A proof of 1,000 leaves has 10 siblings, of 10 leaves 4: each costs 512 gas of
#: calldata and a keccak of 64 bytes, well under 1,500 gas.
PER_LEVEL_GAS = 1_500


class Seats:
    """``n`` seats (70 % trainers) of which a spread-out sample acts on chain."""

    def __init__(self, market: Market, n: int) -> None:
        self.market = market
        accounts = [generate_account() for _ in range(n)]
        self.n_trainers = n * 7 // 10
        self.trainers = [a.address for a in accounts[: self.n_trainers]]
        self.validators = [a.address for a in accounts[self.n_trainers :]]
        step = max(1, n // SAMPLE)
        picked = sorted({*range(0, n, step)[: SAMPLE - 1], n - 1})  # trainers and validators
        acting = [accounts[i] for i in picked]
        fund_from_dev_account(market.chain, [a.address for a in acting], ETH, demo=True)
        # set-up, not under test: a fixed gas limit skips estimation
        self.fixed = [
            Web3Ledger(
                market.chain, market.ledger.contract_address, a, gas_limit=150_000, check_code=False
            )
            for a in acting
        ]
        for ledger in self.fixed:
            ledger.register(Role.DATA_OWNER)
        self.acting = [market.ledger.for_account(a) for a in acting]

    def open(self, deposit: int) -> int:
        rid = self.market.open_request(deposit, window_s=60)
        for ledger in self.fixed:
            ledger.join(rid, SPEC, KEY)
        return rid


def _flow(market: Market, seats: Seats) -> dict[str, int]:
    """Every call about seats, on two requests (one approved, one disputed and
    upheld); the largest gas of each call."""
    gas: dict[str, int] = {}

    def note(name: str, party: Web3Ledger) -> None:
        assert party.last_receipt is not None
        gas[name] = max(gas.get(name, 0), party.last_receipt.gas_used)

    contributions = [(i * 7919) % 1009 for i in range(seats.n_trainers)]
    agg = market.aggregator
    rids = []
    for _ in range(2):
        rid = seats.open(10 * ETH + 7)
        agg.start(rid, seats.trainers, seats.validators)
        note("start", agg)
        agg.post_metric(rid, 1, 8_000_000, EVIDENCE)
        note("postMetric", agg)
        agg.finish(rid, 10_000_000, 6_000_000, contributions, EVIDENCE)
        note("finish", agg)
        rids.append(rid)
    rid, disputed = rids
    seats.acting[0].dispute(disputed, REASON)
    note("dispute", seats.acting[0])
    market.arbiter.resolve(disputed, True)
    note("resolve", market.arbiter)
    market.buyer.approve(rid)
    note("approve", market.buyer)
    for seat in seats.acting[:-1]:  # not everyone: settled by the window
        seat.approve(rid)
        note("approve", seat)
    market.chain.advance_time(61)
    market.buyer.settle(rid)
    note("settle", market.buyer)
    for seat in seats.acting:
        if seat.claimable(rid):
            seat.withdraw(rid)
            note("claim", seat)
    market.aggregator.withdraw(rid)
    note("withdraw", market.aggregator)
    market.buyer.withdraw(rid)
    note("withdraw", market.buyer)
    return gas


@pytest.fixture(scope="module")
def market() -> Iterator[Market]:
    chain = EmbeddedChain()
    try:
        yield Market(chain)
    finally:
        chain.close()


@pytest.fixture(scope="module")
def thousand(market: Market) -> Seats:
    return Seats(market, 1000)


def test_every_call_with_1000_seats_is_under_10m_gas_and_does_not_grow(
    market: Market, thousand: Seats
) -> None:
    small = _flow(market, Seats(market, 10))
    large = _flow(market, thousand)
    print("\ncall        10 seats  1,000 seats")
    for name, gas in large.items():
        print(f"{name:<10} {small[name]:>10,} {gas:>12,}")
    assert set(large) == set(small) >= {"start", "finish", "approve", "dispute", "resolve"}
    assert max(large.values()) < GAS_CAP
    for name in ("start", "postMetric", "finish", "resolve", "settle", "withdraw"):
        # the same work; calldata differs by the zero bytes of random roots only
        assert abs(large[name] - small[name]) <= 200, name
    for name in ("approve", "dispute", "claim"):
        assert 0 <= large[name] - small[name] <= 6 * PER_LEVEL_GAS, name


def test_1000_payees_add_up_to_the_deposit_to_the_wei(market: Market, thousand: Seats) -> None:
    deposit = 1_000_000_000_000_000_009  # a prime: every division rounds
    contributions = [0 if i % 10 == 3 else (i * 104_729) % 7919 for i in range(700)]
    escrow_before = market.ledger.contract_balance_wei()
    rid = thousand.open(deposit)
    market.aggregator.start(rid, thousand.trainers, thousand.validators)
    market.aggregator.finish(rid, 7_654_321, 1_234_567, contributions, EVIDENCE)
    market.chain.advance_time(61)
    market.buyer.settle(rid)
    state = market.buyer.request(rid)
    assert state.status is RequestStatus.SETTLED

    # the rule in Python, the root on chain: all 1,000 leaves, their sum, the rest
    split = compute_payouts(deposit, 7_654_321, 1_234_567, contributions, 300)
    book = SeatBook.from_payouts(
        thousand.trainers, thousand.validators, split.trainers, split.validators
    )
    binding = market.buyer.binding(rid)
    assert state.payout_root == book.payout_root(binding)
    assert state.payout_total_wei == book.payout_total == sum(split.trainers + split.validators)
    assert state.refund_wei == split.refund
    assert state.payout_total_wei + split.aggregator + state.refund_wei == deposit
    tree = book.payout_tree(binding)
    for account in thousand.trainers + thousand.validators:
        amount = book.payout_of(account)
        leaf = payout_leaf(binding, account, amount)
        assert verify_proof(state.payout_root, leaf, tree.proof(leaf))

    # the sample claims on chain: each exactly its leaf, once
    claimed = 0
    for seat in thousand.acting:
        owed = book.payout_of(seat.account)
        assert seat.claimable(rid) == owed
        if owed:
            assert seat.withdraw(rid) == owed
            claimed += owed
    assert market.aggregator.withdraw(rid) == split.aggregator
    assert market.buyer.withdraw(rid) == split.refund
    after = market.buyer.request(rid)
    assert after.claimed_wei == claimed
    # what is left in escrow is exactly what the other leaves are owed
    unclaimed = after.payout_total_wei - after.claimed_wei
    assert market.ledger.contract_balance_wei() == escrow_before + unclaimed
    acting = {s.account for s in thousand.acting}
    assert unclaimed == sum(
        book.payout_of(a) for a in thousand.trainers + thousand.validators if a not in acting
    )
