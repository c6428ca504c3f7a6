// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title Job escrow
/// @notice A requester deposits a job's budget under the job's spec hash. The reward distributor charges
/// it as rewards are posted; the requester gets back what was never charged, but only after the
/// coordinator closed the job or a settlement period past the deadline, so a requester cannot withdraw
/// money that finished work is already owed before the coordinator has had the chance to charge it.
///
/// Escrows are keyed by (spec hash, requester), not by spec hash alone: a spec hash is public, and if the
/// first depositor owned it, anyone could squat someone else's job with a 1-token deposit and a short
/// deadline, and after the refund that hash could never be funded again. The job spec names its
/// requester, and the coordinator only reads and charges that requester's escrow; deposits by anyone
/// else under the same hash are their own escrows, which they can take back like any other.
contract JobEscrow is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant CHARGER_ROLE = keccak256("CHARGER_ROLE");
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    IERC20 public immutable token;
    uint64 public immutable settlementPeriod;

    /// @dev An escrow exists once `deposited > 0` (every deposit is positive).
    struct Job {
        uint64 deadline;
        bool closed;
        bool refunded;
        uint256 deposited;
        uint256 charged;
    }

    mapping(bytes32 specHash => mapping(address requester => Job)) public jobs;

    event Deposited(
        bytes32 indexed specHash, address indexed requester, uint256 amount, uint256 totalDeposited, uint64 deadline
    );
    event Charged(bytes32 indexed specHash, address indexed requester, uint256 amount, uint256 totalCharged);
    event Closed(bytes32 indexed specHash, address indexed requester);
    event Refunded(bytes32 indexed specHash, address indexed requester, uint256 amount);

    error ZeroAddress();
    error ZeroAmount();
    error DeadlineNotInFuture(uint64 deadline);
    error UnknownJob(bytes32 specHash, address requester);
    error JobAlreadyClosed(bytes32 specHash, address requester);
    error AlreadyRefunded(bytes32 specHash, address requester);
    error InsufficientEscrow(uint256 remaining);
    error RefundNotYetAllowed(uint64 allowedAt);

    constructor(IERC20 token_, address admin, uint64 settlementPeriod_) {
        if (address(token_) == address(0) || admin == address(0)) revert ZeroAddress();
        token = token_;
        settlementPeriod = settlementPeriod_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Funds the sender's escrow for `specHash`. The first deposit opens it with `deadline`; later
    /// deposits are top-ups, which can only extend the deadline, never shorten it (a shorter one would
    /// bring the refund forward under the coordinator's feet). Pass 0 to keep the deadline. Nobody else's
    /// deposit touches this escrow.
    function deposit(bytes32 specHash, uint256 amount, uint64 deadline) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Job storage job = jobs[specHash][msg.sender];
        if (job.deposited == 0) {
            if (deadline <= block.timestamp) revert DeadlineNotInFuture(deadline);
            job.deadline = deadline;
        } else {
            if (job.refunded) revert AlreadyRefunded(specHash, msg.sender);
            if (job.closed) revert JobAlreadyClosed(specHash, msg.sender);
            if (deadline > job.deadline) job.deadline = deadline;
        }
        job.deposited += amount;
        emit Deposited(specHash, msg.sender, amount, job.deposited, job.deadline);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Moves `amount` of the escrow's remainder to the caller (the reward distributor), which then
    /// owes it to the contributors in its reward tree. Still allowed after close so that a final epoch
    /// posted late can settle, but never after the refund.
    function charge(bytes32 specHash, address requester, uint256 amount) external onlyRole(CHARGER_ROLE) nonReentrant {
        Job storage job = jobs[specHash][requester];
        if (job.deposited == 0) revert UnknownJob(specHash, requester);
        if (job.refunded) revert AlreadyRefunded(specHash, requester);
        uint256 left = job.deposited - job.charged;
        if (amount > left) revert InsufficientEscrow(left);
        job.charged += amount;
        emit Charged(specHash, requester, amount, job.charged);
        token.safeTransfer(msg.sender, amount);
    }

    function close(bytes32 specHash, address requester) external onlyRole(COORDINATOR_ROLE) {
        Job storage job = jobs[specHash][requester];
        if (job.deposited == 0) revert UnknownJob(specHash, requester);
        if (job.closed) revert JobAlreadyClosed(specHash, requester);
        job.closed = true;
        emit Closed(specHash, requester);
    }

    /// @notice Pays the sender whatever of its escrow was not charged, once. Before close it waits for the
    /// deadline plus the settlement period, so that a coordinator that stopped closing jobs cannot lock
    /// funds forever either.
    function refund(bytes32 specHash) external nonReentrant {
        Job storage job = jobs[specHash][msg.sender];
        if (job.deposited == 0) revert UnknownJob(specHash, msg.sender);
        if (job.refunded) revert AlreadyRefunded(specHash, msg.sender);
        if (!job.closed) {
            // Summed in 256 bits: a deadline near 2^64 must mean "only after close", not an overflow panic.
            uint256 allowedAt = uint256(job.deadline) + settlementPeriod;
            if (block.timestamp < allowedAt) {
                revert RefundNotYetAllowed(allowedAt > type(uint64).max ? type(uint64).max : uint64(allowedAt));
            }
        }
        uint256 amount = job.deposited - job.charged;
        job.refunded = true;
        emit Refunded(specHash, msg.sender, amount);
        if (amount > 0) token.safeTransfer(msg.sender, amount);
    }

    function remaining(bytes32 specHash, address requester) external view returns (uint256) {
        Job storage job = jobs[specHash][requester];
        return job.refunded ? 0 : job.deposited - job.charged;
    }
}
