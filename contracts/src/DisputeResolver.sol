// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {StakeManager} from "./StakeManager.sol";
import {RewardDistributor} from "./RewardDistributor.sol";

/// @title Dispute resolver
/// @notice Turns evidence against a contributor's signed WorkClaims into a slash of their stake and a
/// freeze of their unclaimed rewards. It is the `verifyingContract` of the claim's EIP-712 domain, so a
/// claim signed for another deployment or another chain never verifies here.
///
/// Two kinds of evidence:
/// - double signing, which anyone can submit: two claims by the same contributor for the same unit and
///   input, in the same device class, with different outputs. Training in one device class is
///   deterministic for a given input, so this cannot happen honestly, and it needs no trust in anyone.
/// - a referee verdict: the coordinator re-executed the unit and got a different output. This trusts the
///   referee, so it is limited to the challenge window of the epoch whose claimsRoot committed the claim.
///
/// Both kinds punish the same fault, a wrong answer for one unit: evidence is keyed by
/// (contributor, job, round, unit, input), so whichever path comes first slashes and the other reverts.
contract DisputeResolver is EIP712, AccessControl {
    bytes32 public constant REFEREE_ROLE = keccak256("REFEREE_ROLE");
    uint16 internal constant BPS = 10_000;

    // Must match workClaimTypes in src/protocol/claim.ts field for field.
    bytes32 public constant WORK_CLAIM_TYPEHASH = keccak256(
        "WorkClaim(bytes32 jobId,uint32 round,uint32 unit,bytes32 inputHash,bytes32 outputHash,address contributor,string deviceClass)"
    );

    struct WorkClaim {
        bytes32 jobId;
        uint32 round;
        uint32 unit;
        bytes32 inputHash;
        bytes32 outputHash;
        address contributor;
        string deviceClass;
    }

    StakeManager public immutable stakes;
    RewardDistributor public immutable distributor;
    uint16 public immutable slashBps;
    uint16 public immutable reporterBps;

    mapping(bytes32 key => bool) public evidenceUsed;

    event DoubleSignSlashed(
        address indexed contributor, bytes32 indexed jobId, uint32 round, uint32 unit, address reporter, uint256 slashed
    );
    event VerdictSlashed(
        address indexed contributor,
        bytes32 indexed jobId,
        uint64 epoch,
        bytes32 claimDigest,
        address reporter,
        uint256 slashed
    );

    error ZeroAddress();
    error InvalidBps(uint16 bps);
    error NotConflicting();
    error SignerMismatch(address recovered);
    error EvidenceAlreadyUsed(bytes32 key);
    error VerdictAgreesWithClaim();
    error OutsideChallengeWindow(uint64 claimableAt);
    error UnknownEpoch(uint64 epoch);
    error ClaimNotInEpoch(uint64 epoch, bytes32 claimDigest);

    constructor(StakeManager stakes_, RewardDistributor distributor_, address admin, uint16 slashBps_, uint16 reporterBps_)
        EIP712("TabTrain", "1")
    {
        if (address(stakes_) == address(0) || address(distributor_) == address(0) || admin == address(0)) {
            revert ZeroAddress();
        }
        if (slashBps_ > BPS) revert InvalidBps(slashBps_);
        if (reporterBps_ > BPS) revert InvalidBps(reporterBps_);
        stakes = stakes_;
        distributor = distributor_;
        slashBps = slashBps_;
        reporterBps = reporterBps_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    function claimDigest(WorkClaim calldata claim) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    WORK_CLAIM_TYPEHASH,
                    claim.jobId,
                    claim.round,
                    claim.unit,
                    claim.inputHash,
                    claim.outputHash,
                    claim.contributor,
                    keccak256(bytes(claim.deviceClass))
                )
            )
        );
    }

    /// @notice Slashes a contributor who signed two different outputs for the same unit and input in the
    /// same device class. The caller is the reporter. The device classes must match: in the default
    /// kernel bundle, two honest claims from different device classes (another backend, another GPU) may
    /// legitimately differ in their last bits, and honest contributors are never punished. One slash per
    /// (contributor, unit, input), whichever pair of conflicting claims is shown and in whichever order,
    /// and none if a referee verdict already slashed that unit.
    function slashDoubleSign(
        WorkClaim calldata a,
        bytes calldata signatureA,
        WorkClaim calldata b,
        bytes calldata signatureB
    ) external returns (uint256 slashed) {
        if (
            a.contributor != b.contributor || a.jobId != b.jobId || a.round != b.round || a.unit != b.unit
                || a.inputHash != b.inputHash || a.outputHash == b.outputHash
                || keccak256(bytes(a.deviceClass)) != keccak256(bytes(b.deviceClass))
        ) revert NotConflicting();
        _requireSigner(a, signatureA);
        _requireSigner(b, signatureB);
        _useEvidence(_faultKey(a));
        slashed = _punish(a.contributor, msg.sender);
        emit DoubleSignSlashed(a.contributor, a.jobId, a.round, a.unit, msg.sender, slashed);
    }

    /// @notice Records the referee's re-execution of a claimed unit that disagrees with the claim.
    /// `epoch` must be a posted epoch whose claimsRoot commits the claim's digest (`claimProof`), and the
    /// verdict must land before that epoch is claimable: the coordinator commits every claim it settles,
    /// paid or refused, in the epoch that settles it, so the window follows from the chain's record, not
    /// from the caller (naming a far-future or unposted epoch would otherwise reopen a window closed long
    /// ago). `reporter` gets the reporter share (zero address: all to the treasury). One slash per
    /// (contributor, unit, input), shared with double-sign evidence.
    function postVerdict(
        WorkClaim calldata claim,
        bytes calldata signature,
        uint64 epoch,
        bytes32[] calldata claimProof,
        bytes32 refereeOutputHash,
        address reporter
    ) external onlyRole(REFEREE_ROLE) returns (uint256 slashed) {
        bytes32 digest = _requireSigner(claim, signature);
        if (refereeOutputHash == claim.outputHash) revert VerdictAgreesWithClaim();
        _requireCommitted(epoch, digest, claimProof);
        _useEvidence(_faultKey(claim));
        slashed = _punish(claim.contributor, reporter);
        emit VerdictSlashed(claim.contributor, claim.jobId, epoch, digest, reporter, slashed);
    }

    /// @dev The claim's digest is a leaf of `epoch`'s claimsRoot (OpenZeppelin StandardMerkleTree, leaf
    /// encoding `bytes32`) and that epoch's challenge window is still open.
    function _requireCommitted(uint64 epoch, bytes32 digest, bytes32[] calldata claimProof) private view {
        if (epoch == 0 || epoch > distributor.epochCount()) revert UnknownEpoch(epoch);
        (,,, uint64 claimableAt, bytes32 claimsRoot) = distributor.epochs(epoch);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(digest))));
        if (!MerkleProof.verifyCalldata(claimProof, claimsRoot, leaf)) revert ClaimNotInEpoch(epoch, digest);
        if (block.timestamp >= claimableAt) revert OutsideChallengeWindow(claimableAt);
    }

    /// @dev One fault, one key: a wrong answer by `contributor` for one unit of one input, however it is proven.
    function _faultKey(WorkClaim calldata claim) private pure returns (bytes32) {
        return keccak256(abi.encode(claim.contributor, claim.jobId, claim.round, claim.unit, claim.inputHash));
    }

    function _requireSigner(WorkClaim calldata claim, bytes calldata signature) private view returns (bytes32 digest) {
        digest = claimDigest(claim);
        // Reverts on malformed and high-s signatures, so a malleated copy is never a second signature.
        address recovered = ECDSA.recover(digest, signature);
        if (recovered != claim.contributor) revert SignerMismatch(recovered);
    }

    function _useEvidence(bytes32 key) private {
        if (evidenceUsed[key]) revert EvidenceAlreadyUsed(key);
        evidenceUsed[key] = true;
    }

    function _punish(address contributor, address reporter) private returns (uint256 slashed) {
        slashed = stakes.slash(contributor, slashBps, reporter, reporterBps);
        distributor.freeze(contributor);
    }
}
