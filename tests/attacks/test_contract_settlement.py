"""Issue 10, money on chain: one malicious party against the Marketplace contract.

Each test plays one attack through the real contract, on the embedded chain and
on anvil, and fails if the attack pays off: (a) the aggregator seats its own
addresses and pays itself, (b) an owner is seated on terms it did not accept,
(c)/(d) a disputed result is paid anyway, (e) a result is settled before anyone
could object, (f) an outsider approves, disputes or resolves, (g) the buyer keeps
the result and takes its deposit back, or a payee is paid twice.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ledger holds the shared market helpers (no package: --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_testkit import ETH, KEY, REASON, SPEC, Market, reverts

from deltaml.ledger import RequestStatus, Role, compute_payouts
from deltaml.ledger.chain import Chain, RpcChain
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.ledger.web3_ledger import Web3Ledger

WINDOW_S = 600


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


def _finished(
    market: Market, deposit: int = 10 * ETH, *, duration_s: int = 3600
) -> tuple[int, list[Web3Ledger], list[Web3Ledger]]:
    """2 trainers + 1 validator that joined; the aggregator posted a result that
    pays the trainers half of their pool."""
    return market.finished_request(
        2,
        1,
        deposit,
        initial_metric=10_000_000,
        final_metric=5_000_000,
        contributions=[3, 1],
        window_s=WINDOW_S,
        duration_s=duration_s,
    )


def _assert_voided(
    market: Market, rid: int, deposit: int, seats: list[Web3Ledger], escrow_before: int
) -> None:
    """A void result: the buyer gets the whole deposit, nobody else anything."""
    state = market.buyer.request(rid)
    assert state.status is RequestStatus.FAILED
    assert market.buyer.claimable(rid) == deposit
    for party in [market.aggregator, *seats]:
        assert party.claimable(rid) == 0
        with reverts("NothingToWithdraw", rid, party.account):
            party.withdraw(rid)
    assert market.buyer.withdraw(rid) == deposit
    assert market.ledger.contract_balance_wei() == escrow_before


# ------------------------------------------------ (a) seats nobody agreed to


def test_aggregator_cannot_pay_its_own_addresses_that_never_joined(market: Market) -> None:
    """The issue's first attack: the aggregator registers two addresses of its own
    as data owners, seats them and posts the largest improvement, to take the
    trainers' pool. The contract holds only the seats' root, so it cannot refuse
    them at `start`; but a seat that never joined can neither approve (no early
    settlement), nor dispute, nor claim a wei, even once the request settles —
    and every honest party sees them (``has_joined`` is false), disputes, and the
    arbiter voids."""
    deposit = 100 * ETH
    escrow_before = market.ledger.contract_balance_wei()
    sybils = [market.party(Role.DATA_OWNER), market.party(Role.DATA_OWNER)]
    honest = market.owners(1)
    rid = market.open_request(deposit, duration_s=3600, window_s=60)
    market.join_all(rid, honest)
    market.aggregator.start(rid, [sybils[0].account], [sybils[1].account, honest[0].account])
    market.aggregator.finish(rid, 10_000_000, 0, [1], KEY)
    for sybil in sybils:
        assert not market.buyer.has_joined(rid, sybil.account)
        with reverts("NotParty", rid, sybil.account):
            sybil.approve(rid)
        with reverts("NotParty", rid, sybil.account):
            sybil.dispute(rid, REASON)
    # settled by silence: the Sybils are still paid nothing
    market.chain.advance_time(61)
    market.buyer.settle(rid)
    for sybil in sybils:
        assert sybil.claimable(rid) == 0
        claim = market.claim_of(rid, sybil.account)
        assert claim.amount_wei > 0
        with reverts("NotJoined", rid, sybil.account):
            sybil.claim(rid, claim)
    # the buyer that checks the seats disputes in time instead, and gets it all back
    rid = market.open_request(deposit, duration_s=3600, window_s=60)
    market.join_all(rid, honest)
    market.aggregator.start(rid, [sybils[0].account], [sybils[1].account, honest[0].account])
    market.aggregator.finish(rid, 10_000_000, 0, [1], KEY)
    market.buyer.dispute(rid, REASON)
    market.arbiter.resolve(rid, False)
    assert market.buyer.withdraw(rid) == deposit
    # the first request: the aggregator's fee and the honest validator's share are
    # paid (the buyer's refund is 0: the posted improvement took the whole pool);
    # what stays locked is exactly the never-joined Sybils' leaves
    assert market.buyer.request(rid - 1).refund_wei == 0
    assert market.aggregator.withdraw(rid - 1) == deposit // 10
    assert honest[0].withdraw(rid - 1) == deposit * 20 // 100 // 2
    locked = sum(market.claim_of(rid - 1, s.account).amount_wei for s in sybils)
    assert market.ledger.contract_balance_wei() == escrow_before + locked


# ------------------------------------------ (b) consent to the exact terms


def test_an_owner_joins_only_the_exact_spec_and_key(market: Market) -> None:
    """An owner shown another spec, or asked to encrypt under another key, than
    the buyer escrowed for cannot be counted as consenting to this request."""
    rid = market.open_request(window_s=WINDOW_S)
    owner, validator = market.owners(2)
    other_spec, other_key = b"\x01" * 32, b"\x02" * 32
    with reverts("SpecMismatch", rid, other_spec, SPEC):
        owner.join(rid, other_spec, KEY)
    with reverts("KeyMismatch", rid, other_key, KEY):
        owner.join(rid, SPEC, other_key)
    with reverts("SpecMismatch", rid, other_spec, SPEC):
        owner.join(rid, other_spec, other_key)
    assert not market.buyer.has_joined(rid, owner.account)
    validator.join(rid, SPEC, KEY)
    # the same owner, on the request's own terms, can be seated and act
    owner.join(rid, SPEC, KEY)
    assert market.buyer.has_joined(rid, owner.account)
    market.aggregator.start(rid, [owner.account], [validator.account])
    assert market.buyer.seat_of(rid, owner.account) == 0
    # an owner the aggregator seats without its consent can never act: joining
    # ends with the start
    rid = market.open_request(window_s=WINDOW_S)
    validator.join(rid, SPEC, KEY)
    market.aggregator.start(rid, [owner.account], [validator.account])
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        owner.join(rid, SPEC, KEY)
    market.aggregator.finish(rid, 10, 5, [1], KEY)
    with reverts("NotParty", rid, owner.account):
        owner.approve(rid)


# ------------------------------------------------ (c) a real dispute


@pytest.mark.parametrize("disputer", ["buyer", "trainer", "validator"])
def test_a_dispute_holds_the_money_until_the_arbiter_voids_it(
    market: Market, disputer: str
) -> None:
    """The buyer or a seat contests the posted result in time: nothing is payable
    however long anyone waits, until the arbiter decides; voided, the buyer gets
    its whole deposit and the aggregator nothing."""
    deposit = 10 * ETH
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = _finished(market, deposit)
    party = {"buyer": market.buyer, "trainer": trainers[1], "validator": validators[0]}[disputer]
    market.chain.advance_time(WINDOW_S // 2)
    party.dispute(rid, REASON)
    state = market.buyer.request(rid)
    assert state.status is RequestStatus.DISPUTED
    event = market.buyer.history(rid)[-1]
    assert (event.name, event.args["by"], event.args["reasonHash"]) == (
        "Disputed",
        party.account,
        REASON,
    )
    # past the challenge window the result is still not payable
    market.chain.advance_time(WINDOW_S)
    assert state.resolution_ends_at is not None
    with reverts("DisputePending", rid, state.resolution_ends_at):
        market.aggregator.settle(rid)
    for payee in [market.aggregator, trainers[0]]:
        assert payee.claimable(rid) == 0
        with reverts("WrongStatus", rid, RequestStatus.DISPUTED):
            payee.withdraw(rid)
    with reverts("WrongStatus", rid, RequestStatus.DISPUTED):
        trainers[0].approve(rid)
    market.arbiter.resolve(rid, False)
    assert [e.name for e in market.buyer.history(rid)][-1] == "Resolved"
    _assert_voided(market, rid, deposit, [*trainers, *validators], escrow_before)


def test_an_upheld_dispute_pays_the_posted_split(market: Market) -> None:
    """The other way the arbiter decides: a frivolous dispute delays payment but
    does not change it."""
    deposit = 10 * ETH
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = _finished(market, deposit)
    market.buyer.dispute(rid, REASON)
    market.arbiter.resolve(rid, True)
    assert market.buyer.request(rid).status is RequestStatus.SETTLED
    expected = compute_payouts(deposit, 10_000_000, 5_000_000, [3, 1], 1)
    owed = [
        *zip(trainers, expected.trainers, strict=True),
        *zip(validators, expected.validators, strict=True),
        (market.aggregator, expected.aggregator),
        (market.buyer, expected.refund),
    ]
    assert sum(amount for _, amount in owed) == deposit
    for party, amount in owed:
        assert party.withdraw(rid) == amount
    assert market.ledger.contract_balance_wei() == escrow_before


# ------------------------------------------------ (d) a silent arbiter


def test_a_dispute_nobody_resolves_is_void_after_two_windows(market: Market) -> None:
    deposit = 6 * ETH
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = _finished(market, deposit)
    trainers[0].dispute(rid, REASON)
    ends = market.buyer.request(rid).resolution_ends_at
    assert ends is not None
    market.chain.advance_time(ends - market.chain.now() - 30)
    with reverts("DisputePending", rid, ends):
        market.aggregator.settle(rid)
    market.chain.advance_time(31)
    # too late for the arbiter too: its silence decided
    with reverts("ResolutionWindowClosed", rid, ends):
        market.arbiter.resolve(rid, True)
    market.aggregator.settle(rid)
    assert [e.name for e in market.buyer.history(rid)][-1] == "DisputeExpired"
    with reverts("WrongStatus", rid, RequestStatus.FAILED):
        market.arbiter.resolve(rid, True)
    _assert_voided(market, rid, deposit, [*trainers, *validators], escrow_before)


# ------------------------------------------- (e) no settlement before the window


def test_no_settlement_before_the_window_unless_everyone_approved(market: Market) -> None:
    """The issue's zero window and buyer-only approval: the aggregator (or a buyer
    in a hurry) could make a result payable before any owner could object."""
    now = market.chain.now()
    with reverts("ChallengeWindowTooShort", 0, 60):
        market.buyer.create_request(
            market.aggregator.account,
            ETH,
            now + 3600,
            0,
            SPEC,
            arbiter=market.arbiter.account,
            key_hash=KEY,
        )
    rid, trainers, validators = market.finished_request(2, 1, window_s=60)
    ends = market.buyer.request(rid).challenge_ends_at
    with reverts("ChallengeWindowOpen", rid, ends):
        market.aggregator.settle(rid)
    # approvals short of everyone settle nothing, not even the buyer's
    for party in [market.buyer, trainers[0], trainers[1]]:
        party.approve(rid)
        assert market.buyer.request(rid).status is RequestStatus.FINISHED
        with reverts("ChallengeWindowOpen", rid, ends):
            market.aggregator.settle(rid)
        assert market.aggregator.claimable(rid) == 0
    # the last seat's approval makes it payable at once
    validators[0].approve(rid)
    state = market.buyer.request(rid)
    assert (state.status, state.approvals) == (RequestStatus.SETTLED, 4)
    assert market.buyer.history(rid)[-1].args["approvedByAll"] is True
    assert market.aggregator.withdraw(rid) == ETH // 10


# ---------------------------------------------- (f) who may approve, dispute, resolve


def test_outsiders_cannot_approve_or_dispute_and_only_the_arbiter_resolves(
    market: Market,
) -> None:
    rid, trainers, validators = _finished(market)
    unseated = market.owners(4)[3]  # a registered data owner, not in this request
    assert market.buyer.seat_of(rid, unseated.account) is None
    outsiders = [
        market.aggregator,
        market.other_aggregator,
        market.arbiter,
        market.party(),
        unseated,
    ]
    for outsider in outsiders:
        with reverts("NotParty", rid, outsider.account):
            outsider.approve(rid)
        with reverts("NotParty", rid, outsider.account):
            outsider.dispute(rid, REASON)
    assert market.buyer.request(rid).approvals == 0
    # a party approves once, and cannot take its approval back by disputing
    trainers[0].approve(rid)
    with reverts("AlreadyApproved", rid, trainers[0].account):
        trainers[0].approve(rid)
    with reverts("AlreadyApproved", rid, trainers[0].account):
        trainers[0].dispute(rid, REASON)
    validators[0].dispute(rid, REASON)
    for pretender in [market.buyer, market.aggregator, trainers[0], trainers[1], validators[0]]:
        with reverts("NotArbiter", rid, pretender.account):
            pretender.resolve(rid, True)
    with reverts("NotArbiter", rid, market.other_aggregator.account):
        market.other_aggregator.resolve(rid, True)
    assert market.buyer.request(rid).status is RequestStatus.DISPUTED
    market.arbiter.resolve(rid, True)
    assert market.buyer.request(rid).status is RequestStatus.SETTLED


# --------------------------------- (g) no model and money back; paid once


def test_the_buyer_cannot_reclaim_a_finished_result_and_everyone_is_paid_once(
    market: Market,
) -> None:
    """Once the aggregator posted its result before the deadline, the deposit is
    no longer the buyer's to take back: not past the deadline, not while its own
    dispute is pending. Every payee then withdraws exactly once."""
    deposit = 8 * ETH + 5
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = _finished(market, deposit, duration_s=120)
    deadline = market.buyer.request(rid).deadline
    market.chain.advance_time(deadline - market.chain.now() + 1)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        market.buyer.reclaim(rid)
    market.buyer.dispute(rid, REASON)
    with reverts("WrongStatus", rid, RequestStatus.DISPUTED):
        market.buyer.reclaim(rid)
    with reverts("WrongStatus", rid, RequestStatus.DISPUTED):
        market.buyer.withdraw(rid)
    market.arbiter.resolve(rid, True)
    with reverts("WrongStatus", rid, RequestStatus.SETTLED):
        market.buyer.reclaim(rid)
    expected = compute_payouts(deposit, 10_000_000, 5_000_000, [3, 1], 1)
    owed = [
        *zip(trainers, expected.trainers, strict=True),
        *zip(validators, expected.validators, strict=True),
        (market.aggregator, expected.aggregator),
        (market.buyer, expected.refund),
    ]
    for party, amount in owed:
        assert party.withdraw(rid) == amount
        with reverts("AlreadyWithdrawn", rid, party.account):
            party.withdraw(rid)
    with reverts("WrongStatus", rid, RequestStatus.SETTLED):
        market.buyer.reclaim(rid)
    assert market.ledger.contract_balance_wei() == escrow_before
