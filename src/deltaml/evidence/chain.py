"""A transcript against the contract: what binds the evidence to the money.

A transcript checked only against itself proves that *some* run was honest: its
header names the Paillier key, the buyer, the seats and the spec, and a transcript
re-signed from an unrelated run is consistent with its own header. What the money
depends on is on chain — the request's key fingerprint, buyer, aggregator, seats,
spec hash, deposit, the evidence hash and the numbers ``finish`` posted. So a
transcript is verified for a request only when, besides every check of
:func:`deltaml.evidence.verify.verify_transcript`, these hold (each a named check):

==================  ===============================================================
check               the transcript ... the request on chain
==================  ===============================================================
chain status        ...  has a final result (Finished, Settled, Disputed or voided)
evidence hash       its last record's hash is the evidence hash ``finish`` posted
key fingerprint     its Paillier key has the request's ``keyHash``
buyer, aggregator   its buyer and aggregator are the request's
seats               its trainers and validators are the seats: their counts, and the
                    seat root recomputed from them (with this chain id, contract
                    and request) is the one ``start`` posted; each seat joined
spec hash           its spec (and data requirements) hash to the request's spec hash
deposit             the deposit it pays out is the escrow
deadline            a deadline stop names the request's deadline
chain binding       its final record names this chain id, contract and request
metrics             the initial and final metric, and each round's, posted are the
                    proven ones
contributions       the payout root and total ``finish`` posted are the rule's split
                    (:func:`~deltaml.protocol.payouts.compute_payouts`) of the
                    escrow by the proven metrics and the verified weights
==================  ===============================================================

The metrics and contributions of the final record are checked against the proven
decryptions by the transcript's own checks (``payouts``, ``weights``), so an
aggregator cannot post numbers the evidence does not give. The contract holds the
seats and payouts only as Merkle roots (:mod:`deltaml.protocol.merkle`): they are
recomputed here from the transcript and compared.

Chain reads go through a read-only object with the :class:`ChainReader` methods (a
:class:`~deltaml.ledger.Ledger` is one), taken once into a :class:`OnChainRequest`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from deltaml.evidence.report import Failure, Settlement
from deltaml.evidence.roots import payout_differences, seat_differences
from deltaml.ledger.base import RequestStatus

if TYPE_CHECKING:
    from deltaml.ledger import Web3Ledger


class RequestView(Protocol):
    """The fields of :class:`~deltaml.ledger.RequestState` the check reads."""

    @property
    def buyer(self) -> str: ...
    @property
    def aggregator(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def deposit_wei(self) -> int: ...
    @property
    def initial_metric(self) -> int: ...
    @property
    def final_metric(self) -> int: ...
    @property
    def spec_hash(self) -> bytes: ...
    @property
    def evidence_hash(self) -> bytes: ...
    @property
    def key_hash(self) -> bytes: ...
    @property
    def deadline(self) -> int: ...
    @property
    def n_trainers(self) -> int: ...
    @property
    def n_validators(self) -> int: ...
    @property
    def seat_root(self) -> bytes: ...
    @property
    def payout_root(self) -> bytes: ...
    @property
    def payout_total_wei(self) -> int: ...


class EventView(Protocol):
    """An event about a request (:class:`~deltaml.ledger.LedgerEvent`)."""

    @property
    def name(self) -> str: ...
    @property
    def args(self) -> Mapping[str, object]: ...


class ChainReader(Protocol):
    """What verification reads from the contract (a :class:`~deltaml.ledger.Ledger`)."""

    @property
    def contract_address(self) -> str: ...
    def request(self, request_id: int) -> RequestView: ...
    def history(self, request_id: int) -> Sequence[EventView]: ...


#: The named checks of :func:`chain_failures`, in the order they run.
CHAIN_CHECKS = (
    "chain status",
    "evidence hash",
    "key fingerprint",
    "buyer",
    "aggregator",
    "seats",
    "spec hash",
    "deposit",
    "chain binding",
    "deadline",
    "metrics",
    "contributions",
)

#: Statuses with a final result posted (Failed: after a voided dispute).
_POSTED = {
    RequestStatus.FINISHED,
    RequestStatus.SETTLED,
    RequestStatus.FAILED,
    RequestStatus.DISPUTED,
}


@dataclass(frozen=True)
class OnChainRequest:
    """One request as the contract stores it, read once (hashes as lower-case hex)."""

    chain_id: int | None
    contract: str
    request_id: int
    status: int
    buyer: str
    aggregator: str
    key_hash: str
    spec_hash: str
    evidence_hash: str
    deposit_wei: int
    deadline: int
    initial_metric: int
    final_metric: int
    n_trainers: int
    n_validators: int
    #: Merkle roots (lower-case hex) posted by ``start`` and ``finish``.
    seat_root: str
    payout_root: str
    payout_total_wei: int
    #: ``(round, scaled metric)`` of each ``postMetric``, in the order posted.
    posted_metrics: tuple[tuple[int, int], ...] = ()
    #: The accounts that joined the request (lower-case), from its ``Joined`` events.
    joined: frozenset[str] = frozenset()

    @property
    def status_name(self) -> str:
        try:  # as the contract spells it: IN_PROGRESS -> InProgress
            return RequestStatus(self.status).name.title().replace("_", "")
        except ValueError:
            return str(self.status)

    def describe(self) -> dict[str, object]:
        return {
            "chain_id": self.chain_id,
            "contract": self.contract,
            "request_id": self.request_id,
            "status": self.status_name,
        }


def chain_id_of(reader: object) -> int | None:
    """The chain id of a ledger (``reader.chain_id`` or ``reader.chain.chain_id``), if known."""
    value = getattr(reader, "chain_id", None)
    if value is None:
        value = getattr(getattr(reader, "chain", None), "chain_id", None)
    return int(value) if isinstance(value, int) else None


def read_request(
    reader: ChainReader, request_id: int, chain_id: int | None = None
) -> OnChainRequest:
    """Read request ``request_id`` from the contract (``chain_id``: see :func:`chain_id_of`)."""
    state = reader.request(request_id)
    events = list(reader.history(request_id))
    return OnChainRequest(
        chain_id=chain_id if chain_id is not None else chain_id_of(reader),
        contract=str(reader.contract_address),
        request_id=request_id,
        status=int(state.status),
        buyer=str(state.buyer),
        aggregator=str(state.aggregator),
        key_hash=bytes(state.key_hash).hex(),
        spec_hash=bytes(state.spec_hash).hex(),
        evidence_hash=bytes(state.evidence_hash).hex(),
        deposit_wei=int(state.deposit_wei),
        deadline=int(state.deadline),
        initial_metric=int(state.initial_metric),
        final_metric=int(state.final_metric),
        n_trainers=int(state.n_trainers),
        n_validators=int(state.n_validators),
        seat_root=bytes(state.seat_root).hex(),
        payout_root=bytes(state.payout_root).hex(),
        payout_total_wei=int(state.payout_total_wei),
        posted_metrics=tuple(
            (_int(e.args.get("round")), _int(e.args.get("metric")))
            for e in events
            if e.name == "MetricPosted"
        ),
        joined=frozenset(
            str(e.args.get("owner", "")).lower() for e in events if e.name == "Joined"
        ),
    )


def _int(value: object) -> int:
    return int(value) if isinstance(value, int) else -1


def chain_failures(
    head: str, settlement: Settlement | None, chain: OnChainRequest
) -> list[Failure]:
    """Each way the transcript (its ``head`` and :class:`Settlement`) differs from ``chain``."""
    found: list[tuple[str, str]] = []
    rid = chain.request_id
    if chain.status not in _POSTED:
        found.append(
            ("chain status", f"request {rid} has no final result on chain ({chain.status_name})")
        )
    if head.lower() != chain.evidence_hash:
        found.append(
            (
                "evidence hash",
                f"the transcript's head {head[:16]}… is not the evidence hash on chain"
                f" {chain.evidence_hash[:16]}…",
            )
        )
    if settlement is None:
        found.append(
            ("chain binding", "the transcript has no valid final record to check against the chain")
        )
    else:
        found += _party_differences(settlement, chain)
        found += _binding_differences(settlement, chain)
        if chain.status in _POSTED:
            found += _posted_differences(settlement, chain)
    return [Failure(None, None, check, detail) for check, detail in found]


def _party_differences(s: Settlement, chain: OnChainRequest) -> list[tuple[str, str]]:
    """Key, buyer, aggregator, seats, spec and deposit: the transcript's against the request's."""
    found = []
    if s.key_fingerprint != chain.key_hash:
        found.append(
            (
                "key fingerprint",
                f"the transcript's Paillier key has fingerprint {s.key_fingerprint[:16]}…,"
                f" the request's key hash is {chain.key_hash[:16]}…",
            )
        )
    if not _same(s.buyer, chain.buyer):
        found.append(
            (
                "buyer",
                f"the transcript's buyer is {s.buyer or 'unnamed'}, the request's {chain.buyer}",
            )
        )
    if not _same(s.aggregator, chain.aggregator):
        found.append(
            (
                "aggregator",
                f"the transcript's aggregator is {s.aggregator or 'unnamed'},"
                f" the request's {chain.aggregator}",
            )
        )
    seats = seat_differences(s, chain)
    if seats:
        found.append(
            (
                "seats",
                f"the transcript's {len(s.trainers)} trainer(s) and {len(s.validators)}"
                f" validator(s) are not the request's seats: {seats}",
            )
        )
    if s.spec_hash != chain.spec_hash:
        found.append(
            ("spec hash", "the transcript's spec does not hash to the request's spec hash")
        )
    if s.deposit_wei != chain.deposit_wei:
        found.append(
            (
                "deposit",
                f"the transcript pays out {s.deposit_wei} wei, the escrow is {chain.deposit_wei}",
            )
        )
    return found


def _binding_differences(s: Settlement, chain: OnChainRequest) -> list[tuple[str, str]]:
    """The final record's chain binding and deadline against the request."""
    found = []
    binding = []
    if s.chain_id is None:
        binding.append("names no chain")
    else:
        if chain.chain_id is not None and s.chain_id != chain.chain_id:
            binding.append(f"names chain {s.chain_id}, not {chain.chain_id}")
        if not _same(s.contract or "", chain.contract):
            binding.append(f"names contract {s.contract}, not {chain.contract}")
        if s.request_id != chain.request_id:
            binding.append(f"names request {s.request_id}, not {chain.request_id}")
    if binding:
        found.append(("chain binding", "the final record " + "; ".join(binding)))
    if s.deadline is not None and s.deadline != chain.deadline:
        found.append(
            (
                "deadline",
                f"training stopped early for a deadline of {s.deadline}, the request's is"
                f" {chain.deadline}",
            )
        )
    return found


def _posted_differences(s: Settlement, chain: OnChainRequest) -> list[tuple[str, str]]:
    """The metrics and contributions posted on chain against the proven ones."""
    found = []
    if (s.initial_metric, s.final_metric) != (chain.initial_metric, chain.final_metric):
        found.append(
            (
                "metrics",
                f"posted initial and final metric {chain.initial_metric}, {chain.final_metric};"
                f" the evidence gives {s.initial_metric}, {s.final_metric}",
            )
        )
    wrong = [k for k, metric in chain.posted_metrics if s.published.get(k) != metric]
    if wrong:
        found.append(
            (
                "metrics",
                f"the metric posted for round(s) {', '.join(map(str, wrong[:8]))} is not the"
                " proven one",
            )
        )
    payouts = payout_differences(s, chain)
    if payouts:
        found.append(
            (
                "contributions",
                f"the payouts posted are not the rule's split of the verified"
                f" contributions: {payouts}",
            )
        )
    return found


def _same(a: str, b: str) -> bool:
    return bool(a) and a.lower() == b.lower()


def open_reader(chain_url: str, contract: str) -> Web3Ledger:
    """A read-only view of the Marketplace at ``contract`` on ``chain_url``, with no key.

    It checks that the address holds the shipped Marketplace's code. Views are called
    from no account (:meth:`Web3Ledger._view`), so it needs neither a key nor funds.
    """
    from eth_account import Account

    from deltaml.ledger import Web3Ledger, connect

    # The account is never used to sign: every method this check calls is a view.
    return Web3Ledger(connect(chain_url), contract, Account.create())
