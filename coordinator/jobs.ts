import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { getAddress, isAddress, type Address } from 'viem'
import {
  decodeTensorList,
  jobSpecHash,
  MAX_CLAIM_JSON_BYTES,
  parseJobSpec,
  sameShapes,
  verificationPolicy,
  type ClaimDomainParams,
  type Hash,
  type JobDetail,
  type JobProgress,
  type JobSummary,
  type LeaseReleaseResult,
  type LeaseResponse,
  type ReputationView,
  type SubmitResult,
  type UnitRecord,
} from '../src/protocol/index.ts'
import { evaluateModel } from '../src/training/evaluate.ts'
import { setModelWeights } from '../src/training/model.ts'
import { threadAggregator, type Aggregator } from './aggregation/aggregator.ts'
import type { BlobStore } from './blobs.ts'
import type { JobContext, JobPayments, StakeOracle } from './context.ts'
import type { Database } from './db.ts'
import { CoordinatorError } from './errors.ts'
import { JobRuntimes } from './jobRuntime.ts'
import { leaseUnit, releaseLease } from './leasing.ts'
import { KeyedMutex } from './mutex.ts'
import { ReplicaRoundMutex, type ReplicaLocks } from './replicaLocks.ts'
import { isUnderCheck, jobProgress, jobSummary, unitRecord } from './queries.ts'
import { closeRound, rebuildDirtyRounds } from './rounds.ts'
import { attemptRow, jobRow, type JobRow } from './rows.ts'
import { submitAnswer } from './submissions.ts'
import { verificationTick } from './verification/checks.ts'
import type { Referee } from './verification/referee.ts'
import { readReputation, reputationView } from './verification/reputation.ts'

export type { JobPayments, StakeOracle } from './context.ts'

export interface JobServiceOptions {
  db: Database
  blobs: BlobStore
  domain: ClaimDomainParams
  /** Settlement; without it, jobs with payment terms wait forever for a deposit nobody can see. */
  payments?: JobPayments
  /** Stake per address; without it every address counts as unstaked (checked at the initial rate). */
  stakes?: StakeOracle
  /** The coordinator's own re-execution, for canaries and disagreements. */
  referee?: Referee
  /** Where round closes are computed; a worker thread shared by the process by default. */
  aggregator?: Aggregator
  /** Shared with other coordinator processes on the same PostgreSQL: round closes and referee runs happen once among them. */
  locks?: ReplicaLocks
  /** Milliseconds since the epoch; injectable so tests can expire leases without sleeping. */
  now?: () => number
  /** Uniform in [0, 1), deciding which units are checked; crypto-random unless a test fixes it. */
  random?: () => number
  log?: (message: string) => void
}

/** 48 random bits as a fraction in [0, 1): plenty for sampling rates down to 1 in 20. */
const cryptoRandom = () => randomBytes(6).readUIntBE(0, 6) / 2 ** 48

/**
 * Jobs, leases, claims, checks and rounds: the coordinator's logic, independent of HTTP. The parts live in
 * their own modules (leasing, submission checks, rounds, verification, queries); this class wires them
 * to one context. Every method checks everything before it writes, so a refused request leaves the store
 * as it was.
 */
export class JobService {
  readonly events = new EventEmitter()
  private readonly ctx: JobContext

  constructor(readonly options: JobServiceOptions) {
    this.ctx = {
      db: options.db,
      blobs: options.blobs,
      runtimes: new JobRuntimes(options.blobs),
      domain: options.domain,
      now: options.now ?? Date.now,
      random: options.random ?? cryptoRandom,
      log: options.log ?? (() => {}),
      events: this.events,
      roundLock: options.locks ? new ReplicaRoundMutex(options.locks) : new KeyedMutex(),
      locks: options.locks,
      aggregator: options.aggregator ?? threadAggregator(),
      payments: options.payments,
      stakes: options.stakes,
      referee: options.referee,
    }
  }

  get domain(): ClaimDomainParams {
    return this.options.domain
  }

  /**
   * Creates a job from a spec whose referenced blobs are given (initial weights, data shards), unless a
   * job with the same spec hash exists. Returns the job id. `origin`: a built-in preset, or a requester's
   * job (coordinator/jobCreation.ts), for the jobs list.
   */
  async createJob(specInput: unknown, blobs: Iterable<Uint8Array>, origin: 'preset' | 'upload' = 'preset'): Promise<Hash> {
    const { db } = this.ctx
    const spec = parseJobSpec(specInput)
    const id = jobSpecHash(spec)
    if ((await db.query(`SELECT 1 FROM jobs WHERE id = $1`, [id])).length > 0) return id
    for (const bytes of blobs) await this.ctx.blobs.put(bytes)
    const referenced = [spec.model.initialWeights, spec.data.train.images, spec.data.train.labels, spec.data.heldOut.images, spec.data.heldOut.labels]
    for (const hash of referenced) {
      if (!(await this.ctx.blobs.has(hash))) throw new CoordinatorError('blob_not_found', `job spec references blob ${hash}, which was not provided`)
    }
    const runtime = await this.ctx.runtimes.get(id, spec)
    const initial = decodeTensorList(await this.ctx.blobs.get(spec.model.initialWeights))
    if (!sameShapes(initial.shapes, runtime.shapes)) {
      throw new CoordinatorError('wrong_shapes', `initial weights ${JSON.stringify(initial.shapes)} do not fit the model ${JSON.stringify(runtime.shapes)}`)
    }
    setModelWeights(runtime.model, initial)
    const evaluation = await evaluateModel(runtime.model, spec, runtime.heldOut)
    await db.transaction(async (tx) => {
      const inserted = await tx.query(
        `INSERT INTO jobs (id, spec, round, checkpoint, initial_loss, initial_accuracy, created_at, origin)
         VALUES ($1, $2, 0, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING id`,
        [id, JSON.stringify(spec), spec.model.initialWeights, evaluation.loss, evaluation.accuracy, this.ctx.now(), origin],
      )
      if (inserted.length > 0) {
        await tx.query(`INSERT INTO units (job_id, round, unit) SELECT $1, 0, g FROM generate_series(0, $2 - 1) AS g ON CONFLICT DO NOTHING`, [
          id,
          spec.training.unitsPerRound,
        ])
      }
    })
    this.ctx.log(`job ${id.slice(0, 10)} "${spec.name}": held-out accuracy ${(evaluation.accuracy * 100).toFixed(1)}% before training`)
    return id
  }

  async listJobs(): Promise<JobSummary[]> {
    const rows = await this.ctx.db.query<JobRow>(`SELECT * FROM jobs ORDER BY created_at, id`)
    return Promise.all(rows.map((row) => jobSummary(this.ctx, row)))
  }

  async getJob(jobId: string): Promise<JobDetail> {
    const row = await jobRow(this.ctx.db, jobId)
    return { ...(await jobSummary(this.ctx, row)), spec: row.spec }
  }

  /**
   * Leases a unit of the job's current round to `contributorInput`, an address the caller has already
   * authenticated (the HTTP edge checks the signed lease request: coordinator/verification/identity.ts).
   * `referrer` is the site the signed request names (a widget's host), recorded with the attempt;
   * `innerSteps` the H it asks for (clamped to the job's bounds, leasing.ts).
   */
  async lease(jobId: string, contributorInput: unknown, referrer: Address | null = null, innerSteps: number | null = null): Promise<LeaseResponse> {
    if (typeof contributorInput !== 'string' || !isAddress(contributorInput, { strict: false })) {
      throw new CoordinatorError('malformed_request', 'contributor must be a 20-byte hex address')
    }
    return leaseUnit(this.ctx, jobId, getAddress(contributorInput), referrer, innerSteps)
  }

  /** Hands a live lease back: its unit is leasable again at once, and nothing counts against the holder. */
  release(leaseId: string): Promise<LeaseReleaseResult> {
    return releaseLease(this.ctx, leaseId)
  }

  /**
   * Checks a signed claim and its update; records it only if every check passes. A primary is then
   * sampled for a check; a check's answer is compared at once.
   */
  submit(leaseId: string, body: Uint8Array): Promise<SubmitResult> {
    return submitAnswer(this.ctx, leaseId, body)
  }

  /** Aggregates a round if it is complete (every unit answered, every check settled). */
  async closeRound(jobId: Hash, round: number | 'current'): Promise<void> {
    await closeRound(this.ctx, jobId, round)
  }

  unitRecord(jobId: string, round: unknown, unit: unknown): Promise<UnitRecord> {
    return unitRecord(this.ctx, jobId, round, unit)
  }

  progress(jobId: string): Promise<JobProgress> {
    return jobProgress(this.ctx, jobId)
  }

  /** An address's record with the checks, under the default policy. */
  async reputation(address: string): Promise<ReputationView> {
    if (!isAddress(address, { strict: false })) throw new CoordinatorError('malformed_request', `${address} is not a 20-byte hex address`)
    return reputationView(await readReputation(this.ctx.db, address))
  }

  /** True for a blob no endpoint may serve yet: the answer of a unit under check. */
  isUnderCheck(hash: string): Promise<boolean> {
    return isUnderCheck(this.ctx, hash)
  }

  /** Checks nobody took go to the referee, interrupted referee runs resume, settled rounds close. */
  async tick(): Promise<void> {
    await verificationTick(this.ctx)
    const active = await this.ctx.db.query<{ id: Hash; round: number }>(`SELECT id, round FROM jobs WHERE status = 'active'`)
    for (const job of active) await closeRound(this.ctx, job.id, job.round)
  }

  /**
   * At start-up: finish rebuilds a crash cut off, and close any round that completed before a crash cut
   * its aggregation.
   */
  async recover(): Promise<void> {
    const jobs = await this.ctx.db.query<{ id: Hash; round: number }>(`SELECT id, round FROM jobs`)
    for (const job of jobs) {
      await rebuildDirtyRounds(this.ctx, job.id)
      if (await closeRound(this.ctx, job.id, job.round)) this.ctx.log(`recovered: closed round ${job.round} of job ${job.id.slice(0, 10)}`)
    }
  }

  /**
   * Largest submission body a lease can legitimately carry: its job's full update plus the claim. Unknown
   * leases get null; the submission itself then reports what is wrong.
   */
  async maxSubmissionBytes(leaseId: string): Promise<number | null> {
    const attempt = await attemptRow(this.ctx.db, leaseId)
    if (!attempt) return null
    const job = await jobRow(this.ctx.db, attempt.job_id)
    return 8 + MAX_CLAIM_JSON_BYTES + (await this.ctx.runtimes.get(job.id, job.spec)).updateBytes
  }

  /** The verification policy a job runs under (its spec's, or the defaults). */
  async policy(jobId: string) {
    return verificationPolicy((await jobRow(this.ctx.db, jobId)).spec)
  }
}
