// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// The part of Marketplace these test contracts call.
interface IMarketplace {
    function register(uint8 role) external;

    function createRequest(
        address aggregator,
        address arbiter,
        uint64 deadline,
        uint64 challengeWindow,
        bytes32 specHash,
        bytes32 keyHash
    ) external payable returns (uint256);

    function join(uint256 id, bytes32 specHash, bytes32 keyHash) external;

    function cancel(uint256 id) external;

    function reclaim(uint256 id) external;

    function withdraw(uint256 id) external;

    function claim(uint256 id, uint256 amount, bytes32[] calldata proof) external;
}

/// A payee that, while it is being paid, calls back into the marketplace to be
/// paid again. Used as a data owner (claim) and as a buyer (withdraw, cancel, reclaim).
/// It never reverts itself: it records what its re-entries got, so a test sees
/// whether one of them succeeded.
contract ReentrantPayee {
    /// What receive() calls back into.
    enum Reentry {
        None,
        Withdraw,
        Reclaim,
        Cancel,
        Claim
    }

    IMarketplace public immutable market;
    Reentry public reentry;
    uint256 public targetId;
    uint256 public maxReentries;
    uint256 public attempts;
    uint256 public successes;
    uint256 public received;
    bytes public lastRevertData;
    uint256 private _claimAmount;
    bytes32[] private _claimProof;

    constructor(address market_) {
        market = IMarketplace(market_);
    }

    function arm(Reentry reentry_, uint256 targetId_, uint256 maxReentries_) external {
        reentry = reentry_;
        targetId = targetId_;
        maxReentries = maxReentries_;
    }

    function register(uint8 role) external {
        market.register(role);
    }

    function createRequest(
        address aggregator,
        address arbiter,
        uint64 deadline,
        uint64 challengeWindow,
        bytes32 specHash,
        bytes32 keyHash
    ) external payable returns (uint256) {
        return
            market.createRequest{value: msg.value}(
                aggregator,
                arbiter,
                deadline,
                challengeWindow,
                specHash,
                keyHash
            );
    }

    function join(uint256 id, bytes32 specHash, bytes32 keyHash) external {
        market.join(id, specHash, keyHash);
    }

    function withdraw(uint256 id) external {
        market.withdraw(id);
    }

    function cancel(uint256 id) external {
        market.cancel(id);
    }

    function reclaim(uint256 id) external {
        market.reclaim(id);
    }

    /// Claim a seat's payout; a Claim re-entry repeats the same claim.
    function claim(uint256 id, uint256 amount, bytes32[] calldata proof) external {
        _claimAmount = amount;
        _claimProof = proof;
        market.claim(id, amount, proof);
    }

    receive() external payable {
        received += msg.value;
        if (reentry == Reentry.None || attempts >= maxReentries) return;
        attempts += 1;
        bytes memory callData;
        if (reentry == Reentry.Withdraw) {
            callData = abi.encodeCall(IMarketplace.withdraw, (targetId));
        } else if (reentry == Reentry.Claim) {
            callData = abi.encodeCall(IMarketplace.claim, (targetId, _claimAmount, _claimProof));
        } else if (reentry == Reentry.Reclaim) {
            callData = abi.encodeCall(IMarketplace.reclaim, (targetId));
        } else {
            callData = abi.encodeCall(IMarketplace.cancel, (targetId));
        }
        (bool ok, bytes memory data) = address(market).call(callData);
        if (ok) {
            successes += 1;
        } else {
            lastRevertData = data;
        }
    }
}

/// A data owner whose address refuses ether: its own claim fails, and must
/// not block anyone else's.
contract RejectingPayee {
    IMarketplace public immutable market;

    constructor(address market_) {
        market = IMarketplace(market_);
    }

    function register(uint8 role) external {
        market.register(role);
    }

    function join(uint256 id, bytes32 specHash, bytes32 keyHash) external {
        market.join(id, specHash, keyHash);
    }

    function withdraw(uint256 id) external {
        market.withdraw(id);
    }

    function claim(uint256 id, uint256 amount, bytes32[] calldata proof) external {
        market.claim(id, amount, proof);
    }
}
