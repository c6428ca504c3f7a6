import type { Address, Hex } from 'viem'
import type { Amount } from './amount.ts'
import type { ChainInfo } from './chain.ts'
import type { Hash } from './hash.ts'
import type { JobSpec } from './jobSpec.ts'
import type { RewardProofRecord } from './rewards.ts'
import type { WorkUnit } from './unit.ts'

/** Shapes of the coordinator's HTTP answers; the client and the pages read these, the service writes them. */

export interface CoordinatorInfo {
  /** EIP-712 domain every claim and lease request is signed under. */
  chainId: number
  /**
   * Names this coordinator (its store, shared by replicas): the `audience` of every lease request, so a
   * request signed for one coordinator is refused by another on the same chain.
   */
  coordinatorId: string
  verifyingContract: Address
  version: string
  /** Where settlement happens; null when the coordinator runs without a chain (volunteer jobs only). */
  chain: ChainInfo | null
  /** Seconds between reward epochs (each posts one cumulative Merkle root). */
  epochSeconds: number | null
}

/**
 * - `active`: units are issued.
 * - `paused` (by its owner): no new unit is issued; leased ones may still be answered until their lease ends.
 * - `cancelled` (by its owner, for good): as paused, and once nothing is in flight and the last epoch has
 *   charged what contributors earned, the coordinator closes the escrow so the requester can refund the rest.
 * - `finished`: every round closed.
 */
export type JobStatus = 'active' | 'paused' | 'cancelled' | 'finished'

export interface JobSummary {
  id: Hash
  name: string
  status: JobStatus
  round: number
  rounds: number
  checkpoint: Hash
  createdAt: number
  /** When an owner last paused, resumed or cancelled the job (ms); null if never. */
  statusChangedAt: number | null
  /** Escrow and earnings of a paid job; null for a volunteer job (no payment terms in its spec). */
  payment: JobPayment | null
}

/**
 * - `awaiting_deposit`: the escrow on-chain holds less than the spec's budget; no units are issued.
 * - `funded`: units are issued while the rest of the escrow can pay for them.
 * - `closed`: the job ended (finished, or cancelled by its owner) and the coordinator closed its escrow, or the
 *   requester already took the rest back; `refundable` says what `JobEscrow.refund` pays now.
 */
export type JobPaymentStatus = 'awaiting_deposit' | 'funded' | 'closed'

export interface JobPayment {
  status: JobPaymentStatus
  pricePerUnit: Amount
  budget: Amount
  /** What the escrow contract holds for the job, as the coordinator last read it. */
  deposited: Amount
  /** Earned by contributors: accepted units × price, never more than the deposit. */
  earned: Amount
  /** Moved from escrow to the reward distributor by posted epoch roots. */
  charged: Amount
  /** deposited − earned: what is left for further units (and what a requester gets back at the end). */
  remaining: Amount
  requester: Address | null
  /** Deposit transactions seen on-chain, oldest first. */
  deposits: Array<{ txHash: Hex; amount: Amount; blockNumber: number }>
  closeTxHash: Hex | null
  /** The owner's own cap on spending (`POST /api/jobs/:id/budget`); null: the whole escrow may be spent. */
  budgetCap: Amount | null
  /** What units may be paid from: the escrow, or the owner's cap if lower. */
  spendable: Amount
  /** What `JobEscrow.refund` pays the requester now: deposited − charged once the escrow is closed, else 0. */
  refundable: Amount
  /** The requester took the rest back (`JobEscrow.refund`). */
  refunded: boolean
}

export interface EpochRecord {
  epoch: number
  root: Hex
  totalCumulative: Amount
  accounts: number
  /** `built`: tree stored, not yet on-chain; `sent`: transaction sent; `posted`: mined. */
  status: 'built' | 'sent' | 'posted'
  txHash: Hex | null
  builtAt: number
  /** Unix seconds from the chain, once posted. */
  postedAt: number | null
  claimableAt: number | null
}

/** An account's rewards as the coordinator knows them; the page adds what the chain says (claimed, balance). */
export interface RewardsView {
  address: Address
  /** Every accepted unit's price, including units not yet in a posted root. */
  earned: Amount
  /** Latest posted root that contains the account (may still be inside its challenge window). */
  latest: RewardProofRecord | null
  /** Latest root containing the account whose challenge window is over at the chain's current time. */
  claimable: RewardProofRecord | null
  /** The chain's time when this was computed (unix seconds): the later of the latest block's and the wall clock. */
  chainTime: number
  /** When the coordinator closes its next epoch (unix seconds); null when epochs are not running. */
  nextEpochAt: number | null
}

export interface FaucetResult {
  address: Address
  /** Transactions sent; empty when the account already had enough. */
  txHashes: Hex[]
  ether: Amount
  tokens: Amount
  /** Staked for the address in StakeManager (topped up to the paid preset's minimum stake), so its claims can be slashed. */
  staked: Amount
}

export interface JobDetail extends JobSummary {
  spec: JobSpec
}

export interface RoundRecord {
  round: number
  /** Checkpoint the round started from (C_r) and the one it produced (C_{r+1}). */
  inputHash: Hash
  outputHash: Hash
  closedAt: number
  /** Mean training loss the contributors reported for their units. */
  trainLoss: number
  heldOutLoss: number
  heldOutAccuracy: number
  units: number
  /** Times this round's checkpoint was recomputed because a unit in it (or before it) was found wrong. */
  rebuilds: number
  /** Updates of this round scaled down to the round's median norm (influence bound, docs/verification.md). */
  clipped: number
}

export interface ContributorRecord {
  address: Address
  acceptedUnits: number
  lastSeen: number
  reputation: ReputationView
}

/**
 * An address's record with the checks, served by `/api/reputation/:address` and shown on the pages. Kept
 * across jobs: a fresh address is checked most, whatever job it joins.
 */
export interface ReputationView {
  address: Address
  /** Units (primaries and checks) accepted and not rejected. */
  unitsAccepted: number
  checksPassed: number
  checksFailed: number
  /** Accepted units later removed: failed checks, and every unit of an address caught cheating. */
  unitsRejected: number
  /** Clean checks since the last failure: what lowers the check rate. */
  consecutiveClean: number
  /** Leases that ran out without an answer. */
  leasesAbandoned: number
  /** Slashes that landed on-chain. */
  slashes: number
  /** Set once the address was caught: it gets no more units and leaves later reward trees. */
  banned: boolean
  bannedReason: string | null
  /** Chance that its next unit is checked under the default policy, with stake at risk. */
  checkRate: number
}

/** What verification did in one job, for the job page. */
export interface JobVerificationSummary {
  /** Units re-executed by another address or by the coordinator, settled. */
  checksPassed: number
  checksFailed: number
  /** Checks waiting for their answer (their units' outputs are not served until then). */
  checksPending: number
  /** Units the coordinator computed itself (canaries and referee runs). */
  refereeRuns: number
  unitsRejected: number
  /** Rounds whose checkpoint was recomputed without rejected work. */
  roundsRebuilt: number[]
  /** Addresses caught cheating in this job. */
  banned: Address[]
}

export interface JobProgress {
  jobId: Hash
  status: JobStatus
  round: number
  rounds: number
  unitsPerRound: number
  /** Settled answers waiting for the current round's close. */
  acceptedThisRound: number
  /**
   * Answers that close the current round: K for a synchronous job; max(K, live contributors) for an
   * asynchronous one, whose rounds follow the pool.
   */
  roundSize: number
  /** The job's rounds follow its live pool (spec.training.maxStaleness ≥ 1). */
  asynchronous: boolean
  acceptedUnits: number
  checkpoint: Hash
  /** Held-out metrics of the initial checkpoint (round 0 before any training). */
  initial: { heldOutLoss: number; heldOutAccuracy: number } | null
  history: RoundRecord[]
  contributors: ContributorRecord[]
  verification: JobVerificationSummary
}

/** One unit as the coordinator knows it: what a verifier re-runs and compares against. */
export interface UnitRecord {
  unit: WorkUnit
  /**
   * `checking`: an answer is in and is being re-executed; its hash is not served until the check settles.
   * `rejected`: the answer in a closed round was found wrong (or dropped with its contributor's other
   * unverified work) and the round rebuilt without it; its hash is served as evidence.
   */
  status: 'open' | 'leased' | 'checking' | 'accepted' | 'rejected'
  /** The accepted update's hash and who claimed it, once accepted and its check (if any) settled. */
  outputHash: Hash | null
  contributor: Address | null
  deviceClass: string | null
}

export interface SubmitResult {
  accepted: true
  round: number
  unit: number
  roundClosed: boolean
}

/** `POST /api/leases/:leaseId/release`: the lease was handed back and its unit is leasable again. */
export interface LeaseReleaseResult {
  released: true
  round: number
  unit: number
}

/** Body of every 4xx/5xx answer. `code` is stable for programs, `message` says what was wrong. */
export interface ApiErrorBody {
  error: string
  code: string
  message: string
}

/** Messages on the job's WebSocket. */
export type LiveMessage = { type: 'progress'; progress: JobProgress }

/** Answer of `POST /api/jobs`: 201 when the job was created, 200 (`created: false`) when that spec already existed. */
export interface CreatedJob {
  jobId: Hash
  spec: JobSpec
  created: boolean
}
