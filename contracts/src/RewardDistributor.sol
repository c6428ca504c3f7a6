// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {JobEscrow} from "./JobEscrow.sol";

/// @title Reward distributor
/// @notice The coordinator posts one Merkle root per epoch over every contributor's cumulative reward
/// (leaf `(account, cumulativeAmount)`, OpenZeppelin StandardMerkleTree encoding), charging the jobs'
/// escrows for the epoch's new rewards in the same transaction. A root becomes claimable after a
/// challenge window, during which a referee verdict can freeze a cheating contributor's unclaimed
/// rewards. Cumulative leaves make any root sufficient on its own: a claim pays the difference between
/// the leaf and what the account has already been paid, so skipped epochs cost nothing and no epoch can
/// be claimed twice.
///
/// Each epoch also commits a second root, `claimsRoot`, over the EIP-712 digests of every WorkClaim the
/// coordinator settled in it (paid or refused with evidence). A referee verdict must prove its claim is in
/// an epoch's claimsRoot, so the verdict's window is the window of the epoch that committed the claim,
/// not one the referee picks.
///
/// Frozen rewards go to the treasury (`sweepFrozen`): a cumulative leaf cannot be attributed to jobs
/// without trusting the coordinator further, and the work it paid for either stayed in the requester's
/// model (checked or unchallenged units) or was removed from it and never paid, so no requester is owed
/// it back.
contract RewardDistributor is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant POSTER_ROLE = keccak256("POSTER_ROLE");
    bytes32 public constant FREEZER_ROLE = keccak256("FREEZER_ROLE");

    IERC20 public immutable token;
    JobEscrow public immutable escrow;
    /// @notice Receives frozen rewards (the same treasury that receives slashed stake).
    address public immutable treasury;
    uint64 public immutable challengeWindow;

    /// @dev Escrows are keyed by (specHash, requester): the charge names whose escrow pays.
    struct JobCharge {
        bytes32 specHash;
        address requester;
        uint256 amount;
    }

    /// @dev `claimsRoot` is last so that readers of the first four fields stay valid.
    struct Epoch {
        bytes32 root;
        uint256 totalCumulative;
        uint64 postedAt;
        uint64 claimableAt;
        bytes32 claimsRoot;
    }

    uint64 public epochCount;
    mapping(uint64 epoch => Epoch) public epochs;
    mapping(address account => uint256) public claimed;
    mapping(address account => uint64) public frozenAt;

    event RootPosted(uint64 indexed epoch, bytes32 root, uint256 totalCumulative, uint64 claimableAt);
    event Claimed(address indexed account, uint64 indexed epoch, uint256 amount, uint256 cumulativeAmount);
    event Frozen(address indexed account, uint64 frozenAt);
    event FrozenSwept(address indexed account, uint64 indexed epoch, uint256 amount, uint256 cumulativeAmount);

    error ZeroAddress();
    error WrongEpoch(uint64 expected);
    error ZeroRoot();
    error TotalMismatch(uint256 expected);
    error UnknownEpoch(uint64 epoch);
    error RootNotClaimable(uint64 claimableAt);
    error RewardsFrozen(address account);
    error InvalidProof();
    error NothingToClaim();
    error NotFrozen(address account);
    error EpochNotFrozen(uint64 epoch, address account);

    constructor(IERC20 token_, JobEscrow escrow_, address admin, address treasury_, uint64 challengeWindow_) {
        if (
            address(token_) == address(0) || address(escrow_) == address(0) || admin == address(0)
                || treasury_ == address(0)
        ) {
            revert ZeroAddress();
        }
        token = token_;
        escrow = escrow_;
        treasury = treasury_;
        challengeWindow = challengeWindow_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Posts epoch `epoch`'s roots. `totalCumulative` is everything ever charged and must grow by
    /// exactly what this epoch charges the escrows. It is the sum of the leaves, plus the last leaves of
    /// accounts the coordinator has since left out of its trees (frozen ones, whose amount is swept), so
    /// the tokens held here always cover every leaf (as long as the poster builds the tree it says it
    /// built: the contract cannot sum leaves it never sees).
    ///
    /// The reward root may repeat the previous one: an epoch may only commit claims (`claimsRoot`), e.g.
    /// refused ones awaiting a verdict, and still has to be posted for the verdict's window to exist. It
    /// may be zero only when nothing is charged (no account has earned anything yet, or every earner was
    /// left out); an epoch that charges must pay someone. `claimsRoot` is zero when the epoch commits no
    /// claim: no digest can be proven against it.
    function postRoot(
        uint64 epoch,
        bytes32 root,
        bytes32 claimsRoot,
        uint256 totalCumulative,
        JobCharge[] calldata charges
    ) external onlyRole(POSTER_ROLE) nonReentrant {
        uint64 expected = epochCount + 1;
        if (epoch != expected) revert WrongEpoch(expected);
        if (root == bytes32(0) && charges.length > 0) revert ZeroRoot();
        uint256 sum = 0;
        for (uint256 i = 0; i < charges.length; ++i) {
            sum += charges[i].amount;
        }
        uint256 expectedTotal = epochs[epoch - 1].totalCumulative + sum;
        if (totalCumulative != expectedTotal) revert TotalMismatch(expectedTotal);

        uint64 postedAt = uint64(block.timestamp);
        uint64 claimableAt = postedAt + challengeWindow;
        epochCount = epoch;
        epochs[epoch] = Epoch(root, totalCumulative, postedAt, claimableAt, claimsRoot);
        emit RootPosted(epoch, root, totalCumulative, claimableAt);

        for (uint256 i = 0; i < charges.length; ++i) {
            escrow.charge(charges[i].specHash, charges[i].requester, charges[i].amount);
        }
    }

    /// @notice Pays `account` the difference between its cumulative amount in `epoch`'s tree and what it
    /// was already paid. Anyone may submit (a relayer, a friend paying gas) because the tokens can only
    /// ever go to the leaf's account.
    function claim(uint64 epoch, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        nonReentrant
        returns (uint256 paid)
    {
        if (epoch == 0 || epoch > epochCount) revert UnknownEpoch(epoch);
        Epoch storage e = epochs[epoch];
        if (block.timestamp < e.claimableAt) revert RootNotClaimable(e.claimableAt);
        uint64 frozen = frozenAt[account];
        if (frozen != 0 && e.claimableAt > frozen) revert RewardsFrozen(account);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, e.root, leaf)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim();
        paid = cumulativeAmount - already;
        claimed[account] = cumulativeAmount;
        emit Claimed(account, epoch, paid, cumulativeAmount);
        token.safeTransfer(account, paid);
    }

    /// @notice Sends a frozen account's rewards in `epoch`'s tree that it was never paid to the treasury,
    /// and counts them as claimed, so they neither stay here forever nor can be claimed later. Only for an
    /// epoch that is frozen for the account (claimable after the freeze) and only once its window is
    /// over, so that every verdict about it has landed.
    ///
    /// Only the poster may sweep: the account may still be owed the leaf of a root that was claimable
    /// before the freeze, and a cumulative leaf of a frozen epoch includes that part. The contract cannot
    /// tell the two apart, so the coordinator first claims the account's last unfrozen leaf for it (claims
    /// are open to anyone and pay the account) and then sweeps the rest. This trusts the poster no more
    /// than posting does: it could as well have left the account out of the tree.
    function sweepFrozen(uint64 epoch, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        onlyRole(POSTER_ROLE)
        nonReentrant
        returns (uint256 swept)
    {
        uint64 frozen = frozenAt[account];
        if (frozen == 0) revert NotFrozen(account);
        if (epoch == 0 || epoch > epochCount) revert UnknownEpoch(epoch);
        Epoch storage e = epochs[epoch];
        if (e.claimableAt <= frozen) revert EpochNotFrozen(epoch, account);
        if (block.timestamp < e.claimableAt) revert RootNotClaimable(e.claimableAt);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, e.root, leaf)) revert InvalidProof();
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim();
        swept = cumulativeAmount - already;
        claimed[account] = cumulativeAmount;
        emit FrozenSwept(account, epoch, swept, cumulativeAmount);
        token.safeTransfer(treasury, swept);
    }

    /// @notice Freezes every reward of `account` in a root that is not claimable yet, the disputed one
    /// included; roots that were already claimable stay claimable, since the challenge window for them
    /// has passed. The first freeze sticks: a later one would only unfreeze epochs in between. What the
    /// freeze withholds goes to the treasury through `sweepFrozen`.
    function freeze(address account) external onlyRole(FREEZER_ROLE) {
        if (frozenAt[account] != 0) return;
        uint64 frozenTime = uint64(block.timestamp);
        frozenAt[account] = frozenTime;
        emit Frozen(account, frozenTime);
    }
}
