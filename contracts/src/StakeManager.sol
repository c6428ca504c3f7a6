// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title Contributor stakes
/// @notice Contributors stake tokens that a proven fault (see DisputeResolver) can slash. Unstaking is a
/// two-step request/withdraw with a delay, and tokens waiting out that delay stay slashable, so a
/// contributor cannot see a dispute coming and pull the stake out from under it.
contract StakeManager is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    uint16 internal constant BPS = 10_000;

    IERC20 public immutable token;
    address public immutable treasury;
    uint64 public immutable unstakeDelay;

    struct StakeInfo {
        uint256 active;
        uint256 pending;
        uint64 unlockAt;
    }

    mapping(address account => StakeInfo) private _stakes;

    event Staked(address indexed account, uint256 amount);
    event UnstakeRequested(address indexed account, uint256 amount, uint64 unlockAt);
    event Withdrawn(address indexed account, uint256 amount);
    event Slashed(address indexed account, uint256 amount, address indexed reporter, uint256 reporterReward);

    error ZeroAddress();
    error ZeroAmount();
    error InsufficientStake(uint256 active);
    error UnstakeLocked(uint64 unlockAt);
    error NothingToWithdraw();
    error InvalidBps(uint16 bps);

    constructor(IERC20 token_, address admin, address treasury_, uint64 unstakeDelay_) {
        if (address(token_) == address(0) || admin == address(0) || treasury_ == address(0)) revert ZeroAddress();
        token = token_;
        treasury = treasury_;
        unstakeDelay = unstakeDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function stake(uint256 amount) external nonReentrant {
        _stake(msg.sender, amount);
    }

    /// @notice Stakes `amount` of the sender's tokens for `account`, which owns the stake from then on
    /// (only it can unstake and withdraw). Without this, an address that holds no gas token and no test
    /// token yet (a new burner wallet) has nothing a proven fault could slash: the local faucet stakes the
    /// minimum for it so that its claims carry a real penalty from the first unit.
    function stakeFor(address account, uint256 amount) external nonReentrant {
        if (account == address(0)) revert ZeroAddress();
        _stake(account, amount);
    }

    function _stake(address account, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        _stakes[account].active += amount;
        emit Staked(account, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Moves `amount` from active to pending. A second request adds to pending and restarts the
    /// delay for all of it: otherwise a contributor could keep an old, nearly expired request open and
    /// top it up right before misbehaving.
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        StakeInfo storage info = _stakes[msg.sender];
        if (amount > info.active) revert InsufficientStake(info.active);
        uint64 unlockAt = uint64(block.timestamp) + unstakeDelay;
        info.active -= amount;
        info.pending += amount;
        info.unlockAt = unlockAt;
        emit UnstakeRequested(msg.sender, amount, unlockAt);
    }

    /// @notice Pays out everything pending once the delay has passed (pull payment: only the staker moves
    /// their own tokens out).
    function withdraw() external nonReentrant {
        StakeInfo storage info = _stakes[msg.sender];
        uint256 amount = info.pending;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < info.unlockAt) revert UnstakeLocked(info.unlockAt);
        info.pending = 0;
        info.unlockAt = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    function stakeOf(address account) external view returns (uint256 active, uint256 pending, uint64 unlockAt) {
        StakeInfo storage info = _stakes[account];
        return (info.active, info.pending, info.unlockAt);
    }

    /// @notice What a slash of this account reaches now: active and pending stake, since pending stake
    /// stays slashable until withdrawn. This is the amount a lease gate should compare with a job's
    /// minimum stake.
    function slashableOf(address account) external view returns (uint256) {
        StakeInfo storage info = _stakes[account];
        return info.active + info.pending;
    }

    /// @notice Slashes `slashBps` of everything the account has here, pending included. The pending part is
    /// taken first: it is the part about to leave, while active stake stays slashable for later faults.
    /// `reporterBps` of the slashed amount rewards the reporter (none when `reporter` is zero); the rest
    /// goes to the treasury. An offender who reports themselves recovers the reporter share, so the
    /// effective penalty is slashBps * (1 - reporterBps), never less.
    function slash(address account, uint16 slashBps, address reporter, uint16 reporterBps)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
        returns (uint256 slashed)
    {
        if (slashBps > BPS) revert InvalidBps(slashBps);
        if (reporterBps > BPS) revert InvalidBps(reporterBps);
        StakeInfo storage info = _stakes[account];
        slashed = ((info.active + info.pending) * slashBps) / BPS;
        if (slashed <= info.pending) {
            info.pending -= slashed;
        } else {
            info.active -= slashed - info.pending;
            info.pending = 0;
        }
        uint256 reporterReward = reporter == address(0) ? 0 : (slashed * reporterBps) / BPS;
        emit Slashed(account, slashed, reporter, reporterReward);
        if (reporterReward > 0) token.safeTransfer(reporter, reporterReward);
        if (slashed > reporterReward) token.safeTransfer(treasury, slashed - reporterReward);
    }
}
