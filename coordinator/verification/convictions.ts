import type { Hash } from '../../src/protocol/index.ts'
import type { JobContext } from '../context.ts'
import { rebuildDirtyRounds } from '../rounds.ts'
import type { AttemptRow } from '../rows.ts'
import { judgeAlone, runReferee } from './checks.ts'
import { recordFailure } from './reputation.ts'

/**
 * An answer nobody could decide about: not averaged (its round is reissued or rebuilt without it), not
 * paid, and nobody is flagged, since an honest answer in the calibration's tail can land here. A liar
 * claiming a made-up device class to force this path gains nothing: it is not paid.
 */
export async function settleInconclusive(ctx: JobContext, attempt: AttemptRow, reason: string): Promise<void> {
  const now = ctx.now()
  const job = await ctx.db.transaction(async (tx) => {
    const changed = await tx.query(
      `UPDATE attempts SET verdict = 'inconclusive', verdict_reason = $2, verdict_at = $3 WHERE lease_id = $1 AND verdict = 'pending' RETURNING lease_id`,
      [attempt.lease_id, reason, now],
    )
    if (!changed.length || attempt.kind !== 'primary') return null
    const reopened = await tx.query<{ job_id: Hash }>(
      `UPDATE units u SET status = 'open', lease_id = NULL, leased_to = NULL, lease_expires_at = NULL, output_hash = NULL,
              check_kind = NULL, check_status = NULL, check_wanted_at = NULL, referee_hash = NULL, check_class = NULL, referee_class = NULL
         FROM jobs j WHERE u.lease_id = $1 AND j.id = u.job_id AND u.applied_round IS NULL
          AND (j.round = u.round OR coalesce((j.spec->'training'->>'maxStaleness')::int, 0) > 0) RETURNING u.job_id`,
      [attempt.lease_id],
    )
    if (reopened.length) {
      await tx.query(`UPDATE jobs SET accepted_in_round = greatest(0, accepted_in_round - 1) WHERE id = $1`, [attempt.job_id])
    } else {
      await tx.query(`UPDATE units SET check_status = NULL WHERE lease_id = $1`, [attempt.lease_id])
      // The round that averaged it: its own (synchronous) or the one open when it settled (asynchronous).
      await tx.query(
        `UPDATE rounds SET dirty = true WHERE job_id = $1 AND round = coalesce((SELECT applied_round FROM units WHERE lease_id = $3), $2)`,
        [attempt.job_id, attempt.round, attempt.lease_id],
      )
    }
    return attempt.job_id
  })
  ctx.log(`job ${attempt.job_id.slice(0, 10)} round ${attempt.round} unit ${attempt.unit}: ${attempt.contributor.slice(0, 8)}'s answer inconclusive (${reason})`)
  if (job) {
    await rebuildDirtyRounds(ctx, job)
    ctx.events.emit('progress', job)
  }
}

/**
 * `attempt` is proven wrong. Its claim becomes evidence (a verdict the coordinator posts on-chain inside
 * the challenge window of the epoch that commits it), its contributor is banned, and everything it did that
 * nobody verified is dropped: unchecked answers leave the model (rounds holding them are rebuilt), live
 * leases are revoked, and units it vouched for as a checker are examined again by the referee. Work of
 * its that passed an honest check stays: it was right.
 */
export async function convict(ctx: JobContext, attempt: AttemptRow, reason: string, refereeHash: Hash | null, dispute: { kind: 'verdict' | 'double_sign'; otherLeaseId?: string } = { kind: 'verdict' }): Promise<void> {
  const now = ctx.now()
  const contributor = attempt.contributor
  const affected = await ctx.db.transaction(async (tx) => {
    await tx.query(`UPDATE attempts SET verdict = 'rejected', verdict_reason = $2, verdict_at = $3 WHERE lease_id = $1`, [attempt.lease_id, reason, now])
    const disputeId = dispute.kind === 'verdict' ? `verdict:${attempt.lease_id}` : `double_sign:${contributor}:${attempt.job_id}:${attempt.round}:${attempt.unit}`
    await tx.query(
      `INSERT INTO disputes (id, kind, job_id, round, unit, contributor, lease_id, other_lease_id, referee_hash, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
      [disputeId, dispute.kind, attempt.job_id, attempt.round, attempt.unit, contributor, attempt.lease_id, dispute.otherLeaseId ?? null, refereeHash, now],
    )
    const dropped = await tx.query<{ lease_id: string; job_id: Hash; round: number; unit: number; kind: string }>(
      `UPDATE attempts SET verdict = 'dropped', verdict_at = $2, verdict_reason = $3
        WHERE contributor = $1 AND status = 'submitted' AND verdict IN ('unchecked', 'pending')
        RETURNING lease_id, job_id, round, unit, kind`,
      [contributor, now, `dropped unverified: ${contributor} was caught submitting wrong work`],
    )
    const revoked = await tx.query<{ lease_id: string }>(
      `UPDATE attempts SET status = 'revoked' WHERE contributor = $1 AND status = 'leased' RETURNING lease_id`,
      [contributor],
    )
    const removed = [attempt.lease_id, ...dropped.filter((d) => d.kind === 'primary').map((d) => d.lease_id), ...revoked.map((r) => r.lease_id)]
    // Units not yet averaged whose primary is gone open again for someone else; their pending checks
    // (answers of other addresses compared with nothing now) are judged alone by the referee.
    const orphaned: AttemptRow[] = []
    const reopened = await tx.query<{ job_id: Hash; round: number; unit: number; was_accepted: boolean }>(
      `UPDATE units u SET status = 'open', lease_id = NULL, leased_to = NULL, lease_expires_at = NULL, output_hash = NULL,
              check_kind = NULL, check_status = NULL, check_wanted_at = NULL, referee_hash = NULL, check_class = NULL, referee_class = NULL
         FROM jobs j, (SELECT lease_id, status = 'accepted' AS was_accepted FROM units WHERE lease_id = ANY($1::text[])) prev
        WHERE u.lease_id = prev.lease_id AND j.id = u.job_id AND u.applied_round IS NULL
          AND (j.round = u.round OR coalesce((j.spec->'training'->>'maxStaleness')::int, 0) > 0)
        RETURNING u.job_id, u.round, u.unit, prev.was_accepted`,
      [removed],
    )
    for (const u of reopened) {
      if (u.was_accepted) await tx.query(`UPDATE jobs SET accepted_in_round = greatest(0, accepted_in_round - 1) WHERE id = $1 AND round = $2`, [u.job_id, u.round])
      const orphans = await tx.query<AttemptRow>(
        `SELECT * FROM attempts WHERE job_id = $1 AND round = $2 AND unit = $3 AND kind = 'check' AND status = 'submitted' AND verdict = 'pending'`,
        [u.job_id, u.round, u.unit],
      )
      orphaned.push(...orphans)
    }
    // Closed rounds that averaged a removed primary are rebuilt without it.
    const dirty = await tx.query<{ job_id: Hash }>(
      `UPDATE rounds r SET dirty = true FROM attempts a LEFT JOIN units u ON u.lease_id = a.lease_id
        WHERE a.lease_id = ANY($1::text[]) AND a.kind = 'primary' AND r.job_id = a.job_id AND r.round = coalesce(u.applied_round, a.round)
        RETURNING r.job_id`,
      [removed],
    )
    // Answers it vouched for as a checker were only as good as its word: the referee looks again.
    const vouched = await tx.query<{ job_id: Hash; round: number; unit: number; primary: string }>(
      `SELECT u.job_id, u.round, u.unit, u.lease_id AS primary FROM attempts c
         JOIN units u ON u.job_id = c.job_id AND u.round = c.round AND u.unit = c.unit
        WHERE c.contributor = $1 AND c.kind = 'check' AND c.verdict = 'passed' AND u.lease_id IS NOT NULL`,
      [contributor],
    )
    for (const v of vouched) {
      await tx.query(`UPDATE attempts SET verdict = 'pending' WHERE lease_id = $1 AND verdict = 'passed'`, [v.primary])
      await tx.query(`UPDATE units SET check_kind = 'referee', check_status = 'referee' WHERE job_id = $1 AND round = $2 AND unit = $3`, [v.job_id, v.round, v.unit])
    }
    await recordFailure(tx, contributor, reason, 1 + dropped.length, now)
    return { jobs: new Set([attempt.job_id, ...dirty.map((d) => d.job_id), ...reopened.map((r) => r.job_id)]), vouched, orphaned }
  })
  ctx.log(`${contributor} caught: ${reason}; banned, ${affected.vouched.length} unit(s) it vouched for go to the referee`)
  for (const v of affected.vouched) void runReferee(ctx, v.job_id, v.round, v.unit)
  for (const orphan of affected.orphaned) if (orphan.contributor !== contributor) void judgeAlone(ctx, orphan)
  for (const jobId of affected.jobs) {
    await rebuildDirtyRounds(ctx, jobId)
    ctx.events.emit('progress', jobId)
  }
}

/**
 * Double signing: two claims by one address for the same unit and input, in the same device class, with
 * different outputs. Within a class the kernels give the same bits, so one of them is a lie whatever the
 * referee says; the pair is objective evidence anyone could submit (DisputeResolver.slashDoubleSign).
 */
export async function detectDoubleSigning(ctx: JobContext, attempt: AttemptRow): Promise<boolean> {
  if (!attempt.output_hash || !attempt.device_class) return false
  const [other] = await ctx.db.query<AttemptRow>(
    `SELECT * FROM attempts
      WHERE contributor = $1 AND job_id = $2 AND round = $3 AND unit = $4 AND input_hash = $5 AND device_class = $6
        AND output_hash IS NOT NULL AND output_hash <> $7 AND signature IS NOT NULL AND lease_id <> $8
      LIMIT 1`,
    [attempt.contributor, attempt.job_id, attempt.round, attempt.unit, attempt.input_hash, attempt.device_class, attempt.output_hash, attempt.lease_id],
  )
  if (!other) return false
  await convict(ctx, attempt, `round ${attempt.round} unit ${attempt.unit}: signed two different outputs for the same unit and input in one device class (${attempt.device_class})`, null, {
    kind: 'double_sign',
    otherLeaseId: other.lease_id,
  })
  if (other.status === 'submitted' && other.verdict !== 'rejected') {
    await ctx.db.query(`UPDATE attempts SET verdict = 'rejected', verdict_reason = 'one of two conflicting claims', verdict_at = $2 WHERE lease_id = $1`, [other.lease_id, ctx.now()])
  }
  return true
}
