import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import * as tf from '@tensorflow/tfjs'
import { getAddress, isAddress, type Address } from 'viem'
import { labelledSetFromIdx, parseIdx, type LabelledSet } from '../src/data/idx.ts'
import {
  TensorBytesError,
  decodeSubmission,
  decodeTensorList,
  examplesPerUnit,
  findNonFinite,
  MAX_CLAIM_JSON_BYTES,
  hashTensorList,
  jobSpecHash,
  parseJobSpec,
  recoverClaimSigner,
  sameShapes,
  sha256Hex,
  SubmissionFormatError,
  type ClaimDomainParams,
  type Hash,
  type JobDetail,
  type JobPayment,
  type JobProgress,
  type JobSpec,
  type JobStatus,
  type JobSummary,
  type LeaseResponse,
  type SubmitResult,
  type TensorList,
  type UnitRecord,
} from '../src/protocol/index.ts'
import { applyAveragedUpdate } from '../src/training/aggregate.ts'
import { evaluateModel } from '../src/training/evaluate.ts'
import { buildModel, setModelWeights } from '../src/training/model.ts'
import type { BlobStore } from './blobs.ts'
import type { Database, Queryable } from './db.ts'
import { CoordinatorError } from './errors.ts'
import { KeyedMutex } from './mutex.ts'

interface JobRow {
  id: Hash
  spec: JobSpec
  status: JobStatus
  round: number
  checkpoint: Hash
  initial_loss: number | null
  initial_accuracy: number | null
  accepted_in_round: number
  created_at: string | number
}

interface UnitRow {
  job_id: Hash
  round: number
  unit: number
  status: 'open' | 'leased' | 'accepted'
  lease_id: string | null
  leased_to: string | null
  lease_expires_at: string | number | null
  output_hash: Hash | null
  examples: number | null
  train_loss: number | null
}

interface LeaseRow {
  id: string
  job_id: Hash
  round: number
  unit: number
  contributor: Address
  expires_at: string | number
}

/**
 * What the jobs logic needs from settlement, kept behind an interface so jobs and rounds run the same
 * with or without a chain. A job whose spec has payment terms gets no units until `leaseBlocker` says so.
 */
export interface JobPayments {
  /** Why no unit of this round may be issued now (no deposit yet, budget used up), or null. */
  leaseBlocker(job: { id: Hash; spec: JobSpec; round: number }): Promise<string | null>
  /** The escrow and earnings of a paid job, null for a volunteer job. */
  describe(job: { id: Hash; spec: JobSpec; round: number; acceptedInRound: number }): Promise<JobPayment | null>
}

/** How soon a contributor asks again while a paid job waits for its escrow. */
const PAYMENT_WAIT_MS = 2000

export interface JobServiceOptions {
  db: Database
  blobs: BlobStore
  domain: ClaimDomainParams
  /** Settlement; without it, jobs with payment terms wait forever for a deposit nobody can see. */
  payments?: JobPayments
  /** Milliseconds since the epoch; injectable so tests can expire leases without sleeping. */
  now?: () => number
  log?: (message: string) => void
}

/** What the coordinator keeps per job in memory: the parsed spec, its model and held-out set for evaluation. */
interface JobRuntime {
  spec: JobSpec
  model: tf.LayersModel
  heldOut: LabelledSet
  shapes: number[][]
  /** Size of a full update in canonical tensor bytes: the bound on every submission's body. */
  updateBytes: number
}

/**
 * How long a contributor should wait before asking again when every unit of the round is out. Units of
 * the presets take seconds, so a round usually closes well before the next lease would expire: ask
 * again soon rather than at the expiry. Pages also wake early on the job's WebSocket push.
 */
const MIN_RETRY_MS = 250
const MAX_RETRY_MS = 1000

/**
 * Jobs, leases, claims and rounds: the coordinator's logic, independent of HTTP. Every method checks
 * everything before it writes, so a refused request leaves the store as it was.
 */
export class JobService {
  readonly events = new EventEmitter()
  private readonly db: Database
  private readonly blobs: BlobStore
  private readonly now: () => number
  private readonly log: (message: string) => void
  private readonly runtimes = new Map<string, Promise<JobRuntime>>()
  private readonly roundLock = new KeyedMutex()

  constructor(readonly options: JobServiceOptions) {
    this.db = options.db
    this.blobs = options.blobs
    this.now = options.now ?? Date.now
    this.log = options.log ?? (() => {})
  }

  get domain(): ClaimDomainParams {
    return this.options.domain
  }

  /**
   * Creates a job from a spec whose referenced blobs are given (initial weights, data shards), unless a
   * job with the same spec hash exists. Returns the job id.
   */
  async createJob(specInput: unknown, blobs: Iterable<Uint8Array>): Promise<Hash> {
    const spec = parseJobSpec(specInput)
    const id = jobSpecHash(spec)
    if ((await this.db.query(`SELECT 1 FROM jobs WHERE id = $1`, [id])).length > 0) return id
    for (const bytes of blobs) await this.blobs.put(bytes)
    const referenced = [spec.model.initialWeights, spec.data.train.images, spec.data.train.labels, spec.data.heldOut.images, spec.data.heldOut.labels]
    for (const hash of referenced) {
      if (!(await this.blobs.has(hash))) throw new CoordinatorError('blob_not_found', `job spec references blob ${hash}, which was not provided`)
    }
    const runtime = await this.runtime(id, spec)
    const initial = decodeTensorList(await this.blobs.get(spec.model.initialWeights))
    if (!sameShapes(initial.shapes, runtime.shapes)) {
      throw new CoordinatorError('wrong_shapes', `initial weights ${JSON.stringify(initial.shapes)} do not fit the model ${JSON.stringify(runtime.shapes)}`)
    }
    setModelWeights(runtime.model, initial)
    const evaluation = await evaluateModel(runtime.model, spec, runtime.heldOut)
    await this.db.transaction(async (tx) => {
      const inserted = await tx.query(
        `INSERT INTO jobs (id, spec, round, checkpoint, initial_loss, initial_accuracy, created_at)
         VALUES ($1, $2, 0, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING id`,
        [id, JSON.stringify(spec), spec.model.initialWeights, evaluation.loss, evaluation.accuracy, this.now()],
      )
      if (inserted.length > 0) await this.openRound(tx, id, 0, spec)
    })
    this.log(`job ${id.slice(0, 10)} "${spec.name}": held-out accuracy ${(evaluation.accuracy * 100).toFixed(1)}% before training`)
    return id
  }

  async listJobs(): Promise<JobSummary[]> {
    const rows = await this.db.query<JobRow>(`SELECT * FROM jobs ORDER BY created_at, id`)
    return Promise.all(rows.map((row) => this.summary(row)))
  }

  async getJob(jobId: string): Promise<JobDetail> {
    const row = await this.jobRow(this.db, jobId)
    return { ...(await this.summary(row)), spec: row.spec }
  }

  private async summary(row: JobRow): Promise<JobSummary> {
    const payment = this.options.payments
      ? await this.options.payments.describe({ id: row.id, spec: row.spec, round: row.round, acceptedInRound: Number(row.accepted_in_round) })
      : null
    return {
      id: row.id,
      name: row.spec.name,
      status: row.status,
      round: row.round,
      rounds: row.spec.training.rounds,
      checkpoint: row.checkpoint,
      createdAt: Number(row.created_at),
      payment,
    }
  }

  /** Leases the lowest open (or expired) unit of the job's current round to `contributor`. */
  async lease(jobId: string, contributorInput: unknown): Promise<LeaseResponse> {
    if (typeof contributorInput !== 'string' || !isAddress(contributorInput, { strict: false })) {
      throw new CoordinatorError('malformed_request', 'contributor must be a 20-byte hex address')
    }
    const contributor = getAddress(contributorInput)
    const job = await this.jobRow(this.db, jobId)
    if (job.status === 'finished') return { status: 'finished' }
    if (job.spec.payment) {
      const blocker = this.options.payments
        ? await this.options.payments.leaseBlocker({ id: job.id, spec: job.spec, round: job.round })
        : 'this coordinator runs without a chain, so a paid job cannot be funded'
      if (blocker) return { status: 'wait', retryAfterMs: PAYMENT_WAIT_MS, reason: blocker }
    }
    const now = this.now()
    const ttlMs = job.spec.training.leaseTtlSeconds * 1000
    const leaseId = randomUUID()
    const leased = await this.db.transaction(async (tx) => {
      // Open units first, in index order, then units whose lease ran out. Two index range scans
      // instead of one OR over the whole round, so a lease costs the same with K = 4 or K = 10,000.
      const take = (condition: string, params: unknown[]) =>
        tx.query<UnitRow>(
          `WITH candidate AS (
             SELECT job_id, round, unit FROM units
              WHERE job_id = $1 AND round = $2 AND ${condition}
              ORDER BY unit LIMIT 1
              FOR UPDATE SKIP LOCKED)
           UPDATE units u SET status = 'leased', lease_id = $3, leased_to = $4, lease_expires_at = $5,
                  leases_issued = u.leases_issued + 1
             FROM candidate c
            WHERE u.job_id = c.job_id AND u.round = c.round AND u.unit = c.unit
           RETURNING u.*`,
          [job.id, job.round, leaseId, contributor, now + ttlMs, ...params],
        )
      let rows = await take(`status = 'open'`, [])
      if (rows.length === 0) rows = await take(`status = 'leased' AND lease_expires_at <= $6`, [now])
      const row = rows[0]
      if (row) {
        await tx.query(
          `INSERT INTO leases (id, job_id, round, unit, contributor, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [leaseId, job.id, row.round, row.unit, contributor, now, now + ttlMs],
        )
      }
      return row
    })
    if (leased) {
      return {
        status: 'leased',
        lease: {
          id: leaseId,
          contributor,
          expiresAt: now + ttlMs,
          unit: { jobId: job.id, round: leased.round, unit: leased.unit, inputHash: job.checkpoint },
        },
      }
    }
    const [next] = await this.db.query<{ next_expiry: string | null; open: string }>(
      `SELECT min(lease_expires_at) FILTER (WHERE status = 'leased') AS next_expiry, count(*) FILTER (WHERE status <> 'accepted') AS open
         FROM units WHERE job_id = $1 AND round = $2`,
      [job.id, job.round],
    )
    if (Number(next?.open ?? 0) === 0) {
      return { status: 'wait', retryAfterMs: MIN_RETRY_MS, reason: `round ${job.round} has all its updates and is being aggregated` }
    }
    const untilExpiry = next?.next_expiry == null ? MAX_RETRY_MS : Number(next.next_expiry) - now
    return {
      status: 'wait',
      retryAfterMs: Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, untilExpiry)),
      reason: `every unit of round ${job.round} is leased; waiting for updates or for a lease to expire`,
    }
  }

  /** Checks a signed claim and its update; records it only if every check passes. */
  async submit(leaseId: string, body: Uint8Array): Promise<SubmitResult> {
    let decoded: ReturnType<typeof decodeSubmission>
    try {
      decoded = decodeSubmission(body)
    } catch (error) {
      if (error instanceof SubmissionFormatError) throw new CoordinatorError('malformed_submission', error.message)
      throw error
    }
    const { signed, update } = decoded
    const { claim } = signed

    const signer = await recoverClaimSigner(signed, this.domain)
    if (signer === null || signer !== claim.contributor) {
      throw new CoordinatorError(
        'bad_signature',
        signer === null
          ? 'the claim signature cannot be recovered'
          : `the claim signature recovers to ${signer}, not to the claimed contributor ${claim.contributor}`,
      )
    }

    const [lease] = await this.db.query<LeaseRow>(`SELECT * FROM leases WHERE id = $1`, [leaseId])
    if (!lease) throw new CoordinatorError('lease_not_found', `no lease ${leaseId}`)
    if (lease.job_id !== claim.jobId || lease.round !== claim.round || lease.unit !== claim.unit) {
      throw new CoordinatorError(
        'claim_mismatch',
        `lease ${leaseId} is for job ${lease.job_id} round ${lease.round} unit ${lease.unit}, the claim names job ${claim.jobId} round ${claim.round} unit ${claim.unit}`,
      )
    }
    if (lease.contributor !== claim.contributor) {
      throw new CoordinatorError('lease_not_yours', `lease ${leaseId} belongs to ${lease.contributor}, not to ${claim.contributor}`)
    }
    const [unit] = await this.db.query<UnitRow>(`SELECT * FROM units WHERE job_id = $1 AND round = $2 AND unit = $3`, [
      lease.job_id,
      lease.round,
      lease.unit,
    ])
    if (unit?.status === 'accepted' && unit.lease_id === leaseId) {
      throw new CoordinatorError('already_submitted', `round ${lease.round} unit ${lease.unit} already has an accepted update for this lease (replayed claim)`)
    }
    const job = await this.jobRow(this.db, claim.jobId)
    if (job.round !== claim.round) {
      throw new CoordinatorError('stale_round', `the claim is for round ${claim.round}, the job is at round ${job.round}`)
    }
    if (!unit || unit.lease_id !== leaseId || unit.status !== 'leased' || Number(lease.expires_at) <= this.now()) {
      throw new CoordinatorError(
        'lease_expired',
        `lease ${leaseId} expired at ${new Date(Number(lease.expires_at)).toISOString()}; the unit went back to the queue`,
      )
    }
    if (claim.inputHash !== job.checkpoint) {
      throw new CoordinatorError('wrong_input', `the claim's input hash ${claim.inputHash} is not round ${job.round}'s checkpoint ${job.checkpoint}`)
    }
    const actualHash = sha256Hex(update)
    if (actualHash !== claim.outputHash) {
      throw new CoordinatorError('hash_mismatch', `the update hashes to ${actualHash}, the claim says ${claim.outputHash}`)
    }
    let tensors: TensorList
    try {
      tensors = decodeTensorList(update)
    } catch (error) {
      if (error instanceof TensorBytesError) throw new CoordinatorError('malformed_submission', `update: ${error.message}`)
      throw error
    }
    const runtime = await this.runtime(job.id, job.spec)
    if (!sameShapes(tensors.shapes, runtime.shapes)) {
      throw new CoordinatorError('wrong_shapes', `update shapes ${JSON.stringify(tensors.shapes)} differ from the model's ${JSON.stringify(runtime.shapes)}`)
    }
    const bad = findNonFinite(tensors)
    if (bad) throw new CoordinatorError('non_finite_update', `update tensor ${bad.tensor} holds ${bad.value} at index ${bad.index}`)

    await this.blobs.put(update, actualHash)
    const examples = examplesPerUnit(job.spec.training)
    const trainLoss = Number.isFinite(signed.trainLoss ?? NaN) ? signed.trainLoss! : null
    const accepted = await this.db.transaction(async (tx) => {
      const rows = await tx.query<{ unit: number }>(
        `UPDATE units SET status = 'accepted', output_hash = $2, signature = $3, device_class = $4,
                examples = $5, train_loss = $6, accepted_at = $7
          WHERE lease_id = $1 AND status = 'leased' AND lease_expires_at > $7
          RETURNING unit`,
        [leaseId, claim.outputHash, signed.signature, claim.deviceClass, examples, trainLoss, this.now()],
      )
      if (rows.length === 0) return null
      // A counter on the job row rather than a count over the round: it costs the same for any K, and
      // the row lock it takes serialises accepts per job. Without that, under READ COMMITTED two
      // concurrent last submissions would each see only their own row, both count fewer than K, and
      // the round would never close.
      const [counter] = await tx.query<{ accepted_in_round: number }>(
        `UPDATE jobs SET accepted_in_round = accepted_in_round + 1 WHERE id = $1 AND round = $2 RETURNING accepted_in_round`,
        [job.id, job.round],
      )
      // The round cannot close without this unit, so this is unreachable unless the store was edited
      // by hand; throwing rolls the unit's acceptance back with the rest.
      if (!counter) throw new CoordinatorError('stale_round', `round ${job.round} closed while this claim was being recorded`)
      return Number(counter.accepted_in_round)
    })
    if (accepted === null) {
      throw new CoordinatorError('already_submitted', `lease ${leaseId} was settled by a concurrent request`)
    }
    const roundComplete = accepted >= job.spec.training.unitsPerRound
    if (roundComplete) await this.closeRound(job.id, job.round)
    else this.emitProgress(job.id)
    return { accepted: true, round: claim.round, unit: claim.unit, roundClosed: roundComplete }
  }

  /**
   * Aggregates round `round` into the next checkpoint. Idempotent and deterministic (updates summed in
   * unit order), so a coordinator killed half-way redoes exactly the same work at its next start.
   */
  async closeRound(jobId: Hash, round: number): Promise<void> {
    await this.roundLock.run(jobId, async () => {
      const job = await this.jobRow(this.db, jobId)
      if (job.round !== round || job.status !== 'active') return
      const units = await this.db.query<UnitRow>(
        `SELECT * FROM units WHERE job_id = $1 AND round = $2 AND status = 'accepted' ORDER BY unit`,
        [jobId, round],
      )
      if (units.length < job.spec.training.unitsPerRound) return
      const checkpoint = decodeTensorList(await this.blobs.get(job.checkpoint))
      const updates = await Promise.all(
        units.map(async (u) => ({ update: decodeTensorList(await this.blobs.get(u.output_hash!)), examples: u.examples! })),
      )
      const next = hashTensorList(applyAveragedUpdate(checkpoint, updates, job.spec.training.outerLearningRate))
      await this.blobs.put(next.bytes)
      const runtime = await this.runtime(jobId, job.spec)
      setModelWeights(runtime.model, decodeTensorList(next.bytes))
      const evaluation = await evaluateModel(runtime.model, job.spec, runtime.heldOut)
      const losses = units.map((u) => u.train_loss).filter((l): l is number => l !== null && Number.isFinite(l))
      const trainLoss = losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN
      const finished = round + 1 >= job.spec.training.rounds
      await this.db.transaction(async (tx) => {
        const moved = await tx.query(
          `UPDATE jobs SET round = $2, checkpoint = $3, status = $4, accepted_in_round = 0 WHERE id = $1 AND round = $5 RETURNING id`,
          [jobId, round + 1, next.hash, finished ? 'finished' : 'active', round],
        )
        if (moved.length === 0) return // another coordinator process closed it first
        await tx.query(
          `INSERT INTO rounds (job_id, round, input_hash, output_hash, closed_at, train_loss, held_out_loss, held_out_accuracy, units)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [jobId, round, job.checkpoint, next.hash, this.now(), trainLoss, evaluation.loss, evaluation.accuracy, units.length],
        )
        if (!finished) await this.openRound(tx, jobId, round + 1, job.spec)
      })
      this.log(
        `job ${jobId.slice(0, 10)} round ${round} closed: held-out loss ${evaluation.loss.toFixed(4)}, accuracy ${(evaluation.accuracy * 100).toFixed(1)}%`,
      )
    })
    this.emitProgress(jobId)
  }

  /**
   * One unit with the checkpoint it starts from: the round's input (from the rounds table once closed,
   * the job's checkpoint while current). Units of future rounds do not exist yet.
   */
  async unitRecord(jobId: string, roundInput: unknown, unitInput: unknown): Promise<UnitRecord> {
    const round = Number(roundInput)
    const index = Number(unitInput)
    if (!Number.isInteger(round) || round < 0 || !Number.isInteger(index) || index < 0) {
      throw new CoordinatorError('malformed_request', 'round and unit must be non-negative integers')
    }
    const job = await this.jobRow(this.db, jobId)
    const [unit] = await this.db.query<UnitRow & { device_class: string | null }>(
      `SELECT * FROM units WHERE job_id = $1 AND round = $2 AND unit = $3`,
      [job.id, round, index],
    )
    if (!unit) throw new CoordinatorError('unit_not_found', `job ${job.id} has no unit ${index} in round ${round}`)
    let inputHash = job.checkpoint
    if (round < job.round) {
      const [closed] = await this.db.query<{ input_hash: Hash }>(`SELECT input_hash FROM rounds WHERE job_id = $1 AND round = $2`, [job.id, round])
      inputHash = closed!.input_hash
    }
    const accepted = unit.status === 'accepted'
    return {
      unit: { jobId: job.id, round, unit: index, inputHash },
      status: unit.status,
      outputHash: accepted ? unit.output_hash : null,
      contributor: accepted && unit.leased_to ? getAddress(unit.leased_to) : null,
      deviceClass: accepted ? unit.device_class : null,
    }
  }

  /** At start-up: close any round that reached K accepted updates before a crash cut its aggregation. */
  async recover(): Promise<void> {
    const rows = await this.db.query<{ id: Hash; round: number }>(
      `SELECT j.id, j.round FROM jobs j
        WHERE j.status = 'active'
          AND (SELECT count(*) FROM units u WHERE u.job_id = j.id AND u.round = j.round AND u.status = 'accepted')
              >= (j.spec->'training'->>'unitsPerRound')::int`,
    )
    for (const row of rows) {
      this.log(`recovering: closing round ${row.round} of job ${row.id.slice(0, 10)}`)
      await this.closeRound(row.id, row.round)
    }
  }

  async progress(jobId: string): Promise<JobProgress> {
    const job = await this.jobRow(this.db, jobId)
    const [rounds, current, contributors, total] = await Promise.all([
      this.db.query<Record<string, unknown>>(`SELECT * FROM rounds WHERE job_id = $1 ORDER BY round`, [job.id]),
      this.db.query<{ count: string }>(`SELECT count(*) AS count FROM units WHERE job_id = $1 AND round = $2 AND status = 'accepted'`, [job.id, job.round]),
      this.db.query<{ leased_to: Address; units: string; last_seen: string }>(
        `SELECT leased_to, count(*) AS units, max(accepted_at) AS last_seen FROM units
          WHERE job_id = $1 AND status = 'accepted' GROUP BY leased_to ORDER BY count(*) DESC, leased_to`,
        [job.id],
      ),
      this.db.query<{ count: string }>(`SELECT count(*) AS count FROM units WHERE job_id = $1 AND status = 'accepted'`, [job.id]),
    ])
    return {
      jobId: job.id,
      status: job.status,
      round: job.round,
      rounds: job.spec.training.rounds,
      unitsPerRound: job.spec.training.unitsPerRound,
      acceptedThisRound: Number(current[0]?.count ?? 0),
      acceptedUnits: Number(total[0]?.count ?? 0),
      checkpoint: job.checkpoint,
      initial:
        job.initial_loss === null ? null : { heldOutLoss: Number(job.initial_loss), heldOutAccuracy: Number(job.initial_accuracy) },
      history: rounds.map((r) => ({
        round: Number(r.round),
        inputHash: r.input_hash as Hash,
        outputHash: r.output_hash as Hash,
        closedAt: Number(r.closed_at),
        trainLoss: Number(r.train_loss),
        heldOutLoss: Number(r.held_out_loss),
        heldOutAccuracy: Number(r.held_out_accuracy),
        units: Number(r.units),
      })),
      contributors: contributors.map((c) => ({ address: c.leased_to, acceptedUnits: Number(c.units), lastSeen: Number(c.last_seen) })),
    }
  }

  /**
   * Largest submission body a lease can legitimately carry: its job's full update plus the claim. Unknown
   * leases get null; the submission itself then reports what is wrong.
   */
  async maxSubmissionBytes(leaseId: string): Promise<number | null> {
    const [lease] = await this.db.query<LeaseRow>(`SELECT * FROM leases WHERE id = $1`, [leaseId])
    if (!lease) return null
    const job = await this.jobRow(this.db, lease.job_id)
    return 8 + MAX_CLAIM_JSON_BYTES + (await this.runtime(job.id, job.spec)).updateBytes
  }

  private emitProgress(jobId: Hash): void {
    this.events.emit('progress', jobId)
  }

  private async openRound(tx: Queryable, jobId: Hash, round: number, spec: JobSpec): Promise<void> {
    await tx.query(
      `INSERT INTO units (job_id, round, unit) SELECT $1, $2, g FROM generate_series(0, $3 - 1) AS g ON CONFLICT DO NOTHING`,
      [jobId, round, spec.training.unitsPerRound],
    )
  }

  private async jobRow(db: Queryable, jobId: string): Promise<JobRow> {
    const [row] = await db.query<JobRow>(`SELECT * FROM jobs WHERE id = $1`, [jobId])
    if (!row) throw new CoordinatorError('job_not_found', `no job ${jobId}`)
    return row
  }

  private runtime(jobId: string, spec: JobSpec): Promise<JobRuntime> {
    let runtime = this.runtimes.get(jobId)
    if (!runtime) {
      runtime = (async () => {
        const model = await buildModel(spec)
        const heldOut = labelledSetFromIdx(
          parseIdx(await this.blobs.get(spec.data.heldOut.images)),
          parseIdx(await this.blobs.get(spec.data.heldOut.labels)),
        )
        const shapes = model.weights.map((w) => w.shape as number[])
        const floats = shapes.reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0)
        const header = 8 + shapes.reduce((n, shape) => n + 4 * (1 + shape.length), 0)
        return { spec, model, heldOut, shapes, updateBytes: header + 4 * floats }
      })()
      runtime.catch(() => this.runtimes.delete(jobId))
      this.runtimes.set(jobId, runtime)
    }
    return runtime
  }
}
