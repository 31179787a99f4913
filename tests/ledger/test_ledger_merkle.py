"""The Merkle trees of seats and payouts (:mod:`deltaml.protocol.merkle`): proofs,
and the same leaves and roots in Python as in the contract, on every backend."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_testkit import Market, reverts

from deltaml.errors import DeltaMLValueError
from deltaml.ledger import RequestStatus
from deltaml.ledger.web3_ledger import Web3Ledger
from deltaml.protocol.merkle import (
    MAX_PROOF_LENGTH,
    Binding,
    MerkleTree,
    SeatBook,
    hash_pair,
    payout_leaf,
    seat_leaf,
    verify_proof,
)

BINDING = Binding(31337, "0x" + "c0" * 20, 7)


def _address(i: int) -> str:
    return "0x" + f"{i + 1:040x}"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100])
def test_every_leaf_proves_and_no_other_does(n: int) -> None:
    leaves = [seat_leaf(BINDING, _address(i), i % 3 == 0) for i in range(n)]
    tree = MerkleTree(leaves)
    for leaf in leaves:
        proof = tree.proof(leaf)
        assert len(proof) <= max(1, (n - 1).bit_length())
        assert verify_proof(tree.root, leaf, proof)
    outsider = seat_leaf(BINDING, _address(n), True)
    assert not any(verify_proof(tree.root, outsider, tree.proof(leaf)) for leaf in leaves)
    if n > 1:  # a proof belongs to its leaf
        assert not verify_proof(tree.root, leaves[0], tree.proof(leaves[1]))
    # the root is a function of the set of leaves
    assert MerkleTree(leaves[::-1]).root == tree.root


@settings(max_examples=30, deadline=None)
@given(
    st.sets(
        st.binary(min_size=32, max_size=32).filter(lambda b: any(b)),  # a zero root never proves
        min_size=1,
        max_size=70,
    )
)
def test_sorted_pair_trees_prove_any_set(leaves: set[bytes]) -> None:
    tree = MerkleTree(leaves)
    for leaf in leaves:
        assert verify_proof(tree.root, leaf, tree.proof(leaf))


def test_the_tree_refuses_what_the_contract_could_not_tell_apart() -> None:
    with pytest.raises(DeltaMLValueError, match="at least one leaf"):
        MerkleTree([])
    with pytest.raises(DeltaMLValueError, match="distinct"):
        MerkleTree([b"\x01" * 32, b"\x01" * 32])
    with pytest.raises(DeltaMLValueError, match="distinct"):
        SeatBook.of([_address(1)], [_address(1)])
    with pytest.raises(DeltaMLValueError, match="not an Ethereum address"):
        SeatBook.of(["bob"], [_address(1)]).seat_root(BINDING)
    tree = MerkleTree([b"\x01" * 32, b"\x02" * 32])
    assert not verify_proof(b"\x00" * 32, b"\x01" * 32, tree.proof(b"\x01" * 32))
    assert not verify_proof(tree.root, b"\x01" * 32, [b"\x02" * 32] * (MAX_PROOF_LENGTH + 1))


def test_leaves_are_bound_to_their_kind_chain_contract_and_request() -> None:
    account = _address(3)
    leaves = {
        seat_leaf(BINDING, account, True),
        seat_leaf(BINDING, account, False),
        payout_leaf(BINDING, account, 1),
        payout_leaf(BINDING, account, 0),
        seat_leaf(Binding(1, BINDING.contract, BINDING.request_id), account, True),
        seat_leaf(Binding(BINDING.chain_id, "0x" + "c1" * 20, BINDING.request_id), account, True),
        seat_leaf(Binding(BINDING.chain_id, BINDING.contract, 8), account, True),
    }
    assert len(leaves) == 7
    # a seat leaf with a trainer flag of 1 is not a payout leaf of 1 wei (domain tags)
    assert seat_leaf(BINDING, account, True) != payout_leaf(BINDING, account, 1)
    assert hash_pair(b"\x01" * 32, b"\x02" * 32) == hash_pair(b"\x02" * 32, b"\x01" * 32)


def test_a_seat_book_proves_seats_and_payouts() -> None:
    trainers, validators = [_address(i) for i in range(5)], [_address(i) for i in range(5, 7)]
    book = SeatBook.from_payouts(trainers, validators, [5, 4, 3, 2, 0], [7, 7])
    assert book.payout_total == 28 and book.n_seats == 7
    seat = book.seat_proof(BINDING, trainers[2].upper().replace("0X", "0x"))
    assert seat.is_trainer
    assert verify_proof(book.seat_root(BINDING), seat_leaf(BINDING, trainers[2], True), seat.proof)
    claim = book.claim(BINDING, validators[1])
    assert claim.amount_wei == 7
    leaf = payout_leaf(BINDING, validators[1], 7)
    assert verify_proof(book.payout_root(BINDING), leaf, claim.proof)
    assert book.kind_of(validators[0]) is False and book.kind_of(_address(99)) is None
    with pytest.raises(DeltaMLValueError, match="no seat"):
        book.seat_proof(BINDING, _address(99))
    with pytest.raises(DeltaMLValueError, match="not known yet"):
        SeatBook.of(trainers, validators).claim(BINDING, trainers[0])


def test_python_and_the_contract_build_the_same_leaves_and_check_the_same_proofs(
    market: Market,
) -> None:
    rid, trainers, validators = market.finished_request(3, 2, contributions=[5, 0, 2])
    contract = market.ledger._contract.functions
    binding = market.buyer.binding(rid)
    assert binding.chain_id == market.chain.chain_id
    for party in trainers + validators:
        is_trainer = party in trainers
        leaf = seat_leaf(binding, party.account, is_trainer)
        assert contract.seatLeaf(rid, party.account, is_trainer).call() == leaf
        assert contract.payoutLeaf(rid, party.account, 12345).call() == payout_leaf(
            binding, party.account, 12345
        )
        proof = market.seat_proof_of(rid, party.account)
        assert contract.isSeat(rid, party.account, is_trainer, list(proof.proof)).call()
        assert not contract.isSeat(rid, party.account, not is_trainer, list(proof.proof)).call()
    stranger = market.owners(6)[5].account
    assert market.buyer.seat_of(rid, stranger) is None


def test_a_ledger_that_remembers_nothing_proves_with_the_seats_it_is_given(
    market: Market,
) -> None:
    """An owner's node in its own process knows nothing the aggregator posted: it
    approves and claims with the seats and payouts it was told (the aggregator's
    result, checked by the contract), and is refused without them."""
    rid, trainers, validators = market.finished_request(2, 1, contributions=[3, 1])
    told = market.ledger._books[rid]
    assert told.payouts_wei is not None
    alone = [
        Web3Ledger(market.chain, market.ledger.contract_address, p._account, check_code=False)
        for p in [*trainers, *validators]
    ]
    with reverts("NotParty", rid, alone[0].account):
        alone[0].approve(rid)
    assert alone[0].seat_of(rid) is None
    assert alone[0].seat_of(rid, seats=told) == 0
    market.buyer.approve(rid)
    for ledger in alone:
        ledger.approve(rid, seats=SeatBook.of(told.trainers, told.validators))
    assert market.buyer.request(rid).status is RequestStatus.SETTLED
    assert alone[1].claimable(rid) == 0  # no payouts known: nothing it can prove
    with reverts("NothingToWithdraw", rid, alone[1].account):
        alone[1].withdraw(rid)
    # a made-up payout list proves nothing
    lie = told.with_payouts({a: v + 1 for a, v in told.payouts_wei.items()})
    assert alone[0].claimable(rid, seats=lie) == 0
    with reverts("InvalidProof", rid, alone[0].account):
        alone[0].withdraw(rid, seats=lie)
    for ledger in alone:
        owed = told.payout_of(ledger.account)
        assert ledger.claimable(rid, seats=told) == owed
        assert ledger.withdraw(rid, seats=told) == owed
