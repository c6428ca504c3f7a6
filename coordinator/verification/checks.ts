import {
  compareAnswers,
  comparisonRule,
  decodeUpdate,
  innerStepsOfExamples,
  isAsynchronous,
  verificationPolicy,
  type Hash,
  type JobSpec,
} from '../../src/protocol/index.ts'
import type { JobContext } from '../context.ts'
import type { Queryable } from '../db.ts'
import { refereeLockName, type HeldLock } from '../replicaLocks.ts'
import { closeRound, rebuildDirtyRounds } from '../rounds.ts'
import { jobRow, type AttemptRow, type JobRow, type UnitRow } from '../rows.ts'
import { convict, settleInconclusive } from './convictions.ts'
import { canVouch, readReputation, recordReputation } from './reputation.ts'

/**
 * A sampled peer check nobody else has taken within this long is computed by the coordinator itself, so
 * a round never waits on a check when its other contributors are gone (a lone tab, the last round).
 */
export const PEER_CHECK_WAIT_MS = 10_000

/**
 * How long a unit waits for a third run in its primary's device class (asked for when the referee's class
 * differs and the answers are beyond the tolerance) before it is settled as inconclusive: its answer is
 * neither averaged nor paid, the unit is computed again, and nobody is flagged.
 */
export const CLASS_CHECK_WAIT_MS = 60_000

async function unitRow(db: Queryable, jobId: Hash, round: number, unit: number): Promise<UnitRow | null> {
  const [row] = await db.query<UnitRow>(`SELECT * FROM units WHERE job_id = $1 AND round = $2 AND unit = $3`, [jobId, round, unit])
  return row ?? null
}

/** Each unit the referee is computing, so one unit is never computed twice at once in this process. */
const running = new WeakMap<JobContext, Set<string>>()

/** An answer as compareAnswers reads it, decoded as the job's updates travel (float32 or int8). */
function answer(ctx: JobContext, spec: JobSpec, hash: Hash, deviceClass: string) {
  let decoded: ReturnType<typeof decodeUpdate> | null = null
  return {
    hash,
    deviceClass,
    bytes: () => ctx.blobs.get(hash),
    preload: async () => {
      decoded = decodeUpdate(spec.training.compression, await ctx.blobs.get(hash))
    },
    update: () => decoded!,
  }
}

async function agreement(ctx: JobContext, spec: JobSpec, a: { hash: Hash; deviceClass: string }, b: { hash: Hash; deviceClass: string }) {
  const x = answer(ctx, spec, a.hash, a.deviceClass)
  const y = answer(ctx, spec, b.hash, b.deviceClass)
  if (a.hash !== b.hash) await Promise.all([x.preload(), y.preload()])
  return compareAnswers({ kernelBundle: spec.kernelBundle, tolerance: verificationPolicy(spec).crossClassTolerance, a: x, b: y })
}

/**
 * A check's answer is in: compare it with the primary's. Agreement passes both (each vouched for the
 * other's work); disagreement sends the unit to the referee, whose answer decides who was wrong.
 */
export async function settlePeerCheck(ctx: JobContext, check: AttemptRow): Promise<void> {
  const job = await jobRow(ctx.db, check.job_id)
  const unit = await unitRow(ctx.db, job.id, check.round, check.unit)
  if (!unit) return
  const [primary] = unit.lease_id ? await ctx.db.query<AttemptRow>(`SELECT * FROM attempts WHERE lease_id = $1`, [unit.lease_id]) : []
  if (!primary || primary.status !== 'submitted' || primary.verdict !== 'pending') {
    // The primary was removed meanwhile (its contributor caught elsewhere): nothing to compare with, so
    // the referee judges this answer alone. Paying it unjudged would pay a liar who checked a liar.
    void judgeAlone(ctx, check)
    return
  }
  const result = await agreement(ctx, job.spec, { hash: primary.output_hash!, deviceClass: primary.device_class! }, { hash: check.output_hash!, deviceClass: check.device_class! })
  if (unit.check_kind === 'class') {
    await settleClassCheck(ctx, job, unit, primary, check, result.agree)
    return
  }
  if (result.agree && !canVouch(await readReputation(ctx.db, check.contributor))) {
    // Agreement from an address without a record proves little (it may be the primary's own sybil): the
    // referee confirms, and judges both answers.
    await ctx.db.query(`UPDATE units SET check_status = 'referee' WHERE job_id = $1 AND round = $2 AND unit = $3`, [job.id, unit.round, unit.unit])
    void runReferee(ctx, job.id, unit.round, unit.unit)
    return
  }
  if (result.agree) {
    const now = ctx.now()
    await ctx.db.transaction(async (tx) => {
      await tx.query(
        `UPDATE attempts SET verdict = 'passed', verdict_at = $2, verdict_reason = $3 WHERE lease_id = ANY($1::text[]) AND verdict = 'pending'`,
        [[primary.lease_id, check.lease_id], now, `agreed with another address's answer (distance ${result.distance.toPrecision(3)})`],
      )
      await tx.query(`UPDATE units SET check_status = 'passed' WHERE job_id = $1 AND round = $2 AND unit = $3`, [job.id, unit.round, unit.unit])
      await recordReputation(tx, primary.contributor, 'passed', now)
      await recordReputation(tx, check.contributor, 'passed', now)
    })
    ctx.log(`job ${job.id.slice(0, 10)} round ${unit.round} unit ${unit.unit}: check passed (${primary.contributor.slice(0, 8)} ≡ ${check.contributor.slice(0, 8)})`)
    await afterSettlement(ctx, job, unit.round)
    return
  }
  await ctx.db.query(`UPDATE units SET check_status = 'referee' WHERE job_id = $1 AND round = $2 AND unit = $3`, [job.id, unit.round, unit.unit])
  ctx.log(`job ${job.id.slice(0, 10)} round ${unit.round} unit ${unit.unit}: answers disagree (${result.agree ? '' : result.why}); the referee decides`)
  void runReferee(ctx, job.id, unit.round, unit.unit)
}

/**
 * The coordinator computes the unit itself (a canary, or the referee of a disagreement) and judges every
 * answer for it: one that disagrees with the referee is proven wrong. In exact mode the referee's CPU
 * kernels give the GPU's bits; in the default bundle its cpu class is compared within the calibrated
 * tolerance with answers from other classes, and exactly with its own class.
 */
export async function runReferee(ctx: JobContext, jobId: Hash, round: number, index: number): Promise<void> {
  if (!ctx.referee) return
  const key = `${jobId}/${round}/${index}`
  const busy = running.get(ctx) ?? new Set<string>()
  running.set(ctx, busy)
  if (busy.has(key)) return
  busy.add(key)
  let held: HeldLock | null = null
  try {
    // Another coordinator process on the same store computing this unit settles it; this one does not.
    if (ctx.locks && !(held = await ctx.locks.tryAcquire(refereeLockName(key)))) return
    const job = await jobRow(ctx.db, jobId)
    const unit = await unitRow(ctx.db, jobId, round, index)
    if (!unit?.lease_id || unit.check_status !== 'referee') return
    const [primary] = await ctx.db.query<AttemptRow>(`SELECT * FROM attempts WHERE lease_id = $1`, [unit.lease_id])
    if (!primary?.output_hash) return
    // The unit as its primary computed it, with the H it was sized to (its examples are H × B).
    const result = await ctx.referee.compute(job.spec, { jobId, round, unit: index, inputHash: primary.input_hash, ...innerStepsOfExamples(primary.examples, job.spec.training) })
    await ctx.blobs.put(result.updateBytes, result.outputHash)
    await ctx.db.query(`UPDATE units SET referee_hash = $4, referee_class = $5 WHERE job_id = $1 AND round = $2 AND unit = $3`, [
      jobId,
      round,
      index,
      result.outputHash,
      result.deviceClass,
    ])
    const answers = await ctx.db.query<AttemptRow>(
      `SELECT * FROM attempts WHERE job_id = $1 AND round = $2 AND unit = $3 AND status = 'submitted' AND verdict = 'pending' AND input_hash = $4 ORDER BY kind DESC, lease_id`,
      [jobId, round, index, primary.input_hash],
    )
    // Judge every answer first, then record the passes before any conviction: a conviction reopens the
    // unit and would otherwise settle the honest answers for it as if nobody had compared them.
    const verdicts = await Promise.all(
      answers.map(async (a) => ({
        a,
        verdict: await agreement(ctx, job.spec, { hash: a.output_hash!, deviceClass: a.device_class! }, { hash: result.outputHash, deviceClass: result.deviceClass }),
      })),
    )
    const now = ctx.now()
    for (const { a } of verdicts.filter((v) => v.verdict.agree)) {
      await ctx.db.transaction(async (tx) => {
        const passed = await tx.query(
          `UPDATE attempts SET verdict = 'passed', verdict_at = $2, verdict_reason = 'agreed with the referee' WHERE lease_id = $1 AND verdict = 'pending' RETURNING lease_id`,
          [a.lease_id, now],
        )
        if (passed.length) await recordReputation(tx, a.contributor, 'passed', now)
      })
    }
    let primaryWrong = false
    let askClass: string | null = null
    // Checkers first: the primary's conviction reopens the unit, and would leave their answers to be judged
    // again, alone.
    verdicts.sort((x, y) => Number(x.a.lease_id === primary.lease_id) - Number(y.a.lease_id === primary.lease_id))
    for (const { a, verdict } of verdicts) {
      if (verdict.agree) continue
      // Beyond the tolerance from a referee of another class (default bundle): the calibration's honest tail
      // could put an honest answer here, so it convicts nobody. The primary waits for a third run in its
      // own class; a checker's answer is simply not counted.
      if (comparisonRule(job.spec.kernelBundle, a.device_class!, result.deviceClass) === 'tolerance') {
        if (a.lease_id === primary.lease_id) askClass = a.device_class
        else await settleInconclusive(ctx, a, `${verdict.why} against the coordinator's re-execution, in another device class`)
        continue
      }
      if (a.lease_id === primary.lease_id) primaryWrong = true
      await convict(ctx, a, `round ${round} unit ${index}: ${verdict.why} against the coordinator's own re-execution`, result.outputHash)
    }
    if (askClass) {
      await ctx.db.query(
        `UPDATE units SET check_kind = 'class', check_status = 'wanted', check_class = $5, check_wanted_at = $6
          WHERE job_id = $1 AND round = $2 AND unit = $3 AND lease_id = $4`,
        [jobId, round, index, primary.lease_id, askClass, ctx.now()],
      )
      ctx.log(`job ${jobId.slice(0, 10)} round ${round} unit ${index}: beyond the tolerance from the referee's class; asking for a run in ${askClass}`)
      return
    }
    // A wrong primary of the current round was reopened by its conviction; one of a closed round stays in
    // place as evidence, its check over (the unit reads 'rejected').
    await ctx.db.query(`UPDATE units SET check_status = $5 WHERE job_id = $1 AND round = $2 AND unit = $3 AND lease_id = $4`, [
      jobId,
      round,
      index,
      primary.lease_id,
      primaryWrong ? null : 'passed',
    ])
    await afterSettlement(ctx, job, round)
  } catch (error) {
    ctx.log(`referee for job ${jobId.slice(0, 10)} round ${round} unit ${index} failed: ${(error as Error).message}; retried on the next tick`)
  } finally {
    busy.delete(key)
    await held?.release()
  }
}

/**
 * A check's answer whose primary is gone: the referee computes the unit from the input the answer claims
 * and judges it by the usual rules. Without a referee, or beyond the tolerance from a referee of another
 * class, it is inconclusive (not paid, nobody flagged).
 */
export async function judgeAlone(ctx: JobContext, attempt: AttemptRow): Promise<void> {
  const key = `alone/${attempt.lease_id}`
  const busy = running.get(ctx) ?? new Set<string>()
  running.set(ctx, busy)
  if (busy.has(key)) return
  busy.add(key)
  let held: HeldLock | null = null
  try {
    if (ctx.locks && !(held = await ctx.locks.tryAcquire(refereeLockName(key)))) return
    const [current] = await ctx.db.query<AttemptRow>(`SELECT * FROM attempts WHERE lease_id = $1`, [attempt.lease_id])
    if (current?.verdict !== 'pending') return
    if (!ctx.referee) return settleInconclusive(ctx, attempt, 'its primary was removed and no referee can judge it alone')
    const job = await jobRow(ctx.db, attempt.job_id)
    const result = await ctx.referee.compute(job.spec, {
      jobId: attempt.job_id,
      round: attempt.round,
      unit: attempt.unit,
      inputHash: attempt.input_hash,
      ...innerStepsOfExamples(attempt.examples, job.spec.training),
    })
    await ctx.blobs.put(result.updateBytes, result.outputHash)
    const verdict = await agreement(ctx, job.spec, { hash: attempt.output_hash!, deviceClass: attempt.device_class! }, { hash: result.outputHash, deviceClass: result.deviceClass })
    if (verdict.agree) {
      const now = ctx.now()
      await ctx.db.transaction(async (tx) => {
        const passed = await tx.query(
          `UPDATE attempts SET verdict = 'passed', verdict_at = $2, verdict_reason = 'agreed with the referee' WHERE lease_id = $1 AND verdict = 'pending' RETURNING lease_id`,
          [attempt.lease_id, now],
        )
        if (passed.length) await recordReputation(tx, attempt.contributor, 'passed', now)
      })
    } else if (comparisonRule(job.spec.kernelBundle, attempt.device_class!, result.deviceClass) === 'tolerance') {
      await settleInconclusive(ctx, attempt, `${verdict.why} against the coordinator's re-execution, in another device class`)
    } else {
      await convict(ctx, attempt, `round ${attempt.round} unit ${attempt.unit}: ${verdict.why} against the coordinator's own re-execution`, result.outputHash)
    }
  } catch (error) {
    ctx.log(`referee for a lone answer (lease ${attempt.lease_id}) failed: ${(error as Error).message}; retried on the next tick`)
  } finally {
    busy.delete(key)
    await held?.release()
  }
}

/** After a verdict: rebuild rounds that lost work, then close the current round if it is now complete. */
async function afterSettlement(ctx: JobContext, job: JobRow, round: number): Promise<void> {
  await rebuildDirtyRounds(ctx, job.id)
  const current = await jobRow(ctx.db, job.id)
  // An asynchronous job averages a settled answer into whichever round is open now.
  if (isAsynchronous(current.spec.training)) await closeRound(ctx, job.id, 'current')
  else if (current.round === round) await closeRound(ctx, job.id, round)
  else ctx.events.emit('progress', job.id)
}

/**
 * The third run, in the primary's device class, is in (the primary was beyond the tolerance from the
 * referee's class). Equal bits from an address with a record clear the primary. A different answer that
 * is within the tolerance of the referee proves the primary wrong (same class, different bits, and the
 * other answer is the one the referee supports). Anything else decides nothing: both are inconclusive.
 */
async function settleClassCheck(ctx: JobContext, job: JobRow, unit: UnitRow, primary: AttemptRow, third: AttemptRow, agree: boolean): Promise<void> {
  const now = ctx.now()
  if (agree && primary.device_class === third.device_class && canVouch(await readReputation(ctx.db, third.contributor))) {
    await ctx.db.transaction(async (tx) => {
      await tx.query(
        `UPDATE attempts SET verdict = 'passed', verdict_at = $2, verdict_reason = 'same bits as another address of its device class' WHERE lease_id = ANY($1::text[]) AND verdict = 'pending'`,
        [[primary.lease_id, third.lease_id], now],
      )
      await tx.query(`UPDATE units SET check_status = 'passed' WHERE job_id = $1 AND round = $2 AND unit = $3`, [job.id, unit.round, unit.unit])
      await recordReputation(tx, primary.contributor, 'passed', now)
      await recordReputation(tx, third.contributor, 'passed', now)
    })
    await afterSettlement(ctx, job, unit.round)
    return
  }
  const thirdSupported =
    !agree &&
    unit.referee_hash !== null &&
    (await agreement(ctx, job.spec, { hash: third.output_hash!, deviceClass: third.device_class! }, { hash: unit.referee_hash, deviceClass: unit.referee_class! })).agree
  if (thirdSupported && primary.device_class === third.device_class) {
    await ctx.db.transaction(async (tx) => {
      await tx.query(`UPDATE attempts SET verdict = 'passed', verdict_at = $2, verdict_reason = 'agreed with the referee' WHERE lease_id = $1 AND verdict = 'pending'`, [third.lease_id, now])
      await recordReputation(tx, third.contributor, 'passed', now)
    })
    await convict(ctx, primary, `round ${unit.round} unit ${unit.unit}: different bits from another answer of its own device class (${primary.device_class}) that agrees with the coordinator's re-execution`, unit.referee_hash)
    await afterSettlement(ctx, job, unit.round)
    return
  }
  await settleInconclusive(ctx, third, 'a third run that settled nothing')
  await settleInconclusive(ctx, primary, 'no answer of its own device class settled a disagreement with the referee of another class')
}

/**
 * Periodic work: peer checks nobody took go to the referee, referee runs cut off by a restart resume, and
 * rounds whose checks all settled close. A cancelled or finished job's stalled checks go to the referee too
 * (nobody will lease them again; an asynchronous job finishes with answers still under check), so its answers
 * settle, are paid or not, and its escrow can be closed; a paused
 * job's wait for a peer until it is resumed.
 */
export async function verificationTick(ctx: JobContext): Promise<void> {
  const now = ctx.now()
  const stalled = await ctx.db.query<{ job_id: Hash; round: number; unit: number }>(
    `UPDATE units u SET check_status = 'referee'
       FROM jobs j
      WHERE j.id = u.job_id AND j.status IN ('active', 'cancelled', 'finished') AND u.check_status = 'wanted' AND u.check_kind = 'peer' AND u.check_wanted_at <= $1
        AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = u.job_id AND a.round = u.round AND a.unit = u.unit
                          AND a.kind = 'check' AND ((a.status = 'submitted' AND a.verdict = 'pending') OR (a.status = 'leased' AND a.expires_at > $2)))
      RETURNING u.job_id, u.round, u.unit`,
    [now - PEER_CHECK_WAIT_MS, now],
  )
  // Third runs nobody of the class took: inconclusive, the unit computed again.
  const unanswered = await ctx.db.query<AttemptRow>(
    `SELECT a.* FROM units u JOIN attempts a ON a.lease_id = u.lease_id
      WHERE u.check_kind = 'class' AND u.check_status = 'wanted' AND u.check_wanted_at <= $1
        AND NOT EXISTS (SELECT 1 FROM attempts c WHERE c.job_id = u.job_id AND c.round = u.round AND c.unit = u.unit AND c.kind = 'check'
                          AND (c.verdict = 'pending' OR (c.status = 'leased' AND c.expires_at > $2)))`,
    [now - CLASS_CHECK_WAIT_MS, now],
  )
  for (const primary of unanswered) await settleInconclusive(ctx, primary, `no address of its device class (${primary.device_class}) ran it again within ${CLASS_CHECK_WAIT_MS / 1000} s`)
  // Check answers whose primary is gone (its contributor was caught): judged alone, also after a restart.
  const orphans = await ctx.db.query<AttemptRow>(
    `SELECT c.* FROM attempts c
      WHERE c.kind = 'check' AND c.status = 'submitted' AND c.verdict = 'pending'
        AND NOT EXISTS (SELECT 1 FROM units u JOIN attempts p ON p.lease_id = u.lease_id
                         WHERE u.job_id = c.job_id AND u.round = c.round AND u.unit = c.unit AND p.verdict = 'pending')`,
  )
  for (const orphan of orphans) await judgeAlone(ctx, orphan)
  const waiting = await ctx.db.query<{ job_id: Hash; round: number; unit: number }>(
    `SELECT job_id, round, unit FROM units WHERE check_status = 'referee'`,
  )
  const seen = new Set<string>()
  for (const u of [...stalled, ...waiting]) {
    const key = `${u.job_id}/${u.round}/${u.unit}`
    if (seen.has(key)) continue
    seen.add(key)
    await runReferee(ctx, u.job_id, u.round, u.unit)
  }
}
