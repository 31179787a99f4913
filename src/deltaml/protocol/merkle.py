"""Merkle commitments of a request's seats and payouts: what the contract holds.

The contract stores no list of participants: ``start`` posts the root of the
seats and ``finish`` the root of the seats' payouts with their total, so every
transaction costs the same gas whatever the number of owners. Whoever knows a
list (the aggregator posting it, an owner or the buyer reading the transcript,
the arbiter) rebuilds the tree here and compares roots; a seat proves its leaf
with the siblings on its path when it approves, disputes or claims. Pure Python
(Keccak-256 from ``eth_hash``), no web3: the same code posts, checks and claims.

Leaves (identical to ``Marketplace.seatLeaf`` / ``payoutLeaf``)::

    seat leaf   = keccak256(abi.encode(SEAT_LEAF, chain_id, contract, request_id,
                                       account, is_trainer))
    payout leaf = keccak256(abi.encode(PAYOUT_LEAF, chain_id, contract, request_id,
                                       account, amount))

with ``SEAT_LEAF = keccak256("deltaml.marketplace.seat.v1")`` and ``PAYOUT_LEAF =
keccak256("deltaml.marketplace.payout.v1")``: the two kinds never collide, and a
leaf (hence a root, hence a proof) of one request, contract or chain is no good
in any other. The tree hashes sorted pairs, ``node = keccak256(min(a, b) ‖ max(a,
b))``, over the leaves sorted by value, an odd node moving up unchanged; a proof
is the list of siblings from the leaf up. The root depends on the *set* of
(account, kind) or (account, amount) only, not on the order the lists came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak

from deltaml.errors import DeltaMLValueError

SEAT_LEAF_TAG = keccak(b"deltaml.marketplace.seat.v1")
PAYOUT_LEAF_TAG = keccak(b"deltaml.marketplace.payout.v1")
#: The contract refuses longer proofs (``ProofTooLong``): 2^32 leaves.
MAX_PROOF_LENGTH = 32

Proof = tuple[bytes, ...]


@dataclass(frozen=True)
class Binding:
    """Where a tree's leaves are valid: one request of one contract on one chain."""

    chain_id: int
    contract: str
    request_id: int

    def words(self) -> bytes:
        return _word(self.chain_id) + _address_word(self.contract) + _word(self.request_id)


def _word(value: int) -> bytes:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**256:
        raise DeltaMLValueError(f"a uint256 is an integer in [0, 2**256), got {value!r}")
    return value.to_bytes(32, "big")


def _address_bytes(account: str) -> bytes:
    text = account[2:] if isinstance(account, str) and account[:2].lower() == "0x" else ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise DeltaMLValueError(f"not an Ethereum address: {account!r}")
    return raw


def _address_word(account: str) -> bytes:
    return b"\x00" * 12 + _address_bytes(account)


def seat_leaf(binding: Binding, account: str, is_trainer: bool) -> bytes:
    """The leaf of ``account``'s seat (``Marketplace.seatLeaf``)."""
    flag = _word(1 if is_trainer else 0)
    return keccak(SEAT_LEAF_TAG + binding.words() + _address_word(account) + flag)


def payout_leaf(binding: Binding, account: str, amount_wei: int) -> bytes:
    """The leaf of ``account``'s payout (``Marketplace.payoutLeaf``)."""
    return keccak(PAYOUT_LEAF_TAG + binding.words() + _address_word(account) + _word(amount_wei))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


class MerkleTree:
    """A sorted-pair Keccak tree over a set of 32-byte leaves (see the module)."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        level = sorted(bytes(leaf) for leaf in leaves)
        if not level:
            raise DeltaMLValueError("a Merkle tree needs at least one leaf")
        if len(set(level)) != len(level):
            raise DeltaMLValueError("a Merkle tree's leaves must be distinct")
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            up = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])
            level = up
            self._levels.append(level)
        self._index = {leaf: i for i, leaf in enumerate(self._levels[0])}

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def __len__(self) -> int:
        return len(self._levels[0])

    def __contains__(self, leaf: object) -> bool:
        return leaf in self._index

    def proof(self, leaf: bytes) -> Proof:
        """The siblings from ``leaf`` up to the root."""
        index = self._index.get(bytes(leaf))
        if index is None:
            raise DeltaMLValueError("that leaf is not in the tree")
        siblings = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                siblings.append(level[sibling])
            index //= 2
        return tuple(siblings)


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` leads from ``leaf`` to ``root`` (``Marketplace._verify``)."""
    if len(proof) > MAX_PROOF_LENGTH or root == b"\x00" * 32:
        return False
    node = bytes(leaf)
    for sibling in proof:
        node = hash_pair(node, bytes(sibling))
    return node == bytes(root)


@dataclass(frozen=True)
class SeatProof:
    """What a seat sends with ``approve`` / ``dispute``."""

    is_trainer: bool
    proof: Proof


@dataclass(frozen=True)
class PayoutClaim:
    """What a seat sends with ``claim``."""

    amount_wei: int
    proof: Proof


@dataclass(frozen=True)
class SeatBook:
    """A request's seats and (once known) their payouts: everything the roots commit.

    Attributes
    ----------
    trainers, validators:
        The seats, as ``start`` was given them (order does not change a root).
    payouts_wei:
        Each seat's payout, by address (``None`` before the final result). The
        aggregator's fee and the buyer's refund are not in it: the contract
        fixes those itself.
    """

    trainers: tuple[str, ...]
    validators: tuple[str, ...]
    payouts_wei: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        seats = [_address_bytes(a) for a in (*self.trainers, *self.validators)]
        if len(set(seats)) != len(seats):
            raise DeltaMLValueError("a request's seats must be distinct accounts")

    @classmethod
    def of(
        cls,
        trainers: Iterable[str],
        validators: Iterable[str],
        payouts_wei: Mapping[str, int] | None = None,
    ) -> SeatBook:
        return cls(tuple(trainers), tuple(validators), payouts_wei)

    @classmethod
    def from_payouts(
        cls,
        trainers: Sequence[str],
        validators: Sequence[str],
        trainer_wei: Sequence[int],
        validator_wei: Sequence[int],
    ) -> SeatBook:
        """Seats with the rule's split (:class:`deltaml.protocol.payouts.Payouts`)."""
        if len(trainers) != len(trainer_wei) or len(validators) != len(validator_wei):
            raise DeltaMLValueError("one payout per seat is needed")
        payouts = {
            **dict(zip(trainers, trainer_wei, strict=True)),
            **dict(zip(validators, validator_wei, strict=True)),
        }
        return cls(tuple(trainers), tuple(validators), payouts)

    def with_payouts(self, payouts_wei: Mapping[str, int]) -> SeatBook:
        return SeatBook(self.trainers, self.validators, dict(payouts_wei))

    @property
    def n_seats(self) -> int:
        return len(self.trainers) + len(self.validators)

    def _key(self, account: str) -> bytes:
        return _address_bytes(account)

    def kind_of(self, account: str) -> bool | None:
        """``True`` for a trainer, ``False`` for a validator, ``None`` for no seat."""
        key = self._key(account)
        if any(self._key(a) == key for a in self.trainers):
            return True
        if any(self._key(a) == key for a in self.validators):
            return False
        return None

    def seat_tree(self, binding: Binding) -> MerkleTree:
        return MerkleTree(
            [seat_leaf(binding, a, True) for a in self.trainers]
            + [seat_leaf(binding, a, False) for a in self.validators]
        )

    def seat_root(self, binding: Binding) -> bytes:
        return self.seat_tree(binding).root

    def seat_proof(self, binding: Binding, account: str) -> SeatProof:
        kind = self.kind_of(account)
        if kind is None:
            raise DeltaMLValueError(f"{account} holds no seat in request {binding.request_id}")
        tree = self.seat_tree(binding)
        return SeatProof(kind, tree.proof(seat_leaf(binding, account, kind)))

    def _payouts(self) -> dict[bytes, tuple[str, int]]:
        if self.payouts_wei is None:
            raise DeltaMLValueError("the payouts of this request are not known yet")
        out = {self._key(a): (a, int(v)) for a, v in self.payouts_wei.items()}
        if len(out) != len(self.payouts_wei):
            raise DeltaMLValueError("one payout per account")
        return out

    @property
    def payout_total(self) -> int:
        return sum(amount for _, amount in self._payouts().values())

    def payout_tree(self, binding: Binding) -> MerkleTree:
        return MerkleTree(payout_leaf(binding, a, v) for a, v in self._payouts().values())

    def payout_root(self, binding: Binding) -> bytes:
        return self.payout_tree(binding).root

    def payout_of(self, account: str) -> int:
        """``account``'s payout (0 when it has none)."""
        entry = self._payouts().get(self._key(account))
        return 0 if entry is None else entry[1]

    def claim(self, binding: Binding, account: str) -> PayoutClaim:
        entry = self._payouts().get(self._key(account))
        if entry is None:
            raise DeltaMLValueError(f"{account} has no payout in request {binding.request_id}")
        leaf = payout_leaf(binding, entry[0], entry[1])
        return PayoutClaim(entry[1], self.payout_tree(binding).proof(leaf))
