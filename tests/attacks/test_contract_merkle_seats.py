"""Issue 15: approving and disputing against the seat root, one party against the
contract.

The contract holds a request's seats only as a Merkle root and their count; the
buyer and every seat approve (unanimity counts distinct approvals up to the seat
count + 1) or dispute, a seat with the proof of its leaf. Each test fails if an
outsider's voice counts: (a) an owner that joined but holds no seat approves or
disputes with another seat's proof, or none; (b) a seat proves the wrong kind of
seat, or approves twice to make up the count; (c) a seated address that never
joined approves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ledger holds the shared market helpers (no package: --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from ledger_testkit import ETH, KEY, REASON, Market, reverts

from deltaml.ledger import RequestStatus, Role
from deltaml.ledger.chain import Chain, RpcChain
from deltaml.ledger.embedded import EmbeddedChain
from deltaml.protocol.merkle import SeatProof


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


def test_a_non_seat_can_neither_approve_nor_dispute(market: Market) -> None:
    """An owner that joined the request but was not seated borrows a seat's proof
    (public), or sends none, to approve (pushing the result towards an early
    settlement) or to dispute (freezing the money): both are refused, and the
    approvals stay what the real parties gave."""
    owners = market.owners(4)
    rid = market.open_request(ETH, window_s=600)
    market.join_all(rid, owners)
    trainers, validators, outsider = owners[:2], owners[2:3], owners[3]
    market.aggregator.start(rid, [t.account for t in trainers], [validators[0].account])
    market.aggregator.finish(rid, 10, 5, [1, 1], KEY)
    market.buyer.approve(rid)
    trainers[0].approve(rid)
    borrowed = market.seat_proof_of(rid, trainers[1].account)
    for proof in [borrowed, SeatProof(True, ()), SeatProof(False, borrowed.proof)]:
        with reverts("NotParty", rid, outsider.account):
            outsider.approve_with_proof(rid, proof)
        with reverts("NotParty", rid, outsider.account):
            outsider.dispute_with_proof(rid, REASON, proof)
    state = market.buyer.request(rid)
    assert (state.status, state.approvals) == (RequestStatus.FINISHED, 2)
    assert not market.buyer.has_approved(rid, outsider.account)
    # the real seats complete unanimity: settled at the last of them
    trainers[1].approve(rid)
    validators[0].approve(rid)
    state = market.buyer.request(rid)
    assert (state.status, state.approvals) == (RequestStatus.SETTLED, 4)


def test_a_seat_proves_only_its_own_kind_and_counts_once(market: Market) -> None:
    """A validator claims a trainer's seat (another leaf), a trainer approves twice,
    and the buyer approves twice: none of it adds to the count towards unanimity."""
    rid, trainers, validators = market.finished_request(2, 1, window_s=600)
    validator = validators[0]
    own = market.seat_proof_of(rid, validator.account)
    assert not own.is_trainer
    with reverts("NotParty", rid, validator.account):
        validator.approve_with_proof(rid, SeatProof(True, own.proof))
    trainers[0].approve(rid)
    with reverts("AlreadyApproved", rid, trainers[0].account):
        trainers[0].approve(rid)
    market.buyer.approve(rid)
    with reverts("AlreadyApproved", rid, market.buyer.account):
        market.buyer.approve(rid)
    state = market.buyer.request(rid)
    assert (state.status, state.approvals) == (RequestStatus.FINISHED, 2)
    # the seat that has not approved may still dispute; the approved one may not
    with reverts("AlreadyApproved", rid, trainers[0].account):
        trainers[0].dispute(rid, REASON)
    validator.dispute(rid, REASON)
    assert market.buyer.request(rid).status is RequestStatus.DISPUTED


def test_a_seat_that_never_joined_has_no_voice(market: Market) -> None:
    """The aggregator seats an address of its own that never joined (the root cannot
    show it at start): with a valid proof of its leaf it still cannot approve, so
    the buyer's and the honest seats' approvals never reach unanimity without it."""
    honest = market.owners(2)
    sybil = market.party(Role.DATA_OWNER)
    rid = market.open_request(ETH, window_s=600)
    market.join_all(rid, honest)
    market.aggregator.start(rid, [honest[0].account, sybil.account], [honest[1].account])
    market.aggregator.finish(rid, 10, 5, [1, 1], KEY)
    proof = market.seat_proof_of(rid, sybil.account)
    assert proof.is_trainer
    with reverts("NotParty", rid, sybil.account):
        sybil.approve_with_proof(rid, proof)
    with reverts("NotParty", rid, sybil.account):
        sybil.dispute_with_proof(rid, REASON, proof)
    for party in [market.buyer, *honest]:
        party.approve(rid)
    state = market.buyer.request(rid)
    assert (state.status, state.approvals) == (RequestStatus.FINISHED, 3)
