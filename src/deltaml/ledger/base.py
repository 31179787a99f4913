"""The ``Ledger`` interface the roles use, and the plain values it returns.

Nothing here imports web3: a role can type against :class:`Ledger` and read a
:class:`RequestState` without loading the chain stack. The implementation on
web3 is :class:`deltaml.ledger.web3_ledger.Web3Ledger`.

Units: amounts are integers in wei (``*_wei``), times are unix seconds
(``deadline``, ``finished_at``) or durations in seconds (``*_s``), metrics are the
scaled integers of :func:`deltaml.ledger.payouts.scale_metric` (lower is better),
hashes are 32 raw bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from deltaml.protocol import spec as request_spec
from deltaml.protocol.merkle import Binding, SeatBook

#: Challenge window a request gets unless its buyer chooses another: a day for
#: the buyer and every seat to check the result and dispute it. (A run where
#: every party approves settles at once, whatever the window.)
DEFAULT_CHALLENGE_WINDOW_S = request_spec.DEFAULT_CHALLENGE_WINDOW_S
#: The contract's bounds on the challenge window (``MIN_/MAX_CHALLENGE_WINDOW``).
MIN_CHALLENGE_WINDOW_S = request_spec.MIN_CHALLENGE_WINDOW_S
MAX_CHALLENGE_WINDOW_S = request_spec.MAX_CHALLENGE_WINDOW_S


class Role(IntEnum):
    """A role an address registers for itself (``Marketplace.Role``)."""

    BUYER = 0
    DATA_OWNER = 1
    AGGREGATOR = 2


class RequestStatus(IntEnum):
    """Life cycle of a request on chain (``Marketplace.Status``).

    ``CANCELLED``, ``FAILED`` and ``SETTLED`` are final; in ``SETTLED`` every
    payee may withdraw its credit, in the other two the buyer its deposit.
    ``DISPUTED``: a party contested the result within the challenge window;
    the arbiter upholds it (``SETTLED``) or voids it (``FAILED``), and a
    dispute left unresolved for a second window is void.
    """

    NONE = 0
    OPEN = 1
    IN_PROGRESS = 2
    FINISHED = 3
    SETTLED = 4
    CANCELLED = 5
    FAILED = 6
    DISPUTED = 7


@dataclass(frozen=True)
class RequestState:
    """What the contract stores about one request.

    Attributes
    ----------
    request_id:
        The id ``create_request`` returned (ids start at 1).
    buyer, aggregator:
        Checksum addresses.
    status:
        Where the request is in its life cycle.
    deadline:
        Unix seconds; the aggregator may start, post and finish up to and
        including it, and the buyer may reclaim after it.
    challenge_window_s:
        Seconds after ``finished_at`` before anyone may settle.
    finished_at:
        Unix seconds of the final result (0 before).
    deposit_wei, refund_wei:
        The escrow and what the buyer gets back once payable (0 before finish).
    initial_metric, final_metric:
        Scaled metrics posted with the final result (0 before).
    last_round:
        The last round with a posted metric (0: none yet).
    n_trainers, n_validators:
        Seat counts posted by ``start`` (0 before).
    spec_hash, evidence_hash:
        Hash of the request's parameters, and of the final result's evidence.
    arbiter:
        Checksum address that resolves disputes, named at creation.
    key_hash:
        Fingerprint of the buyer's Paillier public key
        (:func:`deltaml.crypto.paillier.key_fingerprint`); owners join only to it.
    approvals:
        How many of the buyer and the seats approved the final result.
    seat_root:
        Merkle root of the seats posted by ``start`` (zeros before); see
        :mod:`deltaml.protocol.merkle`.
    payout_root, payout_total_wei:
        Merkle root of the seats' payouts and their total, posted by ``finish``.
    claimed_wei:
        What the seats have claimed so far (never more than ``payout_total_wei``).
    """

    request_id: int
    buyer: str
    aggregator: str
    status: RequestStatus
    deadline: int
    challenge_window_s: int
    finished_at: int
    deposit_wei: int
    refund_wei: int
    initial_metric: int
    final_metric: int
    last_round: int
    n_trainers: int
    n_validators: int
    spec_hash: bytes
    evidence_hash: bytes
    arbiter: str
    key_hash: bytes
    approvals: int
    seat_root: bytes = b"\x00" * 32
    payout_root: bytes = b"\x00" * 32
    payout_total_wei: int = 0
    claimed_wei: int = 0

    @property
    def challenge_ends_at(self) -> int | None:
        """Unix seconds from which anyone may settle (and nobody may dispute any
        more), or ``None`` before finish."""
        if self.finished_at == 0:
            return None
        return self.finished_at + self.challenge_window_s

    @property
    def resolution_ends_at(self) -> int | None:
        """Unix seconds from which the arbiter may no longer resolve a dispute and
        anyone may settle it as void, or ``None`` before finish."""
        if self.finished_at == 0:
            return None
        return self.finished_at + 2 * self.challenge_window_s


@dataclass(frozen=True)
class Receipt:
    """A mined, successful transaction.

    Attributes
    ----------
    fee_wei:
        What the sender paid for gas: ``gas_used`` × effective gas price.
    """

    tx_hash: str
    block_number: int
    gas_used: int
    fee_wei: int


@dataclass(frozen=True)
class LedgerEvent:
    """One event the contract emitted about a request.

    Attributes
    ----------
    name:
        The Solidity event's name (``"RequestStarted"``, ``"MetricPosted"``, ...).
    args:
        Its arguments by name, as web3 decodes them (addresses checksummed,
        ``bytes32`` as bytes, arrays as lists).
    """

    name: str
    args: Mapping[str, object]
    block_number: int
    tx_hash: str


class Ledger(ABC):
    """The marketplace contract as seen by one account.

    The contract keeps no list of seats, only Merkle roots (gas per transaction
    does not grow with the number of owners): a seat proves its place when it
    approves, disputes or claims. The proofs come from a :class:`SeatBook` (the
    request's seats and payouts, from the transcript or the aggregator), passed
    as ``seats=`` or remembered by the ledger: ``start`` and ``finish`` remember
    what they posted, :meth:`remember` what a party learnt; ledgers made by
    ``for_account`` share what they remember.

    Every method that changes state sends one transaction signed by
    :attr:`account` and returns only after it is mined; a transaction the
    contract rejects raises :class:`deltaml.errors.LedgerError` carrying the
    contract's custom error name and its arguments (``NotAggregator(id,
    caller)``, ``WrongStatus(id, status)``, ...), whichever chain backend runs it.
    The receipt of the last transaction is kept in :attr:`last_receipt`.
    """

    last_receipt: Receipt | None = None

    # ------------------------------------------------------------- identity

    @property
    @abstractmethod
    def account(self) -> str:
        """Checksum address this ledger signs for."""

    @property
    @abstractmethod
    def contract_address(self) -> str:
        """Checksum address of the marketplace contract."""

    @abstractmethod
    def binding(self, request_id: int) -> Binding:
        """What the contract's Merkle leaves of ``request_id`` are bound to: this
        chain's id, the contract's address and the request id."""

    # --------------------------------------------------------- registration

    @abstractmethod
    def register(self, role: Role) -> Receipt:
        """Register :attr:`account` (and only it) for ``role``."""

    @abstractmethod
    def has_role(self, account: str, role: Role) -> bool:
        """Whether ``account`` registered itself for ``role``."""

    # ------------------------------------------------------------ the buyer

    @abstractmethod
    def create_request(
        self,
        aggregator: str,
        deposit_wei: int,
        deadline: int,
        challenge_window_s: int,
        spec_hash: bytes,
        *,
        arbiter: str,
        key_hash: bytes,
    ) -> int:
        """Escrow ``deposit_wei`` for a new request and return its id.

        Parameters
        ----------
        aggregator:
            A registered aggregator other than :attr:`account`.
        deposit_wei:
            The payment, ``> 0``.
        deadline:
            Unix seconds in the future, at most a year away.
        challenge_window_s:
            Seconds after the final result during which the buyer or a seat may
            dispute it, and before anyone may settle (60 s to 30 days;
            :data:`DEFAULT_CHALLENGE_WINDOW_S` is a day).
        spec_hash:
            32-byte hash of the request's parameters.
        arbiter:
            The address that resolves disputes: neither :attr:`account` nor
            ``aggregator``. Owners see it before they join.
        key_hash:
            32-byte fingerprint of the buyer's Paillier public key
            (:func:`deltaml.crypto.paillier.key_fingerprint`).
        """

    @abstractmethod
    def cancel(self, request_id: int) -> Receipt:
        """Cancel a request that has not started; the deposit comes back at once."""

    @abstractmethod
    def reclaim(self, request_id: int) -> Receipt:
        """Take back the deposit of an aborted request, or of one past its deadline."""

    # ---------------------------------------------------------- data owners

    @abstractmethod
    def join(self, request_id: int, spec_hash: bytes, key_hash: bytes) -> Receipt:
        """Consent, as :attr:`account` (a registered data owner), to take part in
        ``request_id``: reverts (``SpecMismatch`` / ``KeyMismatch``) unless both
        hashes are the request's own. Only joined owners can be seated."""

    # ------------------------------------------------------- the aggregator

    @abstractmethod
    def start(self, request_id: int, trainers: Sequence[str], validators: Sequence[str]) -> Receipt:
        """Fix trainers and validators (data owners that joined) and start training:
        posts the Merkle root of the seats and their counts."""

    @abstractmethod
    def post_metric(
        self, request_id: int, round_: int, metric: int, evidence_hash: bytes
    ) -> Receipt:
        """Record the scaled validation metric of ``round_`` (rounds increase)."""

    @abstractmethod
    def finish(
        self,
        request_id: int,
        initial_metric: int,
        final_metric: int,
        contributions: Sequence[int],
        evidence_hash: bytes,
        *,
        seats: SeatBook | None = None,
    ) -> Receipt:
        """Post the final result: the Merkle root and total of the seats' payouts by
        the rule (:func:`deltaml.protocol.payouts.compute_payouts` on the escrow,
        the metrics and ``contributions``, one weight per trainer in seat order).
        ``seats``: the request's seats, if :meth:`start` was not called here."""

    def post_result(
        self,
        request_id: int,
        metrics: Mapping[int, int],
        initial_metric: int,
        final_metric: int,
        contributions: Sequence[int],
        evidence_hash: bytes,
        *,
        seats: SeatBook | None = None,
    ) -> list[Receipt]:
        """The end of a training, as its aggregator: the evaluated rounds' scaled
        metrics (``metrics``, by round) the chain does not hold yet, in round order,
        then :meth:`finish`. After a restart, what was posted is not posted again."""
        posted = self.request(request_id).last_round
        receipts = [
            self.post_metric(request_id, k, value, evidence_hash)
            for k, value in sorted(metrics.items())
            if k > posted
        ]
        receipts.append(
            self.finish(
                request_id,
                initial_metric,
                final_metric,
                contributions,
                evidence_hash,
                seats=seats,
            )
        )
        return receipts

    @abstractmethod
    def abort(self, request_id: int) -> Receipt:
        """Give up on an unfinished request; its buyer may reclaim at once."""

    # -------------------------------------------- the result: approve or dispute

    @abstractmethod
    def approve(self, request_id: int, *, seats: SeatBook | None = None) -> Receipt:
        """Accept a finished request's result, as its buyer or a seat (once each; a
        seat sends the proof of its seat from ``seats`` or what is remembered).

        When the buyer and every seat have approved, the split is payable at once.
        """

    @abstractmethod
    def dispute(
        self, request_id: int, reason_hash: bytes, *, seats: SeatBook | None = None
    ) -> Receipt:
        """Contest a finished request's result within its challenge window, as its
        buyer or a seat that has not approved it: the arbiter then decides."""

    @abstractmethod
    def resolve(self, request_id: int, upheld: bool) -> Receipt:
        """As the request's arbiter, decide a dispute: ``upheld`` makes the posted
        split payable, otherwise the result is void and the buyer gets its whole
        deposit back. Possible until ``finished_at + 2 * challenge_window_s``."""

    # --------------------------------------------------------------- anyone

    @abstractmethod
    def settle(self, request_id: int) -> Receipt:
        """Make a finished request's split payable after its challenge window, or
        void a dispute the arbiter left unresolved for a second window."""

    @abstractmethod
    def withdraw(self, request_id: int, *, seats: SeatBook | None = None) -> int:
        """Send :attr:`account` its credit for ``request_id``; returns the wei paid.

        The buyer and the aggregator withdraw what the contract fixed; a seat
        claims its payout with the proof from ``seats`` (with payouts) or what
        is remembered."""

    @abstractmethod
    def remember(self, request_id: int, seats: SeatBook) -> None:
        """Keep ``seats`` (checked against the roots on chain when used) for the
        proofs of later calls about ``request_id``."""

    # ---------------------------------------------------------------- views

    @abstractmethod
    def request(self, request_id: int) -> RequestState:
        """The stored state of ``request_id``."""

    @abstractmethod
    def claimable(
        self, request_id: int, account: str | None = None, *, seats: SeatBook | None = None
    ) -> int:
        """Wei ``withdraw`` would pay ``account`` (default: :attr:`account`) now (for a
        seat, 0 unless its payout is known from ``seats`` or remembered)."""

    @abstractmethod
    def has_withdrawn(self, request_id: int, account: str | None = None) -> bool:
        """Whether ``account`` (default: :attr:`account`) has withdrawn its credit."""

    @abstractmethod
    def seat_of(
        self, request_id: int, account: str | None = None, *, seats: SeatBook | None = None
    ) -> int | None:
        """Seat of ``account`` in ``seats`` (or what is remembered), if the contract's
        seat root confirms it, else ``None``.

        Seats ``0 .. n_trainers - 1`` are the trainers in the order given to
        :meth:`start`; the following ones are the validators.
        """

    @abstractmethod
    def has_joined(self, request_id: int, account: str | None = None) -> bool:
        """Whether ``account`` (default: :attr:`account`) joined ``request_id``."""

    @abstractmethod
    def has_approved(self, request_id: int, account: str | None = None) -> bool:
        """Whether ``account`` (default: :attr:`account`) approved the result."""

    @abstractmethod
    def history(self, request_id: int) -> list[LedgerEvent]:
        """Every event about ``request_id``, oldest first: the public record of
        its participants, metrics, evidence hashes, result and payments."""

    @abstractmethod
    def balance_wei(self, account: str | None = None) -> int:
        """Ether balance of ``account`` (default: :attr:`account`)."""

    @abstractmethod
    def now(self) -> int:
        """Timestamp of the chain's latest block, unix seconds."""
