import {
  decodeTensorList,
  hashTensorList,
  type Hash,
} from '../src/protocol/index.ts'
import { applyAveragedUpdate, clipToMedianNorm } from '../src/training/aggregate.ts'
import { evaluateModel } from '../src/training/evaluate.ts'
import { setModelWeights } from '../src/training/model.ts'
import type { JobContext } from './context.ts'
import type { Queryable } from './db.ts'
import { jobRow, type AttemptRow, type JobRow } from './rows.ts'

/**
 * Primaries whose updates a round averages: answered, and not found wrong. `pending` ones (a closed round
 * whose unit is being re-examined) count until their check says otherwise; the round is rebuilt then.
 */
export const AVERAGED_PRIMARIES = `SELECT * FROM attempts
  WHERE job_id = $1 AND round = $2 AND kind = 'primary' AND status = 'submitted' AND verdict IN ('unchecked', 'pending', 'passed')
  ORDER BY unit`

interface Aggregate {
  hash: Hash
  units: number
  clipped: number
  trainLoss: number
  heldOutLoss: number
  heldOutAccuracy: number
}

/**
 * C_{r+1} from `base` and the round's averaged primaries: each update's norm bounded by the round's median,
 * then the weighted average (src/training/aggregate.ts). A round left with no update keeps its base. The
 * result is stored by hash and evaluated on the held-out split.
 */
async function aggregate(ctx: JobContext, job: JobRow, round: number, base: Hash): Promise<Aggregate> {
  const primaries = await ctx.db.query<AttemptRow>(AVERAGED_PRIMARIES, [job.id, round])
  const checkpoint = decodeTensorList(await ctx.blobs.get(base))
  let next: { hash: Hash; bytes: Uint8Array }
  let clipped = 0
  if (primaries.length === 0) {
    next = hashTensorList(checkpoint)
  } else {
    const updates = await Promise.all(
      primaries.map(async (a) => ({ update: decodeTensorList(await ctx.blobs.get(a.output_hash!)), examples: Number(a.examples) })),
    )
    const bounded = clipToMedianNorm(updates)
    clipped = bounded.clipped
    next = hashTensorList(applyAveragedUpdate(checkpoint, bounded.updates, job.spec.training.outerLearningRate))
  }
  await ctx.blobs.put(next.bytes)
  const runtime = await ctx.runtimes.get(job.id, job.spec)
  setModelWeights(runtime.model, decodeTensorList(next.bytes))
  const evaluation = await evaluateModel(runtime.model, job.spec, runtime.heldOut)
  const losses = primaries.map((a) => a.train_loss).filter((l): l is number => l !== null && Number.isFinite(Number(l))).map(Number)
  return {
    hash: next.hash,
    units: primaries.length,
    clipped,
    trainLoss: losses.length ? losses.reduce((a, b) => a + b, 0) / losses.length : NaN,
    heldOutLoss: evaluation.loss,
    heldOutAccuracy: evaluation.accuracy,
  }
}

/** The checkpoint round `round` is applied to: the initial weights, or the previous round's (possibly rebuilt) output. */
async function baseOf(db: Queryable, job: JobRow, round: number): Promise<Hash> {
  if (round === 0) return job.spec.model.initialWeights
  const [previous] = await db.query<{ output_hash: Hash }>(`SELECT output_hash FROM rounds WHERE job_id = $1 AND round = $2`, [job.id, round - 1])
  return previous!.output_hash
}

/** True when every unit of the round has an answer whose check (if it was sampled) has settled. */
async function roundReady(db: Queryable, job: JobRow, round: number): Promise<boolean> {
  const [row] = await db.query<{ ready: string }>(
    `SELECT count(*) AS ready FROM units
      WHERE job_id = $1 AND round = $2 AND status = 'accepted' AND (check_status IS NULL OR check_status = 'passed')`,
    [job.id, round],
  )
  return Number(row?.ready ?? 0) >= job.spec.training.unitsPerRound
}

/**
 * Aggregates round `round` into the next checkpoint once every unit has an answer and every sampled check
 * has settled, so no output under check is ever averaged before its check. Idempotent and deterministic,
 * so a coordinator killed half-way redoes exactly the same work at its next start. True if it closed.
 */
export async function closeRound(ctx: JobContext, jobId: Hash, round: number): Promise<boolean> {
  const closed = await ctx.roundLock.run(jobId, async () => {
    const job = await jobRow(ctx.db, jobId)
    if (job.round !== round || job.status !== 'active') return false
    if (!(await roundReady(ctx.db, job, round))) return false
    const base = await baseOf(ctx.db, job, round)
    const next = await aggregate(ctx, job, round, base)
    const finished = round + 1 >= job.spec.training.rounds
    const moved = await ctx.db.transaction(async (tx) => {
      // The status is the owner's unless the job just finished: a pause or cancel that landed while this
      // round was being aggregated (coordinator/owner.ts) must not be overwritten with 'active'.
      const rows = await tx.query(
        `UPDATE jobs SET round = $2, checkpoint = $3, status = CASE WHEN $4::text = 'finished' THEN 'finished' ELSE status END, accepted_in_round = 0
          WHERE id = $1 AND round = $5 RETURNING id`,
        [jobId, round + 1, next.hash, finished ? 'finished' : 'active', round],
      )
      if (rows.length === 0) return false // another coordinator process closed it first
      await tx.query(
        `INSERT INTO rounds (job_id, round, input_hash, base_hash, output_hash, closed_at, train_loss, held_out_loss, held_out_accuracy, units, clipped)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [jobId, round, job.checkpoint, base, next.hash, ctx.now(), next.trainLoss, next.heldOutLoss, next.heldOutAccuracy, next.units, next.clipped],
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
      ctx.log(
        `job ${jobId.slice(0, 10)} round ${round} closed: held-out loss ${next.heldOutLoss.toFixed(4)}, accuracy ${(next.heldOutAccuracy * 100).toFixed(1)}%` +
          (next.clipped ? `, ${next.clipped} update(s) clipped to the median norm` : ''),
      )
    }
    return moved
  })
  ctx.events.emit('progress', jobId)
  return closed
}

/**
 * The earliest closed round marked dirty (a primary in it was found wrong or dropped after it closed):
 * where a rebuild has to start. Null when every closed round is clean. The mark is in the store, so a
 * coordinator killed in the middle of a rebuild finds it again at start-up.
 */
export async function firstDirtyRound(db: Queryable, jobId: Hash): Promise<number | null> {
  const [row] = await db.query<{ round: number | null }>(`SELECT min(round) AS round FROM rounds WHERE job_id = $1 AND dirty`, [jobId])
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
      const next = await aggregate(ctx, job, round, base)
      await ctx.db.query(
        `UPDATE rounds SET base_hash = $3, output_hash = $4, train_loss = $5, held_out_loss = $6, held_out_accuracy = $7, units = $8,
                clipped = $9, rebuilds = rebuilds + 1, rebuilt_at = $10, dirty = false
          WHERE job_id = $1 AND round = $2`,
        [jobId, round, base, next.hash, next.trainLoss, next.heldOutLoss, next.heldOutAccuracy, next.units, next.clipped, ctx.now()],
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
