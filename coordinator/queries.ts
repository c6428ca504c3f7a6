import { getAddress, type Address } from 'viem'
import { isAsynchronous, verificationPolicy, type Hash, type JobProgress, type JobSummary, type UnitRecord } from '../src/protocol/index.ts'
import type { JobContext } from './context.ts'
import { CoordinatorError } from './errors.ts'
import { asyncRoundIntake } from './rounds.ts'
import { jobRow, type JobRow, type UnitRow } from './rows.ts'
import { readReputations, reputationView } from './verification/reputation.ts'

/** Answers that count for their contributor: submitted and not found wrong (checks included). */
const GOOD_ANSWER = `status = 'submitted' AND verdict IN ('unchecked', 'pending', 'passed')`

export async function jobSummary(ctx: JobContext, row: JobRow): Promise<JobSummary> {
  const payment = ctx.payments
    ? await ctx.payments.describe({ id: row.id, spec: row.spec, round: row.round })
    : null
  return {
    id: row.id,
    name: row.spec.name,
    status: row.status,
    round: row.round,
    rounds: row.spec.training.rounds,
    checkpoint: row.checkpoint,
    createdAt: Number(row.created_at),
    statusChangedAt: row.status_changed_at == null ? null : Number(row.status_changed_at),
    payment,
  }
}

/**
 * A job's progress for its page and the live feed. `acceptedThisRound` counts only units whose check (if
 * any) has settled, so a unit under check looks like one still out: nobody can tell from here which
 * leases are checks.
 */
export async function jobProgress(ctx: JobContext, jobId: string): Promise<JobProgress> {
  const job = await jobRow(ctx.db, jobId)
  const [rounds, current, contributors, total, checks, rejected] = await Promise.all([
    ctx.db.query<Record<string, unknown>>(`SELECT * FROM rounds WHERE job_id = $1 ORDER BY round`, [job.id]),
    ctx.db.query<{ count: string }>(
      `SELECT count(*) AS count FROM units WHERE job_id = $1 AND round = $2 AND status = 'accepted' AND (check_status IS NULL OR check_status = 'passed')`,
      [job.id, job.round],
    ),
    ctx.db.query<{ contributor: Address; units: string; last_seen: string }>(
      `SELECT contributor, count(*) AS units, max(submitted_at) AS last_seen FROM attempts
        WHERE job_id = $1 AND ${GOOD_ANSWER} GROUP BY contributor ORDER BY count(*) DESC, contributor`,
      [job.id],
    ),
    ctx.db.query<{ count: string }>(`SELECT count(*) AS count FROM attempts WHERE job_id = $1 AND ${GOOD_ANSWER}`, [job.id]),
    ctx.db.query<{ passed: string; pending: string; referee: string }>(
      `SELECT count(*) FILTER (WHERE check_status = 'passed') AS passed,
              count(*) FILTER (WHERE check_status IN ('wanted', 'referee')) AS pending,
              count(*) FILTER (WHERE referee_hash IS NOT NULL) AS referee
         FROM units WHERE job_id = $1`,
      [job.id],
    ),
    ctx.db.query<{ failed: string; rejected: string; banned: Address[] | null }>(
      `SELECT count(*) FILTER (WHERE verdict = 'rejected') AS failed,
              count(*) FILTER (WHERE verdict IN ('rejected', 'dropped')) AS rejected,
              array_agg(DISTINCT contributor) FILTER (WHERE verdict = 'rejected') AS banned
         FROM attempts WHERE job_id = $1`,
      [job.id],
    ),
  ])
  const policy = verificationPolicy(job.spec)
  const asynchronous = isAsynchronous(job.spec.training)
  const intake = asynchronous ? await asyncRoundIntake(ctx, job) : null
  const reputations = await readReputations(ctx.db, contributors.map((c) => c.contributor))
  return {
    jobId: job.id,
    status: job.status,
    round: job.round,
    rounds: job.spec.training.rounds,
    unitsPerRound: job.spec.training.unitsPerRound,
    acceptedThisRound: intake ? intake.ready.length : Number(current[0]?.count ?? 0),
    roundSize: intake ? intake.needed : job.spec.training.unitsPerRound,
    asynchronous,
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
      rebuilds: Number(r.rebuilds ?? 0),
      clipped: Number(r.clipped ?? 0),
    })),
    contributors: contributors.map((c) => ({
      address: getAddress(c.contributor),
      acceptedUnits: Number(c.units),
      lastSeen: Number(c.last_seen),
      reputation: reputationView(reputations.get(getAddress(c.contributor))!, policy),
    })),
    verification: {
      checksPassed: Number(checks[0]?.passed ?? 0),
      checksFailed: Number(rejected[0]?.failed ?? 0),
      checksPending: Number(checks[0]?.pending ?? 0),
      refereeRuns: Number(checks[0]?.referee ?? 0),
      unitsRejected: Number(rejected[0]?.rejected ?? 0),
      roundsRebuilt: rounds.filter((r) => Number(r.rebuilds ?? 0) > 0).map((r) => Number(r.round)),
      banned: (rejected[0]?.banned ?? []).map((a) => getAddress(a)),
    },
  }
}

/**
 * One unit with the checkpoint it starts from: the round's issued input (from the rounds table once
 * closed, the job's checkpoint while current). Its answer is served only once accepted and its check, if
 * any, settled: an answer under check is what a checker must not see.
 */
export async function unitRecord(ctx: JobContext, jobId: string, roundInput: unknown, unitInput: unknown): Promise<UnitRecord> {
  const round = Number(roundInput)
  const index = Number(unitInput)
  if (!Number.isInteger(round) || round < 0 || !Number.isInteger(index) || index < 0) {
    throw new CoordinatorError('malformed_request', 'round and unit must be non-negative integers')
  }
  const job = await jobRow(ctx.db, jobId)
  const [unit] = await ctx.db.query<UnitRow & { inner_steps: number | null }>(`SELECT * FROM units WHERE job_id = $1 AND round = $2 AND unit = $3`, [job.id, round, index])
  if (!unit) throw new CoordinatorError('unit_not_found', `job ${job.id} has no unit ${index} in round ${round}`)
  let inputHash = job.checkpoint
  if (round < job.round) {
    const [closed] = await ctx.db.query<{ input_hash: Hash }>(`SELECT input_hash FROM rounds WHERE job_id = $1 AND round = $2`, [job.id, round])
    inputHash = closed!.input_hash
  }
  const checking = unit.status === 'accepted' && (unit.check_status === 'wanted' || unit.check_status === 'referee')
  const accepted = unit.status === 'accepted' && !checking
  const [primary] = accepted && unit.lease_id ? await ctx.db.query<{ verdict: string }>(`SELECT verdict FROM attempts WHERE lease_id = $1`, [unit.lease_id]) : []
  const rejected = primary?.verdict === 'rejected' || primary?.verdict === 'dropped' || primary?.verdict === 'inconclusive'
  return {
    // With the H it was issued with, so a verifier re-executes the same computation.
    unit: { jobId: job.id, round, unit: index, inputHash, ...(unit.inner_steps == null ? {} : { innerSteps: Number(unit.inner_steps) }) },
    status: checking ? 'checking' : rejected ? 'rejected' : unit.status,
    outputHash: accepted ? unit.output_hash : null,
    contributor: accepted && unit.leased_to ? getAddress(unit.leased_to) : null,
    deviceClass: accepted ? unit.device_class : null,
  }
}

/** True for a blob that is the answer of a unit under check: served by no endpoint until it settles. */
export async function isUnderCheck(ctx: JobContext, hash: string): Promise<boolean> {
  const rows = await ctx.db.query(`SELECT 1 FROM attempts WHERE output_hash = $1 AND verdict = 'pending' LIMIT 1`, [hash])
  return rows.length > 0
}
