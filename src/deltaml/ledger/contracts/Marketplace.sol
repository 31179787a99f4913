// SPDX-License-Identifier: MIT
// The exact compiler is pinned by package.json (solc-js); 0.8.28 is the oldest
// release with `transient` state variables, used by the reentrancy lock.
pragma solidity ^0.8.28;

/// @title DeltaML marketplace: escrow and settlement of training requests.
/// @notice A buyer escrows a payment per training request, naming the
/// aggregator, an arbiter, the hash of the request's parameters and the
/// fingerprint of its Paillier key. Registered data owners consent to exactly
/// that request by joining it with their own accounts. The aggregator seats
/// trainers and validators by posting the Merkle root of their seats (with
/// their counts), posts scaled metrics with hashes of their evidence, and the
/// final result as the Merkle root of the seats' payouts with their total.
/// Every transaction costs the same gas whatever the number of seats (up to
/// MAX_PARTICIPANTS): a seat proves its place with a Merkle proof when it
/// approves, disputes or claims.
///
/// A challenge window opens at the final result: the split becomes payable at
/// once when the buyer and every seat approve, or when anyone settles after
/// the window. Within the window the buyer or any seat may dispute; the
/// arbiter then upholds the result (payable) or voids it (the buyer gets its
/// whole deposit back), and a dispute nobody resolves within a second window
/// is void. Each seat claims its payout with its proof, once; the aggregator
/// and the buyer withdraw their credits, once (pull payments). The buyer gets
/// everything back if it cancels before the start, if the aggregator aborts,
/// if the deadline passes without a final result, or if the result is voided.
///
/// Payment rule (``deltaml.protocol.payouts.compute_payouts``), for a deposit D,
/// metrics m0 -> m1 (lower is better) and contributions c_i:
///   pool        = D * 70 * max(0, m0 - m1) / (100 * m0)   (0 when m0 == 0)
///   trainer i   = pool * c_i / sum(c)                    (0 when sum(c) == 0)
///   validator   = D * 20 / 100 / V                       (each of V)
///   aggregator  = D * 10 / 100
///   refund      = D - everything above                   (to the buyer)
/// The contract computes the aggregator's fee itself and bounds the posted
/// seats' total by pool + V * validator share; the leaves of the payout root
/// are checked off chain against the transcript by the buyer, every seat and
/// the arbiter (``deltaml verify``). Whatever the root holds, claims stop at the
/// posted total, and refund = D - fee - total: payouts + refund = D exactly.
///
/// Leaves are domain-separated and bound to the chain, this contract and the
/// request: seat leaf = keccak256(abi.encode(SEAT_LEAF, chainid, this, id,
/// account, isTrainer)), payout leaf = keccak256(abi.encode(PAYOUT_LEAF,
/// chainid, this, id, account, amount)); the tree hashes sorted pairs
/// (keccak256(min ‖ max)), so a proof is just the siblings.
///
/// Evm version: the artifact is compiled for "cancun" (see
/// scripts/compile_contract.js): the oldest fork with transient storage
/// (EIP-1153), which the reentrancy lock uses; it runs unchanged on py-evm's
/// Prague VM (eth-tester's default) and on anvil's newer default fork, and on
/// any public chain that has had Cancun.
contract Marketplace {
    // ------------------------------------------------------------------ types

    /// A role an address registers for itself; one address may hold several.
    enum Role {
        Buyer,
        DataOwner,
        Aggregator
    }

    /// Life cycle of a request. Cancelled, Failed and Settled are final.
    enum Status {
        None, // no such request
        Open, // created, escrow held, waiting for the aggregator to start it
        InProgress, // started: the seats' root fixed
        Finished, // final result posted; payouts' root fixed, challenge window running
        Settled, // split payable: each payee withdraws or claims its credit
        Cancelled, // buyer cancelled before the start; deposit refunded
        Failed, // aborted, expired or voided: deposit refundable
        Disputed // a party disputed the result within the window; the arbiter decides
    }

    struct Request {
        // slot 0
        address buyer;
        uint64 deadline; // unix seconds; start, metrics and finish up to and including it
        Status status;
        uint8 paid; // AGGREGATOR_PAID | BUYER_PAID: fixed credits withdrawn
        bool buyerApproved;
        // slot 1
        address aggregator;
        uint64 challengeWindow; // seconds after finish before anyone may settle
        uint32 lastRound; // last round with a posted metric (0: none)
        // slot 2
        uint128 deposit; // wei
        uint128 refund; // wei owed to the buyer once the split is payable
        // slot 3
        uint64 finishedAt; // unix seconds of the final result
        uint96 initialMetric;
        uint96 finalMetric;
        // slot 4
        uint128 payoutTotal; // wei the seats may claim in all (the payout root's total)
        uint128 claimed; // wei the seats have claimed so far (never above payoutTotal)
        // slot 5
        address arbiter; // resolves disputes; named at creation, never a party
        uint16 trainerCount;
        uint16 validatorCount;
        uint16 approvals; // distinct approvals of the final result (buyer + seats)
        bytes32 specHash; // hash of the request's parameters (model, columns, ...)
        bytes32 evidenceHash; // hash of the evidence behind the final result
        bytes32 keyHash; // fingerprint of the buyer's Paillier public key
        bytes32 seatRoot; // Merkle root of the seats (posted by `start`)
        bytes32 payoutRoot; // Merkle root of the seats' payouts (posted by `finish`)
    }

    /// What `getRequest` returns: the stored request with unpacked widths.
    struct RequestView {
        address buyer;
        address aggregator;
        Status status;
        uint64 deadline;
        uint64 challengeWindow;
        uint64 finishedAt;
        uint256 deposit;
        uint256 refund;
        uint256 initialMetric;
        uint256 finalMetric;
        uint32 lastRound;
        uint16 trainerCount;
        uint16 validatorCount;
        bytes32 specHash;
        bytes32 evidenceHash;
        address arbiter;
        bytes32 keyHash;
        uint16 approvals;
        bytes32 seatRoot;
        bytes32 payoutRoot;
        uint256 payoutTotal;
        uint256 claimed;
    }

    // -------------------------------------------------------------- constants

    uint256 public constant TRAINERS_PERCENT = 70;
    uint256 public constant VALIDATORS_PERCENT = 20;
    uint256 public constant AGGREGATOR_PERCENT = 10;
    /// Metrics are posted as round(value * METRIC_SCALE): six decimal places.
    uint256 public constant METRIC_SCALE = 1e6;
    /// Most trainers + validators per request (seats are a Merkle root: no loop
    /// runs over them; the bound keeps the counts and the rule's view small).
    uint256 public constant MAX_PARTICIPANTS = 1000;
    uint256 public constant MAX_DEPOSIT = type(uint128).max;
    uint256 public constant MAX_METRIC = type(uint96).max;
    uint256 public constant MAX_CONTRIBUTION = type(uint96).max;
    /// Longest time from creation to deadline, so escrow cannot be locked forever.
    uint256 public constant MAX_DURATION = 365 days;
    /// Shortest challenge window: long enough for a party to look and dispute.
    uint256 public constant MIN_CHALLENGE_WINDOW = 60;
    uint256 public constant MAX_CHALLENGE_WINDOW = 30 days;
    /// Longest Merkle proof accepted (2^32 leaves): bounds the proof loop.
    uint256 public constant MAX_PROOF_LENGTH = 32;
    /// Domain tags of the two kinds of leaves: a seat leaf is never a payout leaf.
    bytes32 public constant SEAT_LEAF = keccak256("deltaml.marketplace.seat.v1");
    bytes32 public constant PAYOUT_LEAF = keccak256("deltaml.marketplace.payout.v1");

    uint8 private constant AGGREGATOR_PAID = 1;
    uint8 private constant BUYER_PAID = 2;
    // An account's standing in a request (bits of one storage slot).
    uint256 private constant JOINED = 1;
    uint256 private constant APPROVED = 2;
    uint256 private constant CLAIMED = 4;

    // ------------------------------------------------------------------ state

    /// Bit (1 << role) set when `account` registered itself for `role`.
    mapping(address account => uint8 roleMask) private _roles;
    /// Number of requests created; ids run from 1 to requestCount.
    uint256 public requestCount;
    mapping(uint256 id => Request) private _requests;
    /// Each account's standing in a request: JOINED after `join`, then APPROVED
    /// and CLAIMED as a seat acts (one slot, written non-zero to non-zero).
    mapping(uint256 id => mapping(address account => uint256 standing)) private _members;

    bool private transient _locked;

    // ----------------------------------------------------------------- events

    event Registered(address indexed account, Role role);
    event RequestCreated(
        uint256 indexed id,
        address indexed buyer,
        address indexed aggregator,
        uint256 deposit,
        uint64 deadline,
        uint64 challengeWindow,
        bytes32 specHash,
        address arbiter,
        bytes32 keyHash
    );
    event Joined(uint256 indexed id, address indexed owner);
    event RequestCancelled(uint256 indexed id);
    event RequestStarted(
        uint256 indexed id,
        bytes32 seatRoot,
        uint256 trainerCount,
        uint256 validatorCount
    );
    event MetricPosted(uint256 indexed id, uint32 round, uint256 metric, bytes32 evidenceHash);
    event RequestFinished(
        uint256 indexed id,
        uint256 initialMetric,
        uint256 finalMetric,
        bytes32 payoutRoot,
        uint256 payoutTotal,
        bytes32 evidenceHash
    );
    event RequestAborted(uint256 indexed id);
    event RequestExpired(uint256 indexed id);
    event Approved(uint256 indexed id, address indexed by);
    event Disputed(uint256 indexed id, address indexed by, bytes32 reasonHash);
    /// The arbiter's decision: upheld (the split stands) or void (deposit refunded).
    event Resolved(uint256 indexed id, bool upheld);
    /// A dispute nobody resolved in time: the result is void.
    event DisputeExpired(uint256 indexed id);
    /// approvedByAll: the buyer and every seat approved (otherwise the window
    /// passed, or the arbiter upheld a dispute).
    event RequestSettled(uint256 indexed id, bool approvedByAll);
    event Withdrawn(uint256 indexed id, address indexed account, uint256 amount);

    // ----------------------------------------------------------------- errors

    error AlreadyRegistered(address account, Role role);
    error NotRegistered(address account, Role role);
    error ZeroDeposit();
    error DepositTooLarge(uint256 deposit, uint256 maxDeposit);
    error InvalidDeadline(uint64 deadline, uint256 nowTimestamp);
    error ChallengeWindowTooLong(uint64 challengeWindow, uint256 maxChallengeWindow);
    error ChallengeWindowTooShort(uint64 challengeWindow, uint256 minChallengeWindow);
    error InvalidArbiter(address arbiter);
    error SpecMismatch(uint256 id, bytes32 given, bytes32 expected);
    error KeyMismatch(uint256 id, bytes32 given, bytes32 expected);
    error AlreadyJoined(uint256 id, address account);
    error NotJoined(uint256 id, address account);
    error NotParty(uint256 id, address caller);
    error NotArbiter(uint256 id, address caller);
    error AlreadyApproved(uint256 id, address account);
    error ChallengeWindowClosed(uint256 id, uint256 endedAt);
    error ResolutionWindowClosed(uint256 id, uint256 endedAt);
    error DisputePending(uint256 id, uint256 voidableAt);
    error ConflictOfInterest(uint256 id, address account);
    error UnknownRequest(uint256 id);
    error NotBuyer(uint256 id, address caller);
    error NotAggregator(uint256 id, address caller);
    error WrongStatus(uint256 id, Status status);
    error DeadlinePassed(uint256 id, uint64 deadline);
    error DeadlineNotReached(uint256 id, uint64 deadline);
    error ChallengeWindowOpen(uint256 id, uint256 endsAt);
    error NoTrainers();
    error NoValidators();
    error TooManyParticipants(uint256 count, uint256 maxParticipants);
    error EmptyRoot(uint256 id);
    error RoundNotIncreasing(uint256 id, uint32 round, uint32 lastRound);
    error MetricTooLarge(uint256 metric, uint256 maxMetric);
    error ContributionTooLarge(uint256 contribution, uint256 maxContribution);
    error PayoutTotalTooLarge(uint256 id, uint256 total, uint256 maxTotal);
    error InvalidProof(uint256 id, address account);
    error ProofTooLong(uint256 length, uint256 maxLength);
    error PayoutExhausted(uint256 id, uint256 amount, uint256 remaining);
    error AlreadyWithdrawn(uint256 id, address account);
    error NothingToWithdraw(uint256 id, address account);
    error TransferFailed(address to, uint256 amount);
    error Reentrancy();

    // -------------------------------------------------------------- modifiers

    /// Defence in depth: every function that sends ether already updates its
    /// state before the call (checks-effects-interactions); the lock also keeps
    /// a payee's fallback from entering any of them while a transfer runs.
    modifier nonReentrant() {
        if (_locked) revert Reentrancy();
        _locked = true;
        _;
        _locked = false;
    }

    // ----------------------------------------------------------- registration

    /// Register the caller (never anyone else) for `role`.
    function register(Role role) external {
        uint8 bit = uint8(1) << uint8(role);
        if (_roles[msg.sender] & bit != 0) revert AlreadyRegistered(msg.sender, role);
        _roles[msg.sender] |= bit;
        emit Registered(msg.sender, role);
    }

    function hasRole(address account, Role role) public view returns (bool) {
        return _roles[account] & (uint8(1) << uint8(role)) != 0;
    }

    // ----------------------------------------------------------- the buyer

    /// Create a request escrowing `msg.value` wei; returns its id.
    /// @param aggregator a registered aggregator, not the caller
    /// @param arbiter resolves disputes: non-zero, neither the caller nor the
    /// aggregator (and it can never be seated); owners see it before joining
    /// @param deadline unix seconds, in the future and at most MAX_DURATION away
    /// @param challengeWindow seconds after the final result during which a party
    /// may dispute, before anyone may settle (MIN_ to MAX_CHALLENGE_WINDOW)
    /// @param specHash hash of the request's parameters, kept off chain
    /// @param keyHash fingerprint of the buyer's Paillier public key for this request
    function createRequest(
        address aggregator,
        address arbiter,
        uint64 deadline,
        uint64 challengeWindow,
        bytes32 specHash,
        bytes32 keyHash
    ) external payable returns (uint256 id) {
        if (!hasRole(msg.sender, Role.Buyer)) revert NotRegistered(msg.sender, Role.Buyer);
        if (!hasRole(aggregator, Role.Aggregator)) {
            revert NotRegistered(aggregator, Role.Aggregator);
        }
        if (msg.value == 0) revert ZeroDeposit();
        if (msg.value > MAX_DEPOSIT) revert DepositTooLarge(msg.value, MAX_DEPOSIT);
        if (deadline <= block.timestamp || deadline > block.timestamp + MAX_DURATION) {
            revert InvalidDeadline(deadline, block.timestamp);
        }
        if (challengeWindow < MIN_CHALLENGE_WINDOW) {
            revert ChallengeWindowTooShort(challengeWindow, MIN_CHALLENGE_WINDOW);
        }
        if (challengeWindow > MAX_CHALLENGE_WINDOW) {
            revert ChallengeWindowTooLong(challengeWindow, MAX_CHALLENGE_WINDOW);
        }
        if (aggregator == msg.sender) revert ConflictOfInterest(requestCount + 1, aggregator);
        if (arbiter == address(0) || arbiter == msg.sender || arbiter == aggregator) {
            revert InvalidArbiter(arbiter);
        }
        id = ++requestCount;
        Request storage r = _requests[id];
        r.buyer = msg.sender;
        r.deadline = deadline;
        r.status = Status.Open;
        r.aggregator = aggregator;
        r.challengeWindow = challengeWindow;
        r.deposit = uint128(msg.value);
        r.specHash = specHash;
        r.arbiter = arbiter;
        r.keyHash = keyHash;
        emit RequestCreated(
            id,
            msg.sender,
            aggregator,
            msg.value,
            deadline,
            challengeWindow,
            specHash,
            arbiter,
            keyHash
        );
    }

    /// Cancel a request that has not started; the deposit is sent back at once.
    function cancel(uint256 id) external nonReentrant {
        Request storage r = _existing(id);
        _onlyBuyer(r, id);
        _requireStatus(r, id, Status.Open);
        uint256 amount = r.deposit;
        r.status = Status.Cancelled;
        r.refund = uint128(amount);
        r.paid |= BUYER_PAID;
        emit RequestCancelled(id);
        emit Withdrawn(id, msg.sender, amount);
        _send(msg.sender, amount);
    }

    /// Take the deposit back from a request that failed: aborted by the
    /// aggregator, or not finished by its deadline (this call then marks it failed).
    function reclaim(uint256 id) external nonReentrant {
        Request storage r = _existing(id);
        _onlyBuyer(r, id);
        Status status = r.status;
        if (status == Status.Open || status == Status.InProgress) {
            if (block.timestamp <= r.deadline) revert DeadlineNotReached(id, r.deadline);
            _fail(r);
            emit RequestExpired(id);
        } else if (status != Status.Failed) {
            revert WrongStatus(id, status);
        }
        _payOut(r, id, msg.sender);
    }

    // --------------------------------------------------------- data owners

    /// Consent, as the caller (never anyone else), to take part in request `id`
    /// exactly as specified: both hashes must equal the request's. Only a
    /// registered data owner that is neither its buyer, aggregator nor arbiter
    /// may join, while the request is open and before its deadline. Only a seat
    /// that joined may approve, dispute or claim.
    function join(uint256 id, bytes32 specHash, bytes32 keyHash) external {
        Request storage r = _existing(id);
        _requireStatus(r, id, Status.Open);
        _requireBeforeDeadline(r, id);
        if (!hasRole(msg.sender, Role.DataOwner)) revert NotRegistered(msg.sender, Role.DataOwner);
        if (msg.sender == r.buyer || msg.sender == r.aggregator || msg.sender == r.arbiter) {
            revert ConflictOfInterest(id, msg.sender);
        }
        if (specHash != r.specHash) revert SpecMismatch(id, specHash, r.specHash);
        if (keyHash != r.keyHash) revert KeyMismatch(id, keyHash, r.keyHash);
        if (_members[id][msg.sender] != 0) revert AlreadyJoined(id, msg.sender);
        _members[id][msg.sender] = JOINED;
        emit Joined(id, msg.sender);
    }

    // ------------------------------------------------------ the aggregator

    /// Fix the seats and start training: `seatRoot` is the Merkle root of one
    /// seat leaf per trainer and per validator (each a data owner that joined
    /// this request, all distinct: checked off chain against the transcript;
    /// on chain, a seat that never joined can neither approve nor be paid).
    function start(
        uint256 id,
        bytes32 seatRoot,
        uint256 nTrainers,
        uint256 nValidators
    ) external {
        Request storage r = _existing(id);
        _onlyAggregator(r, id);
        _requireStatus(r, id, Status.Open);
        _requireBeforeDeadline(r, id);
        if (nTrainers == 0) revert NoTrainers();
        if (nValidators == 0) revert NoValidators();
        // each count is checked alone first, so that their sum cannot overflow
        uint256 seats = nTrainers > MAX_PARTICIPANTS || nValidators > MAX_PARTICIPANTS
            ? type(uint256).max
            : nTrainers + nValidators;
        if (seats > MAX_PARTICIPANTS) revert TooManyParticipants(seats, MAX_PARTICIPANTS);
        if (seatRoot == bytes32(0)) revert EmptyRoot(id);
        r.seatRoot = seatRoot;
        r.trainerCount = uint16(nTrainers);
        r.validatorCount = uint16(nValidators);
        r.status = Status.InProgress;
        emit RequestStarted(id, seatRoot, nTrainers, nValidators);
    }

    /// Record the validation metric of `round` (rounds strictly increase).
    /// @param metric round(value * METRIC_SCALE), lower is better
    /// @param evidenceHash hash of the signed ciphertexts and decryption proof
    function postMetric(uint256 id, uint32 round, uint256 metric, bytes32 evidenceHash) external {
        Request storage r = _existing(id);
        _onlyAggregator(r, id);
        _requireStatus(r, id, Status.InProgress);
        _requireBeforeDeadline(r, id);
        if (round <= r.lastRound) revert RoundNotIncreasing(id, round, r.lastRound);
        if (metric > MAX_METRIC) revert MetricTooLarge(metric, MAX_METRIC);
        r.lastRound = round;
        emit MetricPosted(id, round, metric, evidenceHash);
    }

    /// Post the final result: the Merkle root of the seats' payouts and their
    /// total, bounded by the rule's trainers' pool plus the validators' shares.
    /// Fixes the aggregator's fee and the buyer's refund, and opens the
    /// challenge window.
    function finish(
        uint256 id,
        uint256 initialMetric,
        uint256 finalMetric,
        bytes32 payoutRoot,
        uint256 payoutTotal,
        bytes32 evidenceHash
    ) external {
        Request storage r = _existing(id);
        _onlyAggregator(r, id);
        _requireStatus(r, id, Status.InProgress);
        _requireBeforeDeadline(r, id);
        if (payoutRoot == bytes32(0)) revert EmptyRoot(id);
        uint256 deposit = r.deposit;
        uint256 maxTotal = _pool(deposit, initialMetric, finalMetric) +
            ((deposit * VALIDATORS_PERCENT) / 100 / r.validatorCount) *
            r.validatorCount;
        if (payoutTotal > maxTotal) revert PayoutTotalTooLarge(id, payoutTotal, maxTotal);
        // payoutTotal <= 0.9 D and the fee is 0.1 D (rounded down): no underflow.
        r.refund = uint128(deposit - payoutTotal - (deposit * AGGREGATOR_PERCENT) / 100);
        r.payoutRoot = payoutRoot;
        r.payoutTotal = uint128(payoutTotal);
        r.initialMetric = uint96(initialMetric);
        r.finalMetric = uint96(finalMetric);
        r.finishedAt = uint64(block.timestamp);
        r.evidenceHash = evidenceHash;
        r.status = Status.Finished;
        emit RequestFinished(id, initialMetric, finalMetric, payoutRoot, payoutTotal, evidenceHash);
    }

    /// Give up on a request that has not finished; the buyer may reclaim at once.
    function abort(uint256 id) external {
        Request storage r = _existing(id);
        _onlyAggregator(r, id);
        Status status = r.status;
        if (status != Status.Open && status != Status.InProgress) revert WrongStatus(id, status);
        _fail(r);
        emit RequestAborted(id);
    }

    // -------------------------------------------- the result: approve or dispute

    /// Accept the final result, as the buyer (no proof) or a seat that joined
    /// (its seat leaf's proof against the seat root), once each. When the buyer
    /// and every seat have approved (a counter reaching the seat count + 1),
    /// the split is payable at once; until then it waits for the challenge window.
    /// @param isTrainer the caller's seat kind (ignored for the buyer)
    /// @param seatProof the caller's seat proof (empty for the buyer)
    function approve(uint256 id, bool isTrainer, bytes32[] calldata seatProof) external {
        Request storage r = _existing(id);
        _requireStatus(r, id, Status.Finished);
        if (msg.sender == r.buyer) {
            if (r.buyerApproved) revert AlreadyApproved(id, msg.sender);
            r.buyerApproved = true;
        } else {
            uint256 standing = _seatStanding(r, id, msg.sender, isTrainer, seatProof);
            if (standing & APPROVED != 0) revert AlreadyApproved(id, msg.sender);
            _members[id][msg.sender] = standing | APPROVED;
        }
        uint256 approvals = uint256(r.approvals) + 1;
        r.approvals = uint16(approvals);
        emit Approved(id, msg.sender);
        if (approvals == uint256(r.trainerCount) + r.validatorCount + 1) {
            r.status = Status.Settled;
            emit RequestSettled(id, true);
        }
    }

    /// Contest the final result within the challenge window, as the buyer or a
    /// seat (with its proof) that has not approved it: nothing is payable until
    /// the arbiter resolves the dispute (or it expires void).
    /// @param reasonHash hash of the disputing party's reasons (kept off chain)
    function dispute(
        uint256 id,
        bytes32 reasonHash,
        bool isTrainer,
        bytes32[] calldata seatProof
    ) external {
        Request storage r = _existing(id);
        _requireStatus(r, id, Status.Finished);
        if (msg.sender == r.buyer) {
            if (r.buyerApproved) revert AlreadyApproved(id, msg.sender);
        } else {
            uint256 standing = _seatStanding(r, id, msg.sender, isTrainer, seatProof);
            if (standing & APPROVED != 0) revert AlreadyApproved(id, msg.sender);
        }
        uint256 endsAt = _challengeEndsAt(r);
        if (block.timestamp >= endsAt) revert ChallengeWindowClosed(id, endsAt);
        r.status = Status.Disputed;
        emit Disputed(id, msg.sender, reasonHash);
    }

    /// The arbiter's decision on a dispute, before finishedAt + 2 * challengeWindow:
    /// upheld, the posted split becomes payable; not upheld, the result is void
    /// and the buyer may withdraw its whole deposit (nobody else is paid).
    function resolve(uint256 id, bool upheld) external {
        Request storage r = _existing(id);
        if (msg.sender != r.arbiter) revert NotArbiter(id, msg.sender);
        _requireStatus(r, id, Status.Disputed);
        uint256 endsAt = _resolutionEndsAt(r);
        if (block.timestamp >= endsAt) revert ResolutionWindowClosed(id, endsAt);
        emit Resolved(id, upheld);
        if (upheld) {
            r.status = Status.Settled;
            emit RequestSettled(id, false);
        } else {
            _fail(r);
        }
    }

    // ---------------------------------------------------------------- anyone

    /// End the waiting: a finished request whose challenge window has passed
    /// becomes payable; a disputed one the arbiter left unresolved until
    /// finishedAt + 2 * challengeWindow is void (the buyer's deposit comes back).
    function settle(uint256 id) external {
        Request storage r = _existing(id);
        Status status = r.status;
        if (status == Status.Finished) {
            uint256 endsAt = _challengeEndsAt(r);
            if (block.timestamp < endsAt) revert ChallengeWindowOpen(id, endsAt);
            r.status = Status.Settled;
            emit RequestSettled(id, false);
        } else if (status == Status.Disputed) {
            uint256 voidableAt = _resolutionEndsAt(r);
            if (block.timestamp < voidableAt) revert DisputePending(id, voidableAt);
            _fail(r);
            emit DisputeExpired(id);
        } else {
            revert WrongStatus(id, status);
        }
    }

    /// Send the caller its fixed credit for request `id` (the aggregator's fee,
    /// the buyer's refund); each can do so once. Seats `claim` instead.
    function withdraw(uint256 id) external nonReentrant {
        Request storage r = _existing(id);
        Status status = r.status;
        if (status != Status.Settled && status != Status.Failed && status != Status.Cancelled) {
            revert WrongStatus(id, status);
        }
        _payOut(r, id, msg.sender);
    }

    /// Claim, as a seat that joined, the payout `amount` of the caller's leaf in
    /// the payout root, once a request is settled; once per account. Claims stop
    /// at the posted total, whatever the root holds.
    function claim(uint256 id, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        Request storage r = _existing(id);
        Status status = r.status;
        if (status != Status.Settled) {
            // a void or cancelled request pays its buyer only
            if (status == Status.Failed || status == Status.Cancelled) {
                revert NothingToWithdraw(id, msg.sender);
            }
            revert WrongStatus(id, status);
        }
        uint256 standing = _checkClaim(r, id, msg.sender, amount, proof);
        _members[id][msg.sender] = standing | CLAIMED;
        r.claimed += uint128(amount);
        emit Withdrawn(id, msg.sender, amount);
        _send(msg.sender, amount);
    }

    // ----------------------------------------------------------------- views

    function getRequest(uint256 id) external view returns (RequestView memory v) {
        Request storage r = _existing(id);
        v.buyer = r.buyer;
        v.aggregator = r.aggregator;
        v.status = r.status;
        v.deadline = r.deadline;
        v.challengeWindow = r.challengeWindow;
        v.finishedAt = r.finishedAt;
        v.deposit = r.deposit;
        v.refund = r.refund;
        v.initialMetric = r.initialMetric;
        v.finalMetric = r.finalMetric;
        v.lastRound = r.lastRound;
        v.trainerCount = r.trainerCount;
        v.validatorCount = r.validatorCount;
        v.specHash = r.specHash;
        v.evidenceHash = r.evidenceHash;
        v.arbiter = r.arbiter;
        v.keyHash = r.keyHash;
        v.approvals = r.approvals;
        v.seatRoot = r.seatRoot;
        v.payoutRoot = r.payoutRoot;
        v.payoutTotal = r.payoutTotal;
        v.claimed = r.claimed;
    }

    /// Whether `account` joined request `id` (consented to its spec and key).
    function hasJoined(uint256 id, address account) external view returns (bool) {
        return _members[id][account] & JOINED != 0;
    }

    /// Whether `account` (the buyer or a seat) approved the final result of `id`.
    function hasApproved(uint256 id, address account) external view returns (bool) {
        Request storage r = _requests[id];
        if (account == r.buyer && account != address(0)) return r.buyerApproved;
        return _members[id][account] & APPROVED != 0;
    }

    /// Whether `account` has withdrawn (buyer, aggregator) or claimed (a seat)
    /// its credit for request `id`.
    function hasWithdrawn(uint256 id, address account) external view returns (bool) {
        Request storage r = _requests[id];
        (, uint8 bit) = _owed(r, account);
        if (bit != 0) return r.paid & bit != 0;
        return _members[id][account] & CLAIMED != 0;
    }

    /// Wei that `withdraw(id)` would send `account` now: the buyer's refund or
    /// the aggregator's fee (0 for anyone else, and before they are payable).
    function claimable(uint256 id, address account) external view returns (uint256) {
        Request storage r = _requests[id];
        Status status = r.status;
        if (status != Status.Settled && status != Status.Failed && status != Status.Cancelled) {
            return 0;
        }
        (uint256 amount, uint8 bit) = _owed(r, account);
        return r.paid & bit == 0 ? amount : 0;
    }

    /// Wei that `claim(id, amount, proof)` by `account` would pay now (0 if the
    /// claim would revert).
    function claimableWithProof(
        uint256 id,
        address account,
        uint256 amount,
        bytes32[] calldata proof
    ) external view returns (uint256) {
        Request storage r = _requests[id];
        if (r.status != Status.Settled || amount == 0 || proof.length > MAX_PROOF_LENGTH) return 0;
        uint256 standing = _members[id][account];
        if (standing & JOINED == 0 || standing & CLAIMED != 0) return 0;
        if (!_verify(proof, r.payoutRoot, payoutLeaf(id, account, amount))) return 0;
        return amount <= uint256(r.payoutTotal) - r.claimed ? amount : 0;
    }

    /// Whether `proof` shows `account` in a seat of request `id` (trainer or validator).
    function isSeat(
        uint256 id,
        address account,
        bool isTrainer,
        bytes32[] calldata proof
    ) external view returns (bool) {
        if (proof.length > MAX_PROOF_LENGTH) return false;
        return _verify(proof, _requests[id].seatRoot, seatLeaf(id, account, isTrainer));
    }

    /// The seat leaf of `account` in request `id`, bound to this chain and contract.
    function seatLeaf(uint256 id, address account, bool isTrainer) public view returns (bytes32) {
        return keccak256(abi.encode(SEAT_LEAF, block.chainid, address(this), id, account, isTrainer));
    }

    /// The payout leaf of `account` in request `id`, bound to this chain and contract.
    function payoutLeaf(uint256 id, address account, uint256 amount) public view returns (bytes32) {
        return keccak256(abi.encode(PAYOUT_LEAF, block.chainid, address(this), id, account, amount));
    }

    /// The payment rule, exposed so anyone can check a split before it happens.
    function computePayouts(
        uint256 deposit,
        uint256 initialMetric,
        uint256 finalMetric,
        uint256[] calldata contributions,
        uint256 nValidators
    )
        external
        pure
        returns (uint256[] memory trainers, uint256 perValidator, uint256 aggregator, uint256 refund)
    {
        if (deposit > MAX_DEPOSIT) revert DepositTooLarge(deposit, MAX_DEPOSIT);
        uint256 nTrainers = contributions.length;
        if (nTrainers == 0) revert NoTrainers();
        if (nValidators == 0) revert NoValidators();
        if (nTrainers + nValidators > MAX_PARTICIPANTS) {
            revert TooManyParticipants(nTrainers + nValidators, MAX_PARTICIPANTS);
        }
        uint256 paid;
        (trainers, paid) = _splitPool(_pool(deposit, initialMetric, finalMetric), contributions);
        perValidator = (deposit * VALIDATORS_PERCENT) / 100 / nValidators;
        aggregator = (deposit * AGGREGATOR_PERCENT) / 100;
        // paid <= pool <= 0.7 D, validators <= 0.2 D, aggregator <= 0.1 D: no underflow.
        refund = deposit - paid - perValidator * nValidators - aggregator;
    }

    // -------------------------------------------------------------- internal

    /// The trainers' pool: 70 % of the deposit times the relative improvement.
    /// A model that did not improve (or had nothing to improve) earns nothing.
    function _pool(
        uint256 deposit,
        uint256 initialMetric,
        uint256 finalMetric
    ) private pure returns (uint256) {
        if (initialMetric > MAX_METRIC) revert MetricTooLarge(initialMetric, MAX_METRIC);
        if (finalMetric > MAX_METRIC) revert MetricTooLarge(finalMetric, MAX_METRIC);
        if (finalMetric >= initialMetric) return 0;
        uint256 gain = initialMetric - finalMetric;
        return (deposit * TRAINERS_PERCENT * gain) / (100 * initialMetric);
    }

    /// Split `pool` by contribution, rounding each share down; returns the shares
    /// and their sum (all zero when every contribution is zero).
    function _splitPool(
        uint256 pool,
        uint256[] calldata contributions
    ) private pure returns (uint256[] memory shares, uint256 paid) {
        uint256 n = contributions.length;
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 c = contributions[i];
            if (c > MAX_CONTRIBUTION) revert ContributionTooLarge(c, MAX_CONTRIBUTION);
            total += c;
        }
        shares = new uint256[](n);
        if (total == 0) return (shares, 0);
        for (uint256 i = 0; i < n; ++i) {
            uint256 share = (pool * contributions[i]) / total;
            shares[i] = share;
            paid += share;
        }
    }

    /// The standing of `account`, a seat that joined request `id` and proves
    /// its seat leaf against the seat root; anyone else may neither approve
    /// nor dispute (`NotParty`).
    function _seatStanding(
        Request storage r,
        uint256 id,
        address account,
        bool isTrainer,
        bytes32[] calldata proof
    ) private view returns (uint256 standing) {
        if (proof.length > MAX_PROOF_LENGTH) revert ProofTooLong(proof.length, MAX_PROOF_LENGTH);
        standing = _members[id][account];
        if (standing & JOINED == 0) revert NotParty(id, account);
        if (!_verify(proof, r.seatRoot, seatLeaf(id, account, isTrainer))) {
            revert NotParty(id, account);
        }
    }

    /// Every check of `claim`; returns the claimant's standing.
    function _checkClaim(
        Request storage r,
        uint256 id,
        address account,
        uint256 amount,
        bytes32[] calldata proof
    ) private view returns (uint256 standing) {
        if (proof.length > MAX_PROOF_LENGTH) revert ProofTooLong(proof.length, MAX_PROOF_LENGTH);
        standing = _members[id][account];
        if (standing & CLAIMED != 0) revert AlreadyWithdrawn(id, account);
        if (standing & JOINED == 0) revert NotJoined(id, account);
        if (amount == 0) revert NothingToWithdraw(id, account);
        if (!_verify(proof, r.payoutRoot, payoutLeaf(id, account, amount))) {
            revert InvalidProof(id, account);
        }
        uint256 remaining = uint256(r.payoutTotal) - r.claimed;
        if (amount > remaining) revert PayoutExhausted(id, amount, remaining);
    }

    /// Whether `proof` leads from `leaf` to `root` in a sorted-pair keccak tree.
    function _verify(
        bytes32[] calldata proof,
        bytes32 root,
        bytes32 leaf
    ) private pure returns (bool) {
        bytes32 node = leaf;
        uint256 n = proof.length;
        for (uint256 i = 0; i < n; ++i) {
            bytes32 sibling = proof[i];
            node = node < sibling ? _hashPair(node, sibling) : _hashPair(sibling, node);
        }
        return root != bytes32(0) && node == root;
    }

    function _hashPair(bytes32 a, bytes32 b) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            h := keccak256(0x00, 0x40)
        }
    }

    /// What `account` is owed by `withdraw` in a payable request (the buyer's
    /// refund, the aggregator's fee), and its paid bit (0: nothing fixed).
    function _owed(
        Request storage r,
        address account
    ) private view returns (uint256 amount, uint8 bit) {
        if (account == r.buyer && account != address(0)) return (r.refund, BUYER_PAID);
        if (account == r.aggregator && account != address(0)) {
            if (r.status != Status.Settled) return (0, AGGREGATOR_PAID);
            return ((uint256(r.deposit) * AGGREGATOR_PERCENT) / 100, AGGREGATOR_PAID);
        }
        return (0, 0);
    }

    /// Checks, effects, then the one interaction: the payee's bit is set and
    /// the event emitted before any ether leaves.
    function _payOut(Request storage r, uint256 id, address account) private {
        (uint256 amount, uint8 bit) = _owed(r, account);
        if (bit != 0 && r.paid & bit != 0) revert AlreadyWithdrawn(id, account);
        if (amount == 0) revert NothingToWithdraw(id, account);
        r.paid |= bit;
        emit Withdrawn(id, account, amount);
        _send(account, amount);
    }

    function _send(address to, uint256 amount) private {
        (bool ok, ) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    function _challengeEndsAt(Request storage r) private view returns (uint256) {
        return uint256(r.finishedAt) + r.challengeWindow;
    }

    function _resolutionEndsAt(Request storage r) private view returns (uint256) {
        return uint256(r.finishedAt) + 2 * uint256(r.challengeWindow);
    }

    function _fail(Request storage r) private {
        r.status = Status.Failed;
        r.refund = r.deposit;
    }

    function _existing(uint256 id) private view returns (Request storage r) {
        r = _requests[id];
        if (r.status == Status.None) revert UnknownRequest(id);
    }

    function _onlyBuyer(Request storage r, uint256 id) private view {
        if (msg.sender != r.buyer) revert NotBuyer(id, msg.sender);
    }

    function _onlyAggregator(Request storage r, uint256 id) private view {
        if (msg.sender != r.aggregator) revert NotAggregator(id, msg.sender);
    }

    function _requireStatus(Request storage r, uint256 id, Status expected) private view {
        if (r.status != expected) revert WrongStatus(id, r.status);
    }

    function _requireBeforeDeadline(Request storage r, uint256 id) private view {
        if (block.timestamp > r.deadline) revert DeadlinePassed(id, r.deadline);
    }
}
