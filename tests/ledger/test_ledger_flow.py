"""The life of a request on every backend: create, start, metrics, finish, pay."""

from __future__ import annotations

import pytest
from ledger_testkit import ETH, EVIDENCE, KEY, SPEC, Market, reverts

from deltaml.errors import DeltaMLValueError
from deltaml.ledger import RequestStatus, Role, Web3Ledger, compute_payouts
from deltaml.ledger import payouts as rule
from deltaml.protocol.merkle import SeatBook


def test_full_request_pays_every_wei_by_the_rule(market: Market) -> None:
    deposit = 3 * ETH + 7
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = market.started_request(3, 2, deposit)
    state = market.buyer.request(rid)
    assert state.status is RequestStatus.IN_PROGRESS
    assert (state.n_trainers, state.n_validators, state.deposit_wei) == (3, 2, deposit)
    assert state.spec_hash == SPEC
    assert (state.arbiter, state.key_hash, state.approvals) == (market.arbiter.account, KEY, 0)
    seats = SeatBook.of([t.account for t in trainers], [v.account for v in validators])
    assert state.seat_root == seats.seat_root(market.buyer.binding(rid))
    assert [market.buyer.seat_of(rid, p.account) for p in trainers + validators] == list(range(5))
    assert all(market.buyer.has_joined(rid, p.account) for p in trainers + validators)

    market.aggregator.post_metric(rid, 1, 9_000_000, EVIDENCE)
    market.aggregator.post_metric(rid, 5, 7_500_000, EVIDENCE)
    assert market.buyer.request(rid).last_round == 5
    contributions = [5, 3, 2]
    market.aggregator.finish(rid, 10_000_000, 6_000_000, contributions, EVIDENCE)
    state = market.buyer.request(rid)
    assert state.status is RequestStatus.FINISHED
    assert (state.initial_metric, state.final_metric, state.evidence_hash) == (
        10_000_000,
        6_000_000,
        EVIDENCE,
    )
    assert state.challenge_ends_at == state.finished_at + state.challenge_window_s
    assert state.resolution_ends_at == state.finished_at + 2 * state.challenge_window_s
    expected = compute_payouts(deposit, 10_000_000, 6_000_000, contributions, 2)
    paid_book = SeatBook.from_payouts(
        seats.trainers, seats.validators, expected.trainers, expected.validators
    )
    assert state.payout_root == paid_book.payout_root(market.buyer.binding(rid))
    assert state.payout_total_wei == paid_book.payout_total
    # nothing is payable before settlement
    assert market.buyer.claimable(rid) == 0
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        trainers[0].withdraw(rid)

    # the buyer and every seat approve; the last approval settles at once
    approvers = [market.buyer, *trainers, *validators]
    for n, party in enumerate(approvers, start=1):
        assert market.buyer.request(rid).status is RequestStatus.FINISHED
        party.approve(rid)
        assert party.has_approved(rid)
        assert market.buyer.request(rid).approvals == n
    assert market.buyer.request(rid).status is RequestStatus.SETTLED
    assert market.buyer.request(rid).refund_wei == expected.refund

    paid = {}
    for party, amount in [
        *zip(trainers, expected.trainers, strict=True),
        *zip(validators, expected.validators, strict=True),
        (market.aggregator, expected.aggregator),
        (market.buyer, expected.refund),
    ]:
        assert party.claimable(rid) == amount
        before = party.balance_wei()
        paid[party.account] = party.withdraw(rid)
        receipt = party.last_receipt
        assert receipt is not None
        assert party.balance_wei() == before + amount - receipt.fee_wei
        assert party.has_withdrawn(rid)
        assert party.claimable(rid) == 0
    assert sum(paid.values()) == deposit
    assert market.ledger.contract_balance_wei() == escrow_before

    # the public record: every state change of this request, in order
    history = market.buyer.history(rid)
    assert [e.name for e in history] == [
        "RequestCreated",
        *["Joined"] * 5,
        "RequestStarted",
        "MetricPosted",
        "MetricPosted",
        "RequestFinished",
        *["Approved"] * 6,
        "RequestSettled",
        *["Withdrawn"] * 7,
    ]
    created, started, finished = history[0].args, history[6].args, history[9].args
    assert (created["arbiter"], created["keyHash"]) == (market.arbiter.account, KEY)
    assert [e.args["owner"] for e in history[1:6]] == [p.account for p in trainers + validators]
    assert started["seatRoot"] == state.seat_root
    assert (started["trainerCount"], started["validatorCount"]) == (3, 2)
    assert (finished["payoutRoot"], finished["payoutTotal"]) == (
        state.payout_root,
        state.payout_total_wei,
    )
    assert finished["evidenceHash"] == EVIDENCE
    assert [e.args["by"] for e in history[10:16]] == [p.account for p in approvers]
    assert history[16].args["approvedByAll"] is True
    assert {e.args["account"]: e.args["amount"] for e in history[17:]} == paid


def test_seats_follow_the_order_given_to_start(market: Market) -> None:
    rid, trainers, validators = market.started_request(2, 2)
    for seat, party in enumerate(trainers + validators):
        assert market.buyer.seat_of(rid, party.account) == seat
    assert market.buyer.seat_of(rid, market.aggregator.account) is None
    assert market.buyer.seat_of(rid) is None


def test_settle_by_anyone_only_after_the_challenge_window(market: Market) -> None:
    rid, trainers, _ = market.started_request(1, 1, window_s=600)
    market.aggregator.finish(rid, 100, 50, [1], EVIDENCE)
    ends_at = market.buyer.request(rid).challenge_ends_at
    stranger = market.party()
    with reverts("ChallengeWindowOpen", rid, ends_at):
        stranger.settle(rid)
    market.chain.advance_time(300)
    with reverts("ChallengeWindowOpen", rid, ends_at):
        stranger.settle(rid)
    market.chain.advance_time(301)
    stranger.settle(rid)
    assert market.buyer.request(rid).status is RequestStatus.SETTLED
    with reverts("WrongStatus", rid, RequestStatus.SETTLED):
        stranger.settle(rid)
    with reverts("WrongStatus", rid, RequestStatus.SETTLED):
        market.buyer.approve(rid)
    with reverts("WrongStatus", rid, RequestStatus.SETTLED):
        trainers[0].dispute(rid, EVIDENCE)
    assert trainers[0].withdraw(rid) == compute_payouts(ETH, 100, 50, [1], 1).trainers[0]


def test_cancel_before_start_refunds_at_once(market: Market) -> None:
    deposit = 5 * ETH
    escrow_before = market.ledger.contract_balance_wei()
    rid = market.open_request(deposit)
    assert market.ledger.contract_balance_wei() == escrow_before + deposit
    assert [e.name for e in market.buyer.history(rid)] == ["RequestCreated"]
    before = market.buyer.balance_wei()
    market.buyer.cancel(rid)
    fee = market.buyer.last_receipt.fee_wei if market.buyer.last_receipt else 0
    assert market.buyer.balance_wei() == before + deposit - fee
    assert market.buyer.request(rid).status is RequestStatus.CANCELLED
    assert market.ledger.contract_balance_wei() == escrow_before
    with reverts("AlreadyWithdrawn", rid, market.buyer.account):
        market.buyer.withdraw(rid)
    with reverts("WrongStatus", rid, RequestStatus.CANCELLED):
        market.buyer.cancel(rid)
    history = market.buyer.history(rid)
    assert [e.name for e in history] == ["RequestCreated", "RequestCancelled", "Withdrawn"]
    assert history[2].args["amount"] == deposit
    with reverts("WrongStatus", rid, RequestStatus.CANCELLED):
        market.aggregator.start(rid, [market.owners(1)[0].account], [market.owners(2)[1].account])


def test_abort_lets_the_buyer_reclaim_at_once(market: Market) -> None:
    rid, trainers, _ = market.started_request(1, 1, 2 * ETH)
    with reverts("NotAggregator", rid, market.buyer.account):
        market.buyer.abort(rid)
    market.aggregator.abort(rid)
    assert market.buyer.request(rid).status is RequestStatus.FAILED
    with reverts("WrongStatus", rid, RequestStatus.FAILED):
        market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    assert trainers[0].claimable(rid) == 0
    with reverts("NothingToWithdraw", rid, trainers[0].account):
        trainers[0].withdraw(rid)
    assert market.buyer.claimable(rid) == 2 * ETH
    market.buyer.reclaim(rid)  # before the deadline: allowed after an abort
    assert market.buyer.has_withdrawn(rid)
    names = [e.name for e in market.buyer.history(rid)]
    assert names == [
        "RequestCreated",
        "Joined",
        "Joined",
        "RequestStarted",
        "RequestAborted",
        "Withdrawn",
    ]
    with reverts("AlreadyWithdrawn", rid, market.buyer.account):
        market.buyer.reclaim(rid)


def test_abort_is_refused_after_finish(market: Market) -> None:
    rid, _, _ = market.started_request(1, 1)
    market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        market.aggregator.abort(rid)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        market.buyer.reclaim(rid)


def test_metrics_rounds_must_increase_and_fit(market: Market) -> None:
    rid = market.open_request()
    with reverts("WrongStatus", rid, RequestStatus.OPEN):
        market.aggregator.post_metric(rid, 1, 5, EVIDENCE)
    owners = market.owners(2)
    market.join_all(rid, owners)
    market.aggregator.start(rid, [owners[0].account], [owners[1].account])
    market.aggregator.post_metric(rid, 3, 5, EVIDENCE)
    with reverts("RoundNotIncreasing", rid, 3, 3):
        market.aggregator.post_metric(rid, 3, 4, EVIDENCE)
    with reverts("RoundNotIncreasing", rid, 2, 3):
        market.aggregator.post_metric(rid, 2, 4, EVIDENCE)
    with reverts("MetricTooLarge", rule.MAX_METRIC + 1, rule.MAX_METRIC):
        market.aggregator.post_metric(rid, 4, rule.MAX_METRIC + 1, EVIDENCE)
    market.aggregator.post_metric(rid, 4, rule.MAX_METRIC, EVIDENCE)


def test_finish_checks_its_inputs(market: Market) -> None:
    rid, _, _ = market.started_request(2, 1)
    with pytest.raises(DeltaMLValueError, match="1 contributions for 2 trainers"):
        market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    with pytest.raises(DeltaMLValueError, match="3 contributions for 2 trainers"):
        market.aggregator.finish(rid, 10, 5, [1, 1, 1], EVIDENCE)
    with reverts("MetricTooLarge", rule.MAX_METRIC + 1, rule.MAX_METRIC):
        market.aggregator.finish(rid, rule.MAX_METRIC + 1, 5, [1, 1], EVIDENCE)
    root = b"\x01" * 32
    with reverts("EmptyRoot", rid):
        market.aggregator.finish_with_root(rid, 10, 5, b"\x00" * 32, 0, EVIDENCE)
    # the seats' total is bounded by the rule: the pool plus the validators' shares
    pool = ETH * 70 * 5 // (100 * 10)
    bound = pool + ETH * 20 // 100
    with reverts("PayoutTotalTooLarge", rid, bound + 1, bound):
        market.aggregator.finish_with_root(rid, 10, 5, root, bound + 1, EVIDENCE)
    with reverts("PayoutTotalTooLarge", rid, ETH * 20 // 100 + 1, ETH * 20 // 100):
        market.aggregator.finish_with_root(rid, 10, 10, root, ETH * 20 // 100 + 1, EVIDENCE)
    market.aggregator.finish(rid, 10, 5, [1, 1], EVIDENCE)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        market.aggregator.finish(rid, 10, 5, [1, 1], EVIDENCE)


def test_create_request_checks_its_inputs(market: Market) -> None:
    now = market.chain.now()
    agg = market.aggregator.account
    buyer = market.buyer

    def create(deposit: int, deadline: int, window: int, arbiter: str | None = None) -> int:
        return buyer.create_request(
            agg,
            deposit,
            deadline,
            window,
            SPEC,
            arbiter=market.arbiter.account if arbiter is None else arbiter,
            key_hash=KEY,
        )

    with reverts("ZeroDeposit"):
        create(0, now + 3600, 60)
    with reverts("InvalidDeadline"):
        create(ETH, now - 1, 60)
    with reverts("InvalidDeadline"):
        create(ETH, now + 366 * 86400, 60)
    with reverts("ChallengeWindowTooLong", 30 * 86400 + 1, 30 * 86400):
        create(ETH, now + 3600, 30 * 86400 + 1)
    with reverts("ChallengeWindowTooShort", 59, 60):
        create(ETH, now + 3600, 59)
    with reverts("ChallengeWindowTooShort", 0, 60):
        create(ETH, now + 3600, 0)
    zero = "0x" + "00" * 20
    for arbiter in (zero, buyer.account, agg):
        with reverts("InvalidArbiter", arbiter):
            create(ETH, now + 3600, 60, arbiter)
    rid = create(ETH, now + 3600, 60)
    assert buyer.request(rid).challenge_window_s == 60


def test_unknown_request_is_named(market: Market) -> None:
    with reverts("UnknownRequest", 10**9):
        market.buyer.request(10**9)
    with reverts("UnknownRequest", 10**9):
        market.buyer.withdraw(10**9)
    assert market.buyer.claimable(10**9) == 0


def test_registration_is_per_role_and_once(market: Market) -> None:
    party = market.party()
    assert not party.has_role(party.account, Role.BUYER)
    party.register(Role.BUYER)
    party.register(Role.DATA_OWNER)
    assert party.has_role(party.account, Role.BUYER)
    assert party.has_role(party.account, Role.DATA_OWNER)
    assert not party.has_role(party.account, Role.AGGREGATOR)
    with reverts("AlreadyRegistered", party.account, Role.BUYER):
        party.register(Role.BUYER)


def test_contract_constants_match_the_python_rule(market: Market) -> None:
    functions = market.ledger._contract.functions
    assert functions.METRIC_SCALE().call() == rule.METRIC_SCALE
    assert functions.MAX_PARTICIPANTS().call() == rule.MAX_PARTICIPANTS
    assert functions.TRAINERS_PERCENT().call() == rule.TRAINERS_PERCENT
    assert functions.VALIDATORS_PERCENT().call() == rule.VALIDATORS_PERCENT
    assert functions.AGGREGATOR_PERCENT().call() == rule.AGGREGATOR_PERCENT
    assert functions.MAX_METRIC().call() == rule.MAX_METRIC
    assert functions.MAX_CONTRIBUTION().call() == rule.MAX_CONTRIBUTION
    assert functions.MAX_DEPOSIT().call() == rule.MAX_DEPOSIT_WEI


def test_time_travel_moves_the_chain_clock(market: Market) -> None:
    before = market.chain.now()
    after = market.chain.advance_time(1000)
    assert after >= before + 1000


def test_a_ledger_refuses_an_address_without_the_marketplace(market: Market) -> None:
    key = market.buyer._account
    with reverts("NotMarketplace", market.buyer.account):
        Web3Ledger(market.chain, market.buyer.account, key)  # an account, no code
    attacker = market.deploy(market.attacker_artifact, key)
    with reverts("NotMarketplace", attacker):
        Web3Ledger(market.chain, attacker, key)  # some other contract
    assert Web3Ledger(market.chain, market.ledger.contract_address, key).account == key.address
