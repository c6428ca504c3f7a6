import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { getAddress, isAddress, type Address } from 'viem'
import {
  decodeSubmission,
  decodeTensorList,
  examplesPerUnit,
  jobSpecHash,
  MAX_CLAIM_JSON_BYTES,
  parseJobSpec,
  recoverClaimSigner,
  sameShapes,
  SubmissionFormatError,
  verificationPolicy,
  workClaimDigest,
  type ClaimDomainParams,
  type Hash,
  type JobDetail,
  type JobProgress,
  type JobSummary,
  type LeaseResponse,
  type ReputationView,
  type SubmitResult,
  type UnitRecord,
} from '../src/protocol/index.ts'
import { evaluateModel } from '../src/training/evaluate.ts'
import { setModelWeights } from '../src/training/model.ts'
import type { BlobStore } from './blobs.ts'
import type { JobContext, JobPayments, StakeOracle } from './context.ts'
import type { Database } from './db.ts'
import { CoordinatorError } from './errors.ts'
import { JobRuntimes } from './jobRuntime.ts'
import { leaseUnit } from './leasing.ts'
import { KeyedMutex } from './mutex.ts'
import { isUnderCheck, jobProgress, jobSummary, unitRecord } from './queries.ts'
import { closeRound, rebuildDirtyRounds } from './rounds.ts'
import { attemptRow, jobRow, type JobRow } from './rows.ts'
import { checkSubmission } from './submissionChecks.ts'
import { decideCheck, detectDoubleSigning, runReferee, settlePeerCheck, verificationTick } from './verification/checks.ts'
import type { Referee } from './verification/referee.ts'
import { readReputation, recordReputation, reputationView } from './verification/reputation.ts'

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
      roundLock: new KeyedMutex(),
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
   * job with the same spec hash exists. Returns the job id.
   */
  async createJob(specInput: unknown, blobs: Iterable<Uint8Array>): Promise<Hash> {
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
        `INSERT INTO jobs (id, spec, round, checkpoint, initial_loss, initial_accuracy, created_at)
         VALUES ($1, $2, 0, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING id`,
        [id, JSON.stringify(spec), spec.model.initialWeights, evaluation.loss, evaluation.accuracy, this.ctx.now()],
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
   */
  async lease(jobId: string, contributorInput: unknown): Promise<LeaseResponse> {
    if (typeof contributorInput !== 'string' || !isAddress(contributorInput, { strict: false })) {
      throw new CoordinatorError('malformed_request', 'contributor must be a 20-byte hex address')
    }
    return leaseUnit(this.ctx, jobId, getAddress(contributorInput))
  }

  /**
   * Checks a signed claim and its update; records it only if every check passes. A primary is then
   * sampled for a check; a check's answer is compared at once.
   */
  async submit(leaseId: string, body: Uint8Array): Promise<SubmitResult> {
    const { db } = this.ctx
    let decoded: ReturnType<typeof decodeSubmission>
    try {
      decoded = decodeSubmission(body)
    } catch (error) {
      if (error instanceof SubmissionFormatError) throw new CoordinatorError('malformed_submission', error.message)
      throw error
    }
    const { signed, update } = decoded
    const signer = await recoverClaimSigner(signed, this.domain)
    const attempt = signer === signed.claim.contributor ? await attemptRow(db, leaseId) : null
    const job = attempt ? await jobRow(db, attempt.job_id) : null
    const runtime = job ? await this.ctx.runtimes.get(job.id, job.spec) : null
    let checked: ReturnType<typeof checkSubmission>
    try {
      checked = checkSubmission({
        leaseId,
        signed,
        update,
        signer,
        attempt,
        job: job ?? { id: signed.claim.jobId, round: signed.claim.round, checkpoint: signed.claim.inputHash },
        shapes: runtime?.shapes ?? [],
        now: this.ctx.now(),
      })
    } catch (error) {
      // Only once the unit went to someone else (or the round moved on): a lease merely past its time may
      // still be answered in time by a retry that the clock of a test, or a slow proxy, lets through.
      if (error instanceof CoordinatorError && (error.code === 'lease_expired' || error.code === 'stale_round') && attempt && job && attempt.status !== 'leased') {
        await this.keepLateClaim(attempt.lease_id, signed, job.spec.kernelBundle)
      }
      throw error
    }
    const { outputHash } = checked
    const claim = signed.claim
    const spec = job!.spec
    await this.ctx.blobs.put(update, outputHash)
    const now = this.ctx.now()
    const isPrimary = checked.attempt.kind === 'primary'
    const decision = isPrimary ? await decideCheck(this.ctx, spec, claim.contributor) : 'peer'
    const examples = examplesPerUnit(spec.training)
    const trainLoss = Number.isFinite(signed.trainLoss ?? NaN) ? signed.trainLoss! : null
    const accepted = await db.transaction(async (tx) => {
      const rows = await tx.query(
        `UPDATE attempts SET status = 'submitted', output_hash = $2, device_class = $3, claim = $4, signature = $5, claim_digest = $6,
                examples = $7, train_loss = $8, submitted_at = $9, verdict = $10
          WHERE lease_id = $1 AND status = 'leased' AND expires_at > $9
          RETURNING lease_id`,
        [leaseId, outputHash, claim.deviceClass, JSON.stringify(claim), signed.signature, workClaimDigest(claim, this.domain), examples, trainLoss, now,
          decision === 'unchecked' ? 'unchecked' : 'pending'],
      )
      if (rows.length === 0) return null
      if (isPrimary) {
        const units = await tx.query(
          `UPDATE units SET status = 'accepted', output_hash = $2, signature = $3, device_class = $4, examples = $5, train_loss = $6, accepted_at = $7,
                  check_kind = $8, check_status = $9, check_wanted_at = $10
            WHERE lease_id = $1 AND status = 'leased'
            RETURNING unit`,
          [leaseId, outputHash, signed.signature, claim.deviceClass, examples, trainLoss, now,
            decision === 'unchecked' ? null : decision, decision === 'unchecked' ? null : decision === 'peer' ? 'wanted' : 'referee', decision === 'peer' ? now : null],
        )
        if (units.length === 0) throw new CoordinatorError('lease_expired', `lease ${leaseId} no longer holds its unit; the unit went back to the queue`)
        // A counter on the job row rather than a count over the round: the row lock it takes serialises
        // accepts per job, so two concurrent last submissions cannot both miss the round's completion.
        const [counter] = await tx.query(`UPDATE jobs SET accepted_in_round = accepted_in_round + 1 WHERE id = $1 AND round = $2 RETURNING id`, [
          job!.id,
          job!.round,
        ])
        if (!counter) throw new CoordinatorError('stale_round', `round ${job!.round} closed while this claim was being recorded`)
      }
      await recordReputation(tx, claim.contributor, 'accepted', now)
      return true
    })
    if (accepted === null) throw new CoordinatorError('already_submitted', `lease ${leaseId} was settled by a concurrent request`)

    const after = (await attemptRow(db, leaseId))!
    if (await detectDoubleSigning(this.ctx, after)) {
      return { accepted: true, round: claim.round, unit: claim.unit, roundClosed: false }
    }
    if (!isPrimary) await settlePeerCheck(this.ctx, after)
    else if (decision === 'referee') void runReferee(this.ctx, job!.id, claim.round, claim.unit)
    const roundClosed = await closeRound(this.ctx, job!.id, claim.round)
    return { accepted: true, round: claim.round, unit: claim.unit, roundClosed }
  }

  /**
   * A validly signed answer that came too late is still the signer's word on that unit: kept (never paid,
   * never averaged) so that two different answers of one address for one unit are seen as double signing.
   */
  private async keepLateClaim(leaseId: string, signed: ReturnType<typeof decodeSubmission>['signed'], _kernelBundle: string): Promise<void> {
    const { claim } = signed
    const rows = await this.ctx.db.query(
      `UPDATE attempts SET status = 'late', output_hash = $2, device_class = $3, claim = $4, signature = $5, claim_digest = $6, submitted_at = $7
        WHERE lease_id = $1 AND status = 'expired' AND contributor = $8 AND round = $9 AND unit = $10 AND input_hash = $11
        RETURNING lease_id`,
      [leaseId, claim.outputHash, claim.deviceClass, JSON.stringify(claim), signed.signature, workClaimDigest(claim, this.domain), this.ctx.now(),
        claim.contributor, claim.round, claim.unit, claim.inputHash],
    )
    if (rows.length) await detectDoubleSigning(this.ctx, (await attemptRow(this.ctx.db, leaseId))!)
  }

  /** Aggregates a round if it is complete (every unit answered, every check settled). */
  async closeRound(jobId: Hash, round: number): Promise<void> {
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
