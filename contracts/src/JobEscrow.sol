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
contract JobEscrow is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant CHARGER_ROLE = keccak256("CHARGER_ROLE");
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    IERC20 public immutable token;
    uint64 public immutable settlementPeriod;

    struct Job {
        address requester;
        uint64 deadline;
        bool closed;
        bool refunded;
        uint256 deposited;
        uint256 charged;
    }

    mapping(bytes32 specHash => Job) public jobs;

    event Deposited(
        bytes32 indexed specHash, address indexed requester, uint256 amount, uint256 totalDeposited, uint64 deadline
    );
    event Charged(bytes32 indexed specHash, uint256 amount, uint256 totalCharged);
    event Closed(bytes32 indexed specHash);
    event Refunded(bytes32 indexed specHash, address indexed requester, uint256 amount);

    error ZeroAddress();
    error ZeroAmount();
    error DeadlineNotInFuture(uint64 deadline);
    error NotRequester(address requester);
    error UnknownJob(bytes32 specHash);
    error JobAlreadyClosed(bytes32 specHash);
    error AlreadyRefunded(bytes32 specHash);
    error InsufficientEscrow(uint256 remaining);
    error RefundNotYetAllowed(uint64 allowedAt);

    constructor(IERC20 token_, address admin, uint64 settlementPeriod_) {
        if (address(token_) == address(0) || admin == address(0)) revert ZeroAddress();
        token = token_;
        settlementPeriod = settlementPeriod_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice The first deposit opens the job and makes the sender its requester; later deposits are
    /// top-ups by that requester, which can only extend the deadline, never shorten it (a shorter one
    /// would bring the refund forward under the coordinator's feet). Pass 0 to keep the deadline.
    function deposit(bytes32 specHash, uint256 amount, uint64 deadline) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Job storage job = jobs[specHash];
        if (job.requester == address(0)) {
            if (deadline <= block.timestamp) revert DeadlineNotInFuture(deadline);
            job.requester = msg.sender;
            job.deadline = deadline;
        } else {
            if (msg.sender != job.requester) revert NotRequester(job.requester);
            if (job.refunded) revert AlreadyRefunded(specHash);
            if (job.closed) revert JobAlreadyClosed(specHash);
            if (deadline > job.deadline) job.deadline = deadline;
        }
        job.deposited += amount;
        emit Deposited(specHash, msg.sender, amount, job.deposited, job.deadline);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Moves `amount` of the job's remaining escrow to the caller (the reward distributor), which
    /// then owes it to the contributors in its reward tree. Still allowed after close so that a final
    /// epoch posted late can settle, but never after the refund.
    function charge(bytes32 specHash, uint256 amount) external onlyRole(CHARGER_ROLE) nonReentrant {
        Job storage job = jobs[specHash];
        if (job.requester == address(0)) revert UnknownJob(specHash);
        if (job.refunded) revert AlreadyRefunded(specHash);
        uint256 left = job.deposited - job.charged;
        if (amount > left) revert InsufficientEscrow(left);
        job.charged += amount;
        emit Charged(specHash, amount, job.charged);
        token.safeTransfer(msg.sender, amount);
    }

    function close(bytes32 specHash) external onlyRole(COORDINATOR_ROLE) {
        Job storage job = jobs[specHash];
        if (job.requester == address(0)) revert UnknownJob(specHash);
        if (job.closed) revert JobAlreadyClosed(specHash);
        job.closed = true;
        emit Closed(specHash);
    }

    /// @notice Pays the requester whatever was not charged, once. Before close it waits for the deadline
    /// plus the settlement period, so that a coordinator that stopped closing jobs cannot lock funds
    /// forever either.
    function refund(bytes32 specHash) external nonReentrant {
        Job storage job = jobs[specHash];
        if (job.requester == address(0)) revert UnknownJob(specHash);
        if (msg.sender != job.requester) revert NotRequester(job.requester);
        if (job.refunded) revert AlreadyRefunded(specHash);
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

    function remaining(bytes32 specHash) external view returns (uint256) {
        Job storage job = jobs[specHash];
        return job.refunded ? 0 : job.deposited - job.charged;
    }
}
