"""Attacks on the escrow, on every backend. Each test states what a broken
contract would let happen and fails if it does."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_testkit import ETH, EVIDENCE, KEY, REASON, SPEC, Market, reverts

from deltaml.errors import DeltaMLValueError
from deltaml.ledger import RequestStatus, Role, compute_payouts
from deltaml.ledger.base import Ledger
from deltaml.protocol.merkle import PayoutClaim

# ReentrantPayee.Reentry
REENTER_WITHDRAW, REENTER_RECLAIM, REENTER_CANCEL, REENTER_CLAIM = 1, 2, 3, 4


def _settle_all(
    market: Market, rid: int, owed: list[tuple[Ledger, int]], escrow_before: int
) -> None:
    """Every payee withdraws what it is owed (a payee owed nothing is refused);
    the contract must then hold exactly what it held before the request."""
    for party, amount in owed:
        if amount:
            assert party.withdraw(rid) == amount, party.account
        else:
            with reverts("NothingToWithdraw", rid, party.account):
                party.withdraw(rid)
    assert market.ledger.contract_balance_wei() == escrow_before


# ----------------------------------------------------------------- reentrancy


def _attacker(market: Market, *roles: Role) -> tuple[Any, Any, str]:
    owner = market.new_account(100 * ETH)
    address = market.deploy(market.attacker_artifact, owner)
    contract = market.contract(market.attacker_artifact, address)
    for role in roles:
        market.transact(owner, contract.functions.register(int(role)))
    return owner, contract, address


def test_reentrant_trainer_is_paid_exactly_once(market: Market) -> None:
    owner, attacker, address = _attacker(market, Role.DATA_OWNER)
    validator = market.owners(1)[0]
    escrow_before = market.ledger.contract_balance_wei()
    deposit = 7 * ETH
    rid = market.open_request(deposit, window_s=60)
    market.transact(owner, attacker.functions.join(rid, SPEC, KEY))
    market.join_all(rid, [validator])
    market.aggregator.start(rid, [address], [validator.account])
    market.aggregator.finish(rid, 1000, 1, [1], EVIDENCE)
    market.chain.advance_time(61)  # the attacker never approves: wait out the window
    market.buyer.settle(rid)
    share = market.buyer.claimable(rid, address)
    assert share == compute_payouts(deposit, 1000, 1, [1], 1).trainers[0] > 0

    claim = market.claim_of(rid, address)
    assert claim.amount_wei == share
    market.transact(owner, attacker.functions.arm(REENTER_CLAIM, rid, 5))
    market.transact(owner, attacker.functions.claim(rid, share, list(claim.proof)))

    # a vulnerable contract would have paid the share again from other escrow
    assert attacker.functions.received().call() == share
    assert market.chain.w3.eth.get_balance(address) == share
    assert attacker.functions.attempts().call() == 1
    assert attacker.functions.successes().call() == 0
    error = market.ledger.decoder.decode(attacker.functions.lastRevertData().call())
    assert error.error_name == "Reentrancy"
    assert market.buyer.has_withdrawn(rid, address)
    with reverts("AlreadyWithdrawn", rid, address):
        market.transact(owner, attacker.functions.claim(rid, share, list(claim.proof)))

    expected = compute_payouts(deposit, 1000, 1, [1], 1)
    owed: list[tuple[Ledger, int]] = [
        (validator, expected.validators[0]),
        (market.aggregator, expected.aggregator),
        (market.buyer, expected.refund),
    ]
    assert share + sum(amount for _, amount in owed) == deposit
    _settle_all(market, rid, owed, escrow_before)


@pytest.mark.parametrize("reentry", [REENTER_WITHDRAW, REENTER_CANCEL, REENTER_RECLAIM])
def test_reentrant_buyer_cancelling_gets_its_deposit_once(market: Market, reentry: int) -> None:
    owner, attacker, address = _attacker(market, Role.BUYER)
    escrow_before = market.ledger.contract_balance_wei()
    deposit = 3 * ETH + 1
    deadline = market.chain.now() + 3600
    market.transact(
        owner,
        attacker.functions.createRequest(
            market.aggregator.account, market.arbiter.account, deadline, 60, SPEC, KEY
        ),
        value_wei=deposit,
    )
    rid = market.ledger._contract.functions.requestCount().call()
    assert market.buyer.request(rid).buyer == address

    market.transact(owner, attacker.functions.arm(reentry, rid, 5))
    market.transact(owner, attacker.functions.cancel(rid))
    assert attacker.functions.received().call() == deposit
    assert attacker.functions.attempts().call() == 1
    assert attacker.functions.successes().call() == 0
    assert market.ledger.contract_balance_wei() == escrow_before


def test_reentrant_buyer_reclaiming_gets_its_deposit_once(market: Market) -> None:
    owner, attacker, _ = _attacker(market, Role.BUYER)
    escrow_before = market.ledger.contract_balance_wei()
    deposit = 2 * ETH
    deadline = market.chain.now() + 100
    market.transact(
        owner,
        attacker.functions.createRequest(
            market.aggregator.account, market.arbiter.account, deadline, 60, SPEC, KEY
        ),
        value_wei=deposit,
    )
    rid = market.ledger._contract.functions.requestCount().call()
    market.chain.advance_time(200)
    market.transact(owner, attacker.functions.arm(REENTER_RECLAIM, rid, 5))
    market.transact(owner, attacker.functions.reclaim(rid))
    assert attacker.functions.received().call() == deposit
    assert attacker.functions.successes().call() == 0
    assert market.buyer.request(rid).status is RequestStatus.FAILED
    assert market.ledger.contract_balance_wei() == escrow_before


def test_payee_refusing_ether_blocks_only_itself(market: Market) -> None:
    owner = market.new_account()
    address = market.deploy(market.rejecting_artifact, owner)
    rejecting = market.contract(market.rejecting_artifact, address)
    market.transact(owner, rejecting.functions.register(int(Role.DATA_OWNER)))
    trainer = market.owners(1)[0]
    rid = market.open_request(ETH, window_s=60)
    market.transact(owner, rejecting.functions.join(rid, SPEC, KEY))
    market.join_all(rid, [trainer])
    market.aggregator.start(rid, [trainer.account], [address])
    market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    market.chain.advance_time(61)  # the rejecting payee never approves: wait out the window
    trainer.settle(rid)
    owed = market.buyer.claimable(rid, address)
    assert owed == compute_payouts(ETH, 10, 5, [1], 1).validators[0]
    claim = market.claim_of(rid, address)
    with reverts("TransferFailed", address, owed):
        market.transact(owner, rejecting.functions.claim(rid, owed, list(claim.proof)))
    assert market.buyer.claimable(rid, address) == owed  # still owed, not lost
    assert trainer.withdraw(rid) > 0
    assert market.aggregator.withdraw(rid) > 0


# ------------------------------------------------------------ double withdraw


def test_double_withdraw_is_refused(market: Market) -> None:
    rid, trainers, validators = market.finished_request(1, 1, initial_metric=10, final_metric=5)
    market.approve_all(rid, trainers, validators)
    for party in (trainers[0], validators[0], market.aggregator, market.buyer):
        amount = party.withdraw(rid)
        assert amount > 0
        with reverts("AlreadyWithdrawn", rid, party.account):
            party.withdraw(rid)
        assert party.claimable(rid) == 0


def test_reclaim_twice_is_refused(market: Market) -> None:
    rid = market.open_request(ETH, duration_s=50)
    market.chain.advance_time(100)
    market.buyer.reclaim(rid)
    with reverts("AlreadyWithdrawn", rid, market.buyer.account):
        market.buyer.reclaim(rid)
    with reverts("AlreadyWithdrawn", rid, market.buyer.account):
        market.buyer.withdraw(rid)


# ------------------------------------------------- acting as another role


def test_only_a_registered_buyer_creates_requests(market: Market) -> None:
    stranger = market.party(Role.DATA_OWNER)
    deadline = market.chain.now() + 3600
    with reverts("NotRegistered", stranger.account, Role.BUYER):
        stranger.create_request(
            market.aggregator.account,
            ETH,
            deadline,
            60,
            SPEC,
            arbiter=market.arbiter.account,
            key_hash=KEY,
        )


def test_the_aggregator_must_be_registered_as_one(market: Market) -> None:
    owner = market.owners(1)[0]
    with reverts("NotRegistered", owner.account, Role.AGGREGATOR):
        market.open_request(aggregator=owner)


def test_buyer_cannot_choose_itself_as_aggregator(market: Market) -> None:
    both = market.party(Role.BUYER, Role.AGGREGATOR)
    with reverts("ConflictOfInterest"):
        market.open_request(buyer=both, aggregator=both)


def test_only_the_buyer_cancels_and_reclaims(market: Market) -> None:
    rid = market.open_request(duration_s=100)
    intruders: list[Ledger] = [
        market.aggregator,
        market.other_aggregator,
        market.owners(1)[0],
        market.arbiter,
    ]
    for intruder in intruders:
        with reverts("NotBuyer", rid, intruder.account):
            intruder.cancel(rid)
    rid2 = market.open_request(duration_s=100)
    market.chain.advance_time(200)
    for intruder in intruders:
        with reverts("NotBuyer", rid2, intruder.account):
            intruder.reclaim(rid2)
    market.buyer.reclaim(rid2)


def test_registration_registers_the_caller_only(market: Market) -> None:
    newcomer = market.party()
    before = {role: market.buyer.has_role(newcomer.account, role) for role in Role}
    assert not any(before.values())
    # There is no way to name someone else: `register` takes only a role, and
    # registering oneself leaves every other address untouched.
    market.party(Role.DATA_OWNER)
    assert not any(market.buyer.has_role(newcomer.account, role) for role in Role)
    abi = {e["name"]: e for e in market.ledger._artifact.abi if e.get("type") == "function"}
    assert [i["type"] for i in abi["register"]["inputs"]] == ["uint8"]


# ----------------------------------------------- a non-chosen aggregator


def test_a_non_chosen_aggregator_can_do_nothing(market: Market) -> None:
    rid = market.open_request()
    other = market.other_aggregator
    owners = market.owners(2)
    market.join_all(rid, owners)
    trainers, validators = [owners[0].account], [owners[1].account]
    with reverts("NotAggregator", rid, other.account):
        other.start(rid, trainers, validators)
    with reverts("NotAggregator", rid, other.account):
        other.abort(rid)
    market.aggregator.start(rid, trainers, validators)
    with reverts("NotAggregator", rid, other.account):
        other.post_metric(rid, 1, 5, EVIDENCE)
    with reverts("NotAggregator", rid, other.account):
        other.finish(rid, 10, 5, [1], EVIDENCE)
    with reverts("NotAggregator", rid, owners[0].account):
        owners[0].finish(rid, 10, 5, [1], EVIDENCE)
    with reverts("NotAggregator", rid, market.buyer.account):
        market.buyer.post_metric(rid, 1, 5, EVIDENCE)
    assert market.buyer.request(rid).last_round == 0


# ----------------------------------------------------- who may be seated


def test_an_unregistered_owner_can_neither_join_nor_act_as_a_seat(market: Market) -> None:
    rid = market.open_request(window_s=60)
    registered = market.owners(2)
    market.join_all(rid, registered)
    stranger = market.party(Role.BUYER)  # registered, but not as a data owner
    with reverts("NotRegistered", stranger.account, Role.DATA_OWNER):
        stranger.join(rid, SPEC, KEY)
    # the contract cannot see the seats at start (a root), but a seat that never
    # joined can neither approve, dispute nor be paid
    trainers = [registered[0].account, stranger.account]
    market.aggregator.start(rid, trainers, [registered[1].account])
    market.aggregator.finish(rid, 10, 5, [1, 1], EVIDENCE)
    with reverts("NotParty", rid, stranger.account):
        stranger.approve(rid)
    with reverts("NotParty", rid, stranger.account):
        stranger.dispute(rid, REASON)
    market.chain.advance_time(61)
    market.buyer.settle(rid)
    assert stranger.claimable(rid) == 0
    with reverts("NotJoined", rid, stranger.account):
        stranger.withdraw(rid)


def test_start_refuses_empty_seats_and_conflicts(market: Market) -> None:
    rid = market.open_request()
    market.join_all(rid, market.owners(3))
    a, b, c = (o.account for o in market.owners(3))
    # duplicates never reach the chain: the seat book refuses them
    for trainers, validators in (([a, a], [b]), ([a, b], [b]), ([a], [c, c])):
        with pytest.raises(DeltaMLValueError, match="distinct"):
            market.aggregator.start(rid, trainers, validators)
    with reverts("EmptyRoot", rid):
        market.aggregator.start_with_root(rid, b"\x00" * 32, 1, 1)
    # the buyer, the aggregator and the arbiter cannot join their own request,
    # so they can never act as a seat of it
    owner_buyer = market.party(Role.DATA_OWNER, Role.BUYER)
    rid2 = market.open_request(buyer=owner_buyer)
    with reverts("ConflictOfInterest", rid2, owner_buyer.account):
        owner_buyer.join(rid2, SPEC, KEY)
    owner_aggregator = market.party(Role.DATA_OWNER, Role.AGGREGATOR)
    rid3 = market.open_request(aggregator=owner_aggregator)
    with reverts("ConflictOfInterest", rid3, owner_aggregator.account):
        owner_aggregator.join(rid3, SPEC, KEY)
    owner_arbiter = market.party(Role.DATA_OWNER)
    rid4 = market.open_request(arbiter=owner_arbiter)
    with reverts("ConflictOfInterest", rid4, owner_arbiter.account):
        owner_arbiter.join(rid4, SPEC, KEY)
    with reverts("NoTrainers"):
        market.aggregator.start(rid, [], [a])
    with reverts("NoValidators"):
        market.aggregator.start(rid, [a], [])
    market.aggregator.start(rid, [a, b], [c])
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        market.aggregator.start(rid, [a, b], [c])


def test_start_caps_the_number_of_participants(market: Market) -> None:
    rid = market.open_request()
    root = b"\x01" * 32
    with reverts("TooManyParticipants", 1001, 1000):
        market.aggregator.start_with_root(rid, root, 1000, 1)
    with reverts("TooManyParticipants", 2**256 - 1, 1000):
        market.aggregator.start_with_root(rid, root, 2**256 - 1, 1000)


# -------------------------------------------- settlement and the window


def test_settlement_before_and_after_the_challenge_window(market: Market) -> None:
    rid, trainers, _ = market.started_request(1, 1, window_s=1000)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        market.buyer.settle(rid)
    market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    ends_at = market.buyer.request(rid).challenge_ends_at
    with reverts("ChallengeWindowOpen", rid, ends_at):
        trainers[0].settle(rid)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        trainers[0].withdraw(rid)
    market.chain.advance_time(1001)
    trainers[0].settle(rid)
    assert trainers[0].withdraw(rid) > 0


# ------------------------------------------------------ cancel after start


def test_cancel_after_start_is_refused(market: Market) -> None:
    rid, _, _ = market.started_request(1, 1)
    with reverts("WrongStatus", rid, RequestStatus.IN_PROGRESS):
        market.buyer.cancel(rid)
    market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    with reverts("WrongStatus", rid, RequestStatus.FINISHED):
        market.buyer.cancel(rid)


# --------------------------------------------------- reclaim and deadline


def test_reclaim_before_and_after_the_deadline(market: Market) -> None:
    deposit = 4 * ETH + 3
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, _ = market.started_request(1, 1, deposit, duration_s=500)
    deadline = market.buyer.request(rid).deadline
    with reverts("DeadlineNotReached", rid, deadline):
        market.buyer.reclaim(rid)
    market.chain.advance_time(501)
    # past the deadline the aggregator can no longer post anything
    with reverts("DeadlinePassed", rid, deadline):
        market.aggregator.post_metric(rid, 1, 5, EVIDENCE)
    with reverts("DeadlinePassed", rid, deadline):
        market.aggregator.finish(rid, 10, 5, [1], EVIDENCE)
    before = market.buyer.balance_wei()
    market.buyer.reclaim(rid)
    fee = market.buyer.last_receipt.fee_wei if market.buyer.last_receipt else 0
    assert market.buyer.balance_wei() == before + deposit - fee
    assert market.buyer.request(rid).status is RequestStatus.FAILED
    assert market.ledger.contract_balance_wei() == escrow_before
    assert [e.name for e in market.buyer.history(rid)][-2:] == ["RequestExpired", "Withdrawn"]
    assert trainers[0].claimable(rid) == 0
    with reverts("NothingToWithdraw", rid, trainers[0].account):
        trainers[0].claim(rid, PayoutClaim(1, ()))


def test_start_after_the_deadline_is_refused(market: Market) -> None:
    rid = market.open_request(duration_s=50)
    deadline = market.buyer.request(rid).deadline
    owners = market.owners(2)
    market.chain.advance_time(100)
    with reverts("DeadlinePassed", rid, deadline):
        market.aggregator.start(rid, [owners[0].account], [owners[1].account])
    market.buyer.reclaim(rid)  # an open request expires too


# ------------------------------------------------------- awkward amounts


def _finish_and_pay(
    market: Market,
    deposit: int,
    n_trainers: int,
    n_validators: int,
    initial: int,
    final: int,
    contributions: list[int],
) -> None:
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = market.started_request(n_trainers, n_validators, deposit)
    market.aggregator.finish(rid, initial, final, contributions, EVIDENCE)
    market.approve_all(rid, trainers, validators)
    state = market.buyer.request(rid)
    assert state.status is RequestStatus.SETTLED
    expected = compute_payouts(deposit, initial, final, contributions, n_validators)
    assert expected.total() == deposit
    assert state.payout_total_wei == sum(expected.trainers) + sum(expected.validators)
    assert state.refund_wei == expected.refund
    owed = [
        *zip(trainers, expected.trainers, strict=True),
        *zip(validators, expected.validators, strict=True),
        (market.aggregator, expected.aggregator),
        (market.buyer, expected.refund),
    ]
    for party, amount in owed:
        assert party.claimable(rid) == amount, party.account
    _settle_all(market, rid, owed, escrow_before)


@pytest.mark.parametrize(
    ("deposit", "n_trainers", "n_validators", "initial", "final", "contributions"),
    [
        pytest.param(1, 1, 1, 10, 1, [1], id="1-wei"),
        pytest.param(2, 2, 1, 3, 1, [1, 1], id="2-wei"),
        pytest.param(1_000_000_007, 3, 3, 1_000_003, 999_983, [7, 11, 13], id="primes"),
        pytest.param(104_729 * 10**15 + 7919, 1, 1, 7919, 2, [104_729], id="1-trainer-prime"),
        pytest.param(ETH + 1, 5, 2, 10**6, 0, [0, 0, 3, 0, 0], id="perfect-model-one-contributor"),
        pytest.param(997, 2, 3, 101, 17, [0, 0], id="nobody-contributed"),
    ],
)
def test_awkward_amounts_add_up_to_the_deposit(
    market: Market,
    deposit: int,
    n_trainers: int,
    n_validators: int,
    initial: int,
    final: int,
    contributions: list[int],
) -> None:
    _finish_and_pay(market, deposit, n_trainers, n_validators, initial, final, contributions)


def test_fifty_trainers_and_fourteen_validators_add_up(market: Market) -> None:
    primes = [p for p in range(2, 400) if all(p % d for d in range(2, int(p**0.5) + 1))]
    _finish_and_pay(market, 1_000_000_000_000_000_009, 50, 14, 7_654_321, 1_234_567, primes[:50])


# ------------------------------------------- no improvement: no pool, no underflow


@pytest.mark.parametrize(
    ("initial", "final"),
    [
        pytest.param(1_000_000, 1_500_000, id="worse"),
        pytest.param(1_000_000, 1_000_000, id="unchanged"),
        pytest.param(0, 0, id="zero-metrics"),
        pytest.param(0, 5, id="from-zero"),
        pytest.param(5, 2**96 - 1, id="far-worse"),
    ],
)
def test_no_improvement_pays_only_the_fixed_shares(
    market: Market, initial: int, final: int
) -> None:
    deposit = 10 * ETH + 9
    escrow_before = market.ledger.contract_balance_wei()
    rid, trainers, validators = market.started_request(2, 2, deposit)
    market.aggregator.finish(rid, initial, final, [3, 4], EVIDENCE)
    market.approve_all(rid, trainers, validators)
    per_validator = deposit * 20 // 100 // 2
    aggregator = deposit * 10 // 100
    refund = deposit - 2 * per_validator - aggregator
    owed: list[tuple[Ledger, int]] = [
        (trainers[0], 0),
        (trainers[1], 0),
        (validators[0], per_validator),
        (validators[1], per_validator),
        (market.aggregator, aggregator),
        (market.buyer, refund),
    ]
    for party, amount in owed:
        assert party.claimable(rid) == amount
    assert sum(amount for _, amount in owed) == deposit
    _settle_all(market, rid, owed, escrow_before)
