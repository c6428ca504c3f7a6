import { isAsynchronous, maxStaleness, type Hash } from '../src/protocol/index.ts'
import type { AggregateResult } from './aggregation/aggregate.ts'
import type { JobContext } from './context.ts'
import type { Queryable } from './db.ts'
import { jobRow, type AttemptRow, type JobRow } from './rows.ts'

/**
 * Primaries whose updates a synchronous round averages: answered, and not found wrong. `pending` ones (a
 * closed round whose unit is being re-examined) count until their check says otherwise; the round is rebuilt
 * then.
 */
export const AVERAGED_PRIMARIES = `SELECT * FROM attempts
  WHERE job_id = $1 AND round = $2 AND kind = 'primary' AND status = 'submitted' AND verdict IN ('unchecked', 'pending', 'passed')
  ORDER BY unit`

/** The same for an asynchronous round: the answers its close took in (units.applied_round), in (round, unit) order. */
const APPLIED_PRIMARIES = `SELECT a.* FROM units u JOIN attempts a ON a.lease_id = u.lease_id
  WHERE u.job_id = $1 AND u.applied_round = $2 AND a.kind = 'primary' AND a.status = 'submitted' AND a.verdict IN ('unchecked', 'pending', 'passed')
  ORDER BY u.round, u.unit`

/** The answers round `round` averaged (or averages, while it is being closed). */
async function averagedPrimaries(db: Queryable, job: JobRow, round: number): Promise<AttemptRow[]> {
  return db.query<AttemptRow>(isAsynchronous(job.spec.training) ? APPLIED_PRIMARIES : AVERAGED_PRIMARIES, [job.id, round])
}

interface Aggregate extends AggregateResult {
  units: number
  trainLoss: number
}

/**
 * C_{r+1} from `base` and the round's primaries, computed off the event loop (aggregation/aggregate.ts:
 * median-norm clipping, then the job's outer optimizer, then the held-out evaluation). Both results are
 * stored by hash.
 */
async function aggregate(ctx: JobContext, job: JobRow, base: RoundBase, primaries: AttemptRow[]): Promise<Aggregate> {
  const result = await ctx.aggregator.aggregate(
    {
      jobId: job.id,
      spec: job.spec,
      base: base.checkpoint,
      momentum: base.momentum,
      updates: primaries.map((a) => ({ hash: a.output_hash!, examples: Number(a.examples) })),
    },
    (hash) => ctx.blobs.get(hash),
  )
  await ctx.blobs.put(result.checkpoint.bytes)
  if (result.momentum) await ctx.blobs.put(result.momentum.bytes)
  const losses = primaries.map((a) => a.train_loss).filter((l): l is number => l !== null && Number.isFinite(Number(l))).map(Number)
  return { ...result, units: primaries.length, trainLoss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN }
}

interface RoundBase {
  checkpoint: Hash
  /** The outer optimizer's momentum after the previous round (null: none yet, or `average`). */
  momentum: Hash | null
}

/** What round `round` is applied to: the initial weights, or the previous round's (possibly rebuilt) output. */
async function baseOf(db: Queryable, job: JobRow, round: number): Promise<RoundBase> {
  if (round === 0) return { checkpoint: job.spec.model.initialWeights, momentum: null }
  const [previous] = await db.query<{ output_hash: Hash; momentum_hash: Hash | null }>(
    `SELECT output_hash, momentum_hash FROM rounds WHERE job_id = $1 AND round = $2`,
    [job.id, round - 1],
  )
  return { checkpoint: previous!.output_hash, momentum: previous!.momentum_hash ?? null }
}

/** True when every unit of a synchronous round has an answer whose check (if it was sampled) has settled. */
async function roundReady(db: Queryable, job: JobRow, round: number): Promise<boolean> {
  const [row] = await db.query<{ ready: string }>(
    `SELECT count(*) AS ready FROM units
      WHERE job_id = $1 AND round = $2 AND status = 'accepted' AND (check_status IS NULL OR check_status = 'passed')`,
    [job.id, round],
  )
  return Number(row?.ready ?? 0) >= job.spec.training.unitsPerRound
}

/** The settled answers an asynchronous round may take in (of units from round `oldest` on), and the live primaries. */
const asyncReady = (job: string, oldest: string) => `FROM units u JOIN attempts a ON a.lease_id = u.lease_id
  WHERE u.job_id = ${job} AND u.status = 'accepted' AND u.applied_round IS NULL AND u.round >= ${oldest}
    AND (u.check_status IS NULL OR u.check_status = 'passed')
    AND a.kind = 'primary' AND a.status = 'submitted' AND a.verdict IN ('unchecked', 'pending', 'passed')`
const asyncLive = (job: string, now: string) => `FROM attempts WHERE job_id = ${job} AND kind = 'primary' AND status = 'leased' AND expires_at > ${now}`

/**
 * What an asynchronous round would take in if it closed now, and how many answers it waits for: settled
 * answers not yet averaged, of units at most S rounds old (an answer under check waits for its verdict); it
 * closes once there are at least max(K, live pool) of them. The live pool is every address holding a live primary lease
 * or waiting with a settled answer: in steady state each contributor has done one unit per round, so a round
 * lasts about one unit's time whatever the pool's size, and answers are at most about a round stale. A tab
 * that vanished leaves the pool when its lease runs out.
 */
export async function asyncRoundIntake(ctx: JobContext, job: JobRow): Promise<{ ready: AttemptRow[]; needed: number }> {
  const ready = await ctx.db.query<AttemptRow>(`SELECT a.* ${asyncReady('$1', '$2')} ORDER BY u.round, u.unit`, [job.id, job.round - maxStaleness(job.spec.training)])
  const live = await ctx.db.query<{ contributor: string }>(`SELECT DISTINCT contributor ${asyncLive('$1', '$2')}`, [job.id, ctx.now()])
  const pool = new Set([...live.map((l) => l.contributor), ...ready.map((a) => a.contributor)])
  return { ready, needed: Math.max(job.spec.training.unitsPerRound, pool.size) }
}

/**
 * asyncRoundIntake's verdict alone, counted in one statement without reading the answers: every answer of
 * an asynchronous job asks whether the round is due, and it mostly is not.
 */
async function asyncRoundDue(ctx: JobContext, job: JobRow): Promise<boolean> {
  const [row] = await ctx.db.query<{ ready: string; pool: string }>(
    `WITH ready AS (SELECT a.contributor ${asyncReady('$1', '$2')}), live AS (SELECT contributor ${asyncLive('$1', '$3')})
     SELECT (SELECT count(*) FROM ready) AS ready, (SELECT count(*) FROM (SELECT contributor FROM ready UNION SELECT contributor FROM live) p) AS pool`,
    [job.id, job.round - maxStaleness(job.spec.training), ctx.now()],
  )
  return Number(row!.ready) >= Math.max(job.spec.training.unitsPerRound, Number(row!.pool))
}

/**
 * Aggregates round `round` into the next checkpoint once it is complete: a synchronous round when every unit
 * has an answer and every sampled check has settled; an asynchronous one when it holds enough settled
 * answers (asyncRoundIntake). No output under check is ever averaged before its check. The answers taken in
 * are recorded (units.applied_round) in the transaction that moves the job on, so a rebuild averages exactly
 * them again. Idempotent and deterministic, so a coordinator killed half-way redoes exactly the same work at
 * its next start. The computation runs on the aggregation thread, so leases and submissions are answered
 * meanwhile (answers arriving during it wait for the next round). True if it closed.
 */
export async function closeRound(ctx: JobContext, jobId: Hash, which: number | 'current', started?: () => void): Promise<boolean> {
  const closed = await ctx.roundLock.run(jobId, async () => {
    started?.()
    const startedAt = performance.now()
    const job = await jobRow(ctx.db, jobId)
    const round = which === 'current' ? job.round : which
    if (job.round !== round || job.status !== 'active') return false
    let primaries: AttemptRow[]
    if (isAsynchronous(job.spec.training)) {
      if (!(await asyncRoundDue(ctx, job))) return false
      const intake = await asyncRoundIntake(ctx, job)
      if (intake.ready.length < intake.needed) return false
      primaries = intake.ready
    } else {
      if (!(await roundReady(ctx.db, job, round))) return false
      primaries = await averagedPrimaries(ctx.db, job, round)
    }
    const base = await baseOf(ctx.db, job, round)
    const next = await aggregate(ctx, job, base, primaries)
    const finished = round + 1 >= job.spec.training.rounds
    const moved = await ctx.db.transaction(async (tx) => {
      // The status is the owner's unless the job just finished: a pause or cancel that landed while this
      // round was being aggregated (coordinator/owner.ts) must not be overwritten with 'active'.
      const rows = await tx.query(
        `UPDATE jobs SET round = $2, checkpoint = $3, status = CASE WHEN $4::text = 'finished' THEN 'finished' ELSE status END, accepted_in_round = 0
          WHERE id = $1 AND round = $5 RETURNING id`,
        [jobId, round + 1, next.checkpoint.hash, finished ? 'finished' : 'active', round],
      )
      if (rows.length === 0) return false // another coordinator process closed it first
      const leases = primaries.map((a) => a.lease_id)
      const applied = await tx.query(`UPDATE units SET applied_round = $2 WHERE lease_id = ANY($1::text[]) AND applied_round IS NULL RETURNING unit`, [
        leases,
        round,
      ])
      // Another process averaged one of these answers into its own close: this close must not count it twice.
      // (A synchronous round's answers belong to it alone; the round guard above already settles that race.)
      if (isAsynchronous(job.spec.training) && applied.length !== leases.length) throw new RoundRaceError(`round ${round} of job ${jobId}: an answer was taken in by another close`)
      await tx.query(
        `INSERT INTO rounds (job_id, round, input_hash, base_hash, output_hash, closed_at, train_loss, held_out_loss, held_out_accuracy, units, clipped, momentum_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [jobId, round, job.checkpoint, base.checkpoint, next.checkpoint.hash, ctx.now(), next.trainLoss, next.heldOutLoss, next.heldOutAccuracy, next.units,
          next.clipped, next.momentum?.hash ?? null],
      )
      if (!finished) {
        await tx.query(
          `INSERT INTO units (job_id, round, unit) SELECT $1, $2, g FROM generate_series(0, $3 - 1) AS g ON CONFLICT DO NOTHING`,
          [jobId, round + 1, job.spec.training.unitsPerRound],
        )
      }
      return true
    })
    if (moved) {
      // Metrics (coordinator/ops/metrics.ts) time closes from this event: job id, round, seconds.
      ctx.events.emit('roundClosed', jobId, round, (performance.now() - startedAt) / 1000)
      ctx.log(
        `job ${jobId.slice(0, 10)} round ${round} closed: held-out loss ${next.heldOutLoss.toFixed(4)}, accuracy ${(next.heldOutAccuracy * 100).toFixed(1)}%` +
          (next.clipped ? `, ${next.clipped} update(s) clipped to the median norm` : ''),
      )
    }
    return moved
  }).catch((error: unknown) => {
    if (error instanceof RoundRaceError) return false
    throw error
  })
  ctx.events.emit('progress', jobId)
  return closed
}

/** Per round lock (one per context), the jobs with a close of their current round waiting for the lock. */
const waitingCloses = new WeakMap<object, Set<string>>()

/**
 * Tries to close the job's current round after the answers recorded so far, in the background. A close
 * already waiting for the round lock reads the store after it gets the lock, so it takes in every answer
 * committed before: a second one behind it would only read the same again (each answer of an asynchronous
 * job asks, so under load they would queue by the hundred).
 */
export function closeCurrentRoundSoon(ctx: JobContext, jobId: Hash): void {
  let waiting = waitingCloses.get(ctx.roundLock)
  if (!waiting) waitingCloses.set(ctx.roundLock, (waiting = new Set()))
  if (waiting.has(jobId)) {
    ctx.events.emit('progress', jobId)
    return
  }
  waiting.add(jobId)
  void closeRound(ctx, jobId, 'current', () => waiting.delete(jobId)).catch((error: unknown) => {
    waiting.delete(jobId)
    ctx.log(`closing after a submission failed: ${String(error)}`)
  })
}

/** Two coordinator processes closed the same answers at once; the transaction that lost rolls back. */
class RoundRaceError extends Error {
  override name = 'RoundRaceError'
}

/**
 * The earliest closed round marked dirty (a primary in it was found wrong or dropped after it closed):
 * where a rebuild has to start. Null when every closed round is clean. The mark is in the store, so a
 * coordinator killed in the middle of a rebuild finds it again at start-up.
 */
export async function firstDirtyRound(db: Queryable, jobId: Hash): Promise<number | null> {
  // A job sealed by retention (coordinator/ops/retention.ts) has no updates left to rebuild from: its rounds are final.
  const [row] = await db.query<{ round: number | null }>(
    `SELECT min(round) AS round FROM rounds WHERE job_id = $1 AND dirty AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND pruned_at IS NOT NULL)`,
    [jobId],
  )
  return row?.round == null ? null : Number(row.round)
}

/**
 * Recomputes every closed round from the earliest one holding rejected work, each from its (rebuilt)
 * predecessor, leaving the rejected updates out. The averaging is deterministic, so the result is exactly
 * the model those rounds make without that work. Later rounds keep their updates (computed from the old
 * checkpoints, as DiLoCo applies slightly stale updates). Units of the current round keep training from
 * the checkpoint they were issued; the round closes onto the rebuilt chain.
 */
export async function rebuildDirtyRounds(ctx: JobContext, jobId: Hash): Promise<number[]> {
  const rebuilt = await ctx.roundLock.run(jobId, async () => {
    const from = await firstDirtyRound(ctx.db, jobId)
    if (from === null) return []
    const job = await jobRow(ctx.db, jobId)
    const rounds: number[] = []
    for (let round = from; round < job.round; round++) {
      const [exists] = await ctx.db.query(`SELECT 1 FROM rounds WHERE job_id = $1 AND round = $2`, [jobId, round])
      if (!exists) break
      const base = await baseOf(ctx.db, job, round)
      const next = await aggregate(ctx, job, base, await averagedPrimaries(ctx.db, job, round))
      await ctx.db.query(
        `UPDATE rounds SET base_hash = $3, output_hash = $4, train_loss = $5, held_out_loss = $6, held_out_accuracy = $7, units = $8,
                clipped = $9, rebuilds = rebuilds + 1, rebuilt_at = $10, dirty = false, momentum_hash = $11
          WHERE job_id = $1 AND round = $2`,
        [jobId, round, base.checkpoint, next.checkpoint.hash, next.trainLoss, next.heldOutLoss, next.heldOutAccuracy, next.units, next.clipped, ctx.now(),
          next.momentum?.hash ?? null],
      )
      rounds.push(round)
    }
    // A finished job's checkpoint is its final model: it must not hold the rejected work either.
    if (job.status === 'finished' && rounds.length) {
      const [last] = await ctx.db.query<{ output_hash: Hash }>(`SELECT output_hash FROM rounds WHERE job_id = $1 ORDER BY round DESC LIMIT 1`, [jobId])
      await ctx.db.query(`UPDATE jobs SET checkpoint = $2 WHERE id = $1`, [jobId, last!.output_hash])
    }
    if (rounds.length) ctx.log(`job ${jobId.slice(0, 10)}: rebuilt rounds ${rounds[0]}–${rounds.at(-1)} without rejected work`)
    return rounds
  })
  if (rebuilt.length) ctx.events.emit('progress', jobId)
  return rebuilt
}
