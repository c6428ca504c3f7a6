import type { EventEmitter } from 'node:events'
import type { Address } from 'viem'
import type { ClaimDomainParams, Hash, JobPayment, JobSpec } from '../src/protocol/index.ts'
import type { BlobStore } from './blobs.ts'
import type { Aggregator } from './aggregation/aggregator.ts'
import type { Database } from './db.ts'
import type { JobRuntimes } from './jobRuntime.ts'
import type { KeyedMutex } from './mutex.ts'
import type { ReplicaLocks } from './replicaLocks.ts'
import type { Referee } from './verification/referee.ts'

/**
 * What the jobs logic needs from settlement, kept behind an interface so jobs and rounds run the same
 * with or without a chain. A job whose spec has payment terms gets no units until `leaseBlocker` says so.
 */
export interface JobPayments {
  /** Why no unit of this round may be issued now (no deposit yet, budget used up), or null. */
  leaseBlocker(job: { id: Hash; spec: JobSpec; round: number }): Promise<string | null>
  /** The escrow and earnings of a paid job, null for a volunteer job. */
  describe(job: { id: Hash; spec: JobSpec; round: number }): Promise<JobPayment | null>
}

/** Stake an address holds in StakeManager (active + pending), as the chain says. */
export interface StakeOracle {
  stakeOf(address: Address): Promise<bigint>
  /** An amount of the staking token as a person reads it, e.g. `40 TTT`. */
  formatAmount(amount: bigint): string
  /** The share of a stake one slash takes, in basis points (DisputeResolver's `slashBps`). */
  slashBps(): Promise<number>
}

/** Everything the jobs modules share: the store, the clock, randomness, the referee, settlement hooks. */
export interface JobContext {
  db: Database
  blobs: BlobStore
  runtimes: JobRuntimes
  domain: ClaimDomainParams
  now: () => number
  /** Uniform in [0, 1): decides which units are checked. Unpredictable by default (crypto). */
  random: () => number
  log: (message: string) => void
  events: EventEmitter
  /** Serialises a job's round closes and rebuilds. */
  roundLock: KeyedMutex
  /** Locks shared with the other coordinator processes on the same PostgreSQL; absent on the embedded store. */
  locks?: ReplicaLocks
  /** Computes round closes off the event loop (a worker thread by default). */
  aggregator: Aggregator
  payments?: JobPayments
  stakes?: StakeOracle
  /** Computes units itself for canaries and disagreements; without one, those checks wait. */
  referee?: Referee
}
