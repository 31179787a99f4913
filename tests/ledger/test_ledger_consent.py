"""Joining, approving and disputing on every backend: the edges of each call
(the attacks themselves are in tests/attacks/test_contract_settlement.py)."""

from __future__ import annotations

from ledger_testkit import ETH, EVIDENCE, KEY, REASON, SPEC, Market, reverts

from deltaml.ledger import RequestStatus, Role, compute_payouts
from deltaml.protocol.merkle import PayoutClaim, SeatBook


def test_join_only_while_open_before_the_deadline_and_once(market: Market) -> None:
    rid = market.open_request(duration_s=100)
    owners = market.owners(3)
    owners[0].join(rid, SPEC, KEY)
    with reverts("AlreadyJoined", rid, owners[0].account):
        owners[0].join(rid, SPEC, KEY)
    assert market.buyer.has_joined(rid, owners[0].account)
    assert not market.buyer.has_joined(rid, owners[1].account)
    history = market.buyer.history(rid)
    assert [e.name for e in history] == ["RequestCreated", "Joined"]
    assert history[1].args["owner"] == owners[0].account
    owners[1].join(rid, SPEC, KEY)
    market.aggregator.start(rid, [owners[0].account], [owners[1].account])
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        owners[2].join(rid, SPEC, KEY)
    late = market.open_request(duration_s=50)
    deadline = market.buyer.request(late).deadline
    market.chain.advance_time(100)
    with reverts("DeadlinePassed", late, deadline):
        owners[2].join(late, SPEC, KEY)
    with reverts("UnknownRequest", 10**9):
        owners[2].join(10**9, SPEC, KEY)
    market.buyer.reclaim(late)


def test_a_joined_owner_the_aggregator_does_not_seat_is_owed_nothing(market: Market) -> None:
    rid = market.open_request()
    owners = market.owners(3)
    market.join_all(rid, owners)
    market.aggregator.start(rid, [owners[0].account], [owners[1].account])
    assert [market.buyer.seat_of(rid, o.account) for o in owners] == [0, 1, None]
    market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    market.approve_all(rid, owners[:1], owners[1:2])
    assert owners[2].claimable(rid) == 0
    with reverts("NothingToWithdraw", rid, owners[2].account):
        owners[2].withdraw(rid)
    # with a made-up proof the contract refuses it
    with reverts("InvalidProof", rid, owners[2].account):
        owners[2].claim(rid, PayoutClaim(10**17, ()))


def test_views_before_start_and_finish(market: Market) -> None:
    rid = market.open_request()
    zero = b"\x00" * 32
    state = market.buyer.request(rid)
    assert (state.seat_root, state.payout_root, state.payout_total_wei) == (zero, zero, 0)
    assert not market.buyer.has_approved(rid)
    assert not market.buyer.has_approved(rid, market.arbiter.account)
    state = market.buyer.request(rid)
    assert (state.challenge_ends_at, state.resolution_ends_at) == (None, None)
    market.join_all(rid, market.owners(3))
    trainers = [o.account for o in market.owners(2)]
    validators = [market.owners(3)[2].account]
    market.aggregator.start(rid, trainers, validators)
    book = SeatBook.of(trainers, validators)
    state = market.buyer.request(rid)
    assert state.seat_root == book.seat_root(market.buyer.binding(rid))
    assert (state.n_trainers, state.n_validators, state.payout_root) == (2, 1, zero)
    market.aggregator.finish(rid, 10, 5, [0, 7], EVIDENCE)
    split = compute_payouts(ETH, 10, 5, [0, 7], 1)
    paid = SeatBook.from_payouts(trainers, validators, split.trainers, split.validators)
    state = market.buyer.request(rid)
    assert state.payout_root == paid.payout_root(market.buyer.binding(rid))
    assert state.payout_total_wei == paid.payout_total == ETH - split.aggregator - split.refund
    assert state.refund_wei == split.refund


def test_seats_alone_settle_nothing_before_the_window_and_the_window_still_settles(
    market: Market,
) -> None:
    rid, trainers, validators = market.finished_request(1, 1, window_s=120)
    for seat in [*trainers, *validators]:
        seat.approve(rid)
    state = market.buyer.request(rid)
    assert (state.status, state.approvals) == (RequestStatus.FINISHED, 2)
    assert state.challenge_ends_at is not None
    with reverts("ChallengeWindowOpen", rid, state.challenge_ends_at):
        trainers[0].settle(rid)
    market.chain.advance_time(121)
    # the buyer never answered: after the window anyone settles, and a dispute is too late
    with reverts("ChallengeWindowClosed", rid, state.challenge_ends_at):
        market.buyer.dispute(rid, REASON)
    market.party().settle(rid)
    assert market.buyer.request(rid).status is RequestStatus.SETTLED
    assert market.buyer.history(rid)[-1].args["approvedByAll"] is False


def test_approve_and_dispute_only_on_a_finished_request(market: Market) -> None:
    rid, trainers, _ = market.started_request(1, 1)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        trainers[0].approve(rid)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        market.buyer.dispute(rid, REASON)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        market.arbiter.resolve(rid, False)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        market.buyer.settle(rid)
    market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        market.arbiter.resolve(rid, False)
    market.buyer.dispute(rid, REASON)
    with reverts("WrongStatus", rid, RequestStatus.DISPUTED):
        trainers[0].dispute(rid, REASON)
    market.arbiter.resolve(rid, False)
    with reverts("WrongStatus", rid, RequestStatus.FAILED):
        market.arbiter.resolve(rid, True)
    assert market.buyer.withdraw(rid) == ETH


def test_an_arbiter_needs_no_role_and_may_hold_others(market: Market) -> None:
    """Any address may arbitrate (a registered owner too); it just cannot join."""
    arbiter = market.party(Role.DATA_OWNER)
    rid = market.open_request(arbiter=arbiter)
    assert market.buyer.request(rid).arbiter == arbiter.account
    with reverts("ConflictOfInterest", rid, arbiter.account):
        arbiter.join(rid, SPEC, KEY)
