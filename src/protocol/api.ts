import type { Address } from 'viem'
import type { Hash } from './hash.ts'
import type { JobSpec } from './jobSpec.ts'

/** Shapes of the coordinator's HTTP answers; the client and the pages read these, the service writes them. */

export interface CoordinatorInfo {
  /** EIP-712 domain every claim is signed under. */
  chainId: number
  verifyingContract: Address
  version: string
}

export type JobStatus = 'active' | 'finished'

export interface JobSummary {
  id: Hash
  name: string
  status: JobStatus
  round: number
  rounds: number
  checkpoint: Hash
  createdAt: number
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
}

export interface ContributorRecord {
  address: Address
  acceptedUnits: number
  lastSeen: number
}

export interface JobProgress {
  jobId: Hash
  status: JobStatus
  round: number
  rounds: number
  unitsPerRound: number
  acceptedThisRound: number
  acceptedUnits: number
  checkpoint: Hash
  /** Held-out metrics of the initial checkpoint (round 0 before any training). */
  initial: { heldOutLoss: number; heldOutAccuracy: number } | null
  history: RoundRecord[]
  contributors: ContributorRecord[]
}

export interface SubmitResult {
  accepted: true
  round: number
  unit: number
  roundClosed: boolean
}

/** Body of every 4xx/5xx answer. `code` is stable for programs, `message` says what was wrong. */
export interface ApiErrorBody {
  error: string
  code: string
  message: string
}

/** Messages on the job's WebSocket. */
export type LiveMessage = { type: 'progress'; progress: JobProgress }
