// SPDX-License-Identifier: MIT
// The exact compiler is pinned by package.json (solc-js); 0.8.28 is the oldest
// release with `transient` state variables, used by the reentrancy lock.
pragma solidity ^0.8.28;

/// @title DeltaML marketplace: escrow and settlement of training requests.
/// @notice A buyer escrows a payment per training request, naming the
/// aggregator, an arbiter, the hash of the request's parameters and the
/// fingerprint of its Paillier key. Registered data owners consent to exactly
/// that request by joining it with their own accounts; the aggregator can seat
/// only owners that joined. It posts scaled metrics with hashes of their
/// evidence, and the final result with one contribution weight per trainer.
/// The split is fixed at that moment and a challenge window opens: the split
/// becomes payable at once when the buyer and every seat approve, or when
/// anyone settles after the window. Within the window the buyer or any seat may
/// dispute; the arbiter then upholds the result (payable) or voids it (the
/// buyer gets its whole deposit back), and a dispute nobody resolves within a
/// second window is void. Every payee withdraws its own credit, once (pull
/// payments). The buyer gets everything back if it cancels before the start,
/// if the aggregator aborts, if the deadline passes without a final result, or
/// if the result is voided.
///
/// Payment rule (identical to ``deltaml.ledger.payouts.compute_payouts``), for a
/// deposit D, metrics m0 -> m1 (lower is better) and contributions c_i:
///   pool        = D * 70 * max(0, m0 - m1) / (100 * m0)   (0 when m0 == 0)
///   trainer i   = pool * c_i / sum(c)                    (0 when sum(c) == 0)
///   validator   = D * 20 / 100 / V                       (each of V)
///   aggregator  = D * 10 / 100
///   refund      = D - everything above                   (to the buyer)
/// All divisions round down, so rounding always favours the buyer and the
/// credits add up to D exactly. Inputs are bounded (deposit < 2^128, metrics
/// and contributions < 2^96, at most 64 participants) so no product can
/// overflow: D * 70 * gain < 2^231 and pool * c_i < 2^224.
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
        InProgress, // started: trainers and validators fixed
        Finished, // final result posted; split fixed, challenge window running
        Settled, // split payable: each payee withdraws its credit
        Cancelled, // buyer cancelled before the start; deposit refunded
        Failed, // aborted, expired or voided: deposit refundable
        Disputed // a party disputed the result within the window; the arbiter decides
    }

    struct Request {
        // slot 0
        address buyer;
        uint64 deadline; // unix seconds; start, metrics and finish up to and including it
        Status status;
        uint8 trainerCount;
        uint8 validatorCount;
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
        // slot 4: bit k for seat k (0..63), AGGREGATOR_BIT, BUYER_BIT
        uint256 paidMask;
        bytes32 specHash; // hash of the request's parameters (model, columns, ...)
        bytes32 evidenceHash; // hash of the evidence behind the final result
        // slot 7
        address arbiter; // resolves disputes; named at creation, never a party
        uint8 approvals; // number of distinct approvals of the final result
        uint72 approvedMask; // bit k for seat k, BUYER_BIT: who approved
        // slot 8
        bytes32 keyHash; // fingerprint of the buyer's Paillier public key
    }

    /// What `finish` fixes for the trainer in one seat.
    struct TrainerSeat {
        uint128 share; // wei owed once settled
        uint96 contribution; // the weight posted by `finish`
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
        uint8 trainerCount;
        uint8 validatorCount;
        bytes32 specHash;
        bytes32 evidenceHash;
        address arbiter;
        bytes32 keyHash;
        uint8 approvals;
    }

    // -------------------------------------------------------------- constants

    uint256 public constant TRAINERS_PERCENT = 70;
    uint256 public constant VALIDATORS_PERCENT = 20;
    uint256 public constant AGGREGATOR_PERCENT = 10;
    /// Metrics are posted as round(value * METRIC_SCALE): six decimal places.
    uint256 public constant METRIC_SCALE = 1e6;
    /// Most trainers + validators per request; bounds every loop.
    uint256 public constant MAX_PARTICIPANTS = 64;
    uint256 public constant MAX_DEPOSIT = type(uint128).max;
    uint256 public constant MAX_METRIC = type(uint96).max;
    uint256 public constant MAX_CONTRIBUTION = type(uint96).max;
    /// Longest time from creation to deadline, so escrow cannot be locked forever.
    uint256 public constant MAX_DURATION = 365 days;
    /// Shortest challenge window: long enough for a party to look and dispute.
    uint256 public constant MIN_CHALLENGE_WINDOW = 60;
    uint256 public constant MAX_CHALLENGE_WINDOW = 30 days;

    uint256 private constant AGGREGATOR_BIT = 1 << 64;
    uint256 private constant BUYER_BIT = 1 << 65;
    uint256 private constant JOINED = 1;
    uint256 private constant SEAT_BASE = 2;

    // ------------------------------------------------------------------ state

    /// Bit (1 << role) set when `account` registered itself for `role`.
    mapping(address account => uint8 roleMask) private _roles;
    /// Number of requests created; ids run from 1 to requestCount.
    uint256 public requestCount;
    mapping(uint256 id => Request) private _requests;
    /// Each account's standing in a request: 0 nothing, JOINED after `join`,
    /// SEAT_BASE + seat once `start` seated it (one slot: seating a joined owner
    /// rewrites a non-zero slot). Seats 0..trainerCount-1 are trainers in the
    /// order given to `start`, the rest are validators.
    mapping(uint256 id => mapping(address account => uint256 standing)) private _members;
    /// The participant in each seat (the reverse of _members), for `participantsOf`.
    mapping(uint256 id => mapping(uint256 seat => address account)) private _seatHolders;
    /// Share and contribution of the trainer in each seat, fixed by `finish`.
    mapping(uint256 id => mapping(uint256 seat => TrainerSeat)) private _trainers;

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
    event RequestStarted(uint256 indexed id, address[] trainers, address[] validators);
    event MetricPosted(uint256 indexed id, uint32 round, uint256 metric, bytes32 evidenceHash);
    event RequestFinished(
        uint256 indexed id,
        uint256 initialMetric,
        uint256 finalMetric,
        uint256[] contributions,
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
    error DuplicateParticipant(uint256 id, address account);
    error RoundNotIncreasing(uint256 id, uint32 round, uint32 lastRound);
    error MetricTooLarge(uint256 metric, uint256 maxMetric);
    error ContributionTooLarge(uint256 contribution, uint256 maxContribution);
    error ContributionsLengthMismatch(uint256 given, uint256 trainers);
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
        r.paidMask |= BUYER_BIT;
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
    /// may join, while the request is open and before its deadline.
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

    /// Fix the trainers and validators (each a data owner that joined this
    /// request, all distinct) and start training.
    function start(
        uint256 id,
        address[] calldata trainers,
        address[] calldata validators
    ) external {
        Request storage r = _existing(id);
        _onlyAggregator(r, id);
        _requireStatus(r, id, Status.Open);
        _requireBeforeDeadline(r, id);
        uint256 nTrainers = trainers.length;
        uint256 nValidators = validators.length;
        if (nTrainers == 0) revert NoTrainers();
        if (nValidators == 0) revert NoValidators();
        if (nTrainers + nValidators > MAX_PARTICIPANTS) {
            revert TooManyParticipants(nTrainers + nValidators, MAX_PARTICIPANTS);
        }
        for (uint256 i = 0; i < nTrainers; ++i) {
            _seat(id, trainers[i], i);
        }
        for (uint256 j = 0; j < nValidators; ++j) {
            _seat(id, validators[j], nTrainers + j);
        }
        r.trainerCount = uint8(nTrainers);
        r.validatorCount = uint8(nValidators);
        r.status = Status.InProgress;
        emit RequestStarted(id, trainers, validators);
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

    /// Post the final result: fixes every payee's credit by the payment rule
    /// and opens the challenge window.
    /// @param contributions one non-negative weight per trainer, in seat order
    function finish(
        uint256 id,
        uint256 initialMetric,
        uint256 finalMetric,
        uint256[] calldata contributions,
        bytes32 evidenceHash
    ) external {
        Request storage r = _existing(id);
        _onlyAggregator(r, id);
        _requireStatus(r, id, Status.InProgress);
        _requireBeforeDeadline(r, id);
        if (contributions.length != r.trainerCount) {
            revert ContributionsLengthMismatch(contributions.length, r.trainerCount);
        }
        (uint256[] memory shares, , , uint256 refund) = _computePayouts(
            r.deposit,
            initialMetric,
            finalMetric,
            contributions,
            r.validatorCount
        );
        for (uint256 i = 0; i < shares.length; ++i) {
            // contributions[i] <= MAX_CONTRIBUTION (checked by _splitPool), shares[i] < 2^128
            if (shares[i] != 0 || contributions[i] != 0) {
                _trainers[id][i] = TrainerSeat(uint128(shares[i]), uint96(contributions[i]));
            }
        }
        r.refund = uint128(refund);
        r.initialMetric = uint96(initialMetric);
        r.finalMetric = uint96(finalMetric);
        r.finishedAt = uint64(block.timestamp);
        r.evidenceHash = evidenceHash;
        r.status = Status.Finished;
        emit RequestFinished(id, initialMetric, finalMetric, contributions, evidenceHash);
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

    /// Accept the final result, as the buyer or a seated participant (once
    /// each). When the buyer and every seat have approved, the split is
    /// payable at once; until then it waits for the challenge window.
    function approve(uint256 id) external {
        Request storage r = _existing(id);
        _requireStatus(r, id, Status.Finished);
        uint256 bit = _partyBit(r, id, msg.sender);
        uint256 mask = r.approvedMask;
        if (mask & bit != 0) revert AlreadyApproved(id, msg.sender);
        mask |= bit;
        r.approvedMask = uint72(mask);
        r.approvals += 1;
        emit Approved(id, msg.sender);
        uint256 everyone = BUYER_BIT | ((uint256(1) << (uint256(r.trainerCount) + r.validatorCount)) - 1);
        if (mask == everyone) {
            r.status = Status.Settled;
            emit RequestSettled(id, true);
        }
    }

    /// Contest the final result within the challenge window, as the buyer or a
    /// seated participant that has not approved it: nothing is payable until
    /// the arbiter resolves the dispute (or it expires void).
    /// @param reasonHash hash of the disputing party's reasons (kept off chain)
    function dispute(uint256 id, bytes32 reasonHash) external {
        Request storage r = _existing(id);
        _requireStatus(r, id, Status.Finished);
        uint256 bit = _partyBit(r, id, msg.sender);
        if (r.approvedMask & bit != 0) revert AlreadyApproved(id, msg.sender);
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

    /// Send the caller its credit for request `id`; each payee can do so once.
    function withdraw(uint256 id) external nonReentrant {
        Request storage r = _existing(id);
        Status status = r.status;
        if (status != Status.Settled && status != Status.Failed && status != Status.Cancelled) {
            revert WrongStatus(id, status);
        }
        _payOut(r, id, msg.sender);
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
    }

    /// Whether `account` joined request `id` (consented to its spec and key).
    function hasJoined(uint256 id, address account) external view returns (bool) {
        return _members[id][account] != 0;
    }

    /// Whether `account` (the buyer or a seat) approved the final result of `id`.
    function hasApproved(uint256 id, address account) external view returns (bool) {
        Request storage r = _requests[id];
        uint256 bit;
        if (account == r.buyer && account != address(0)) {
            bit = BUYER_BIT;
        } else {
            (bool seated, uint256 seat) = _seatIndex(id, account);
            if (!seated) return false;
            bit = uint256(1) << seat;
        }
        return r.approvedMask & bit != 0;
    }

    /// The trainers and validators seated by `start`, in seat order (empty before).
    function participantsOf(
        uint256 id
    ) external view returns (address[] memory trainers, address[] memory validators) {
        Request storage r = _existing(id);
        uint256 nTrainers = r.trainerCount;
        uint256 nValidators = r.validatorCount;
        trainers = new address[](nTrainers);
        validators = new address[](nValidators);
        for (uint256 i = 0; i < nTrainers; ++i) {
            trainers[i] = _seatHolders[id][i];
        }
        for (uint256 j = 0; j < nValidators; ++j) {
            validators[j] = _seatHolders[id][nTrainers + j];
        }
    }

    /// The contribution weights posted by `finish`, one per trainer in seat
    /// order (zeros before the finish).
    function contributionsOf(uint256 id) external view returns (uint256[] memory contributions) {
        Request storage r = _existing(id);
        uint256 n = r.trainerCount;
        contributions = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            contributions[i] = _trainers[id][i].contribution;
        }
    }

    /// Wei that `withdraw(id)` would send `account` now (0 before settlement).
    function claimable(uint256 id, address account) external view returns (uint256) {
        Request storage r = _requests[id];
        Status status = r.status;
        if (status != Status.Settled && status != Status.Failed && status != Status.Cancelled) {
            return 0;
        }
        (uint256 amount, uint256 bit) = _owed(r, id, account);
        return r.paidMask & bit == 0 ? amount : 0;
    }

    /// Whether `account` has withdrawn its credit for request `id`.
    function hasWithdrawn(uint256 id, address account) external view returns (bool) {
        Request storage r = _requests[id];
        (, uint256 bit) = _owed(r, id, account);
        return bit != 0 && r.paidMask & bit != 0;
    }

    /// The seat of `account` in request `id`: (false, 0) if not a participant.
    /// Seats below the trainer count are trainers, the rest validators.
    function seatOf(uint256 id, address account) external view returns (bool seated, uint256 seat) {
        return _seatIndex(id, account);
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
        return _computePayouts(deposit, initialMetric, finalMetric, contributions, nValidators);
    }

    // -------------------------------------------------------------- internal

    function _computePayouts(
        uint256 deposit,
        uint256 initialMetric,
        uint256 finalMetric,
        uint256[] calldata contributions,
        uint256 nValidators
    )
        internal
        pure
        returns (uint256[] memory trainers, uint256 perValidator, uint256 aggregator, uint256 refund)
    {
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

    /// Seat `account`: `join` already checked that it is a registered data owner
    /// other than the buyer, the aggregator and the arbiter.
    function _seat(uint256 id, address account, uint256 seat) private {
        uint256 standing = _members[id][account];
        if (standing == 0) revert NotJoined(id, account);
        if (standing != JOINED) revert DuplicateParticipant(id, account);
        _members[id][account] = SEAT_BASE + seat;
        _seatHolders[id][seat] = account;
    }

    /// The seat of `account` in request `id`, if `start` seated it.
    function _seatIndex(uint256 id, address account) private view returns (bool, uint256) {
        uint256 standing = _members[id][account];
        return standing < SEAT_BASE ? (false, 0) : (true, standing - SEAT_BASE);
    }

    /// What `account` is owed in a payable request, and its bit in paidMask
    /// (bit 0 when it is owed nothing at all).
    function _owed(
        Request storage r,
        uint256 id,
        address account
    ) private view returns (uint256 amount, uint256 bit) {
        Status status = r.status;
        if (account == r.buyer && account != address(0)) return (r.refund, BUYER_BIT);
        if (status != Status.Settled) return (0, 0);
        if (account == r.aggregator) {
            return ((uint256(r.deposit) * AGGREGATOR_PERCENT) / 100, AGGREGATOR_BIT);
        }
        (bool seated, uint256 seat) = _seatIndex(id, account);
        if (!seated) return (0, 0);
        if (seat < r.trainerCount) return (_trainers[id][seat].share, 1 << seat);
        return ((uint256(r.deposit) * VALIDATORS_PERCENT) / 100 / r.validatorCount, 1 << seat);
    }

    /// Checks, effects, then the one interaction: the payee's bit is set and
    /// the event emitted before any ether leaves.
    function _payOut(Request storage r, uint256 id, address account) private {
        (uint256 amount, uint256 bit) = _owed(r, id, account);
        if (bit != 0 && r.paidMask & bit != 0) revert AlreadyWithdrawn(id, account);
        if (amount == 0) revert NothingToWithdraw(id, account);
        r.paidMask |= bit;
        emit Withdrawn(id, account, amount);
        _send(account, amount);
    }

    function _send(address to, uint256 amount) private {
        (bool ok, ) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }

    /// The approval bit of `account`: BUYER_BIT for the buyer, its seat's bit
    /// for a participant; anyone else may neither approve nor dispute.
    function _partyBit(
        Request storage r,
        uint256 id,
        address account
    ) private view returns (uint256) {
        if (account == r.buyer) return BUYER_BIT;
        (bool seated, uint256 seat) = _seatIndex(id, account);
        if (!seated) revert NotParty(id, account);
        return uint256(1) << seat;
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
