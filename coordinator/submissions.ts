import {
  decodeSubmission,
  isAsynchronous,
  maxStaleness,
  SubmissionFormatError,
  workClaimDigest,
  type SubmitResult,
} from '../src/protocol/index.ts'
import type { JobContext } from './context.ts'
import { CoordinatorError } from './errors.ts'
import { closeRound } from './rounds.ts'
import { attemptRow, jobRow } from './rows.ts'
import { checkSubmission } from './submissionChecks.ts'
import { runReferee, settlePeerCheck } from './verification/checks.ts'
import { detectDoubleSigning } from './verification/convictions.ts'
import { signerKeys } from './verification/signerKeys.ts'
import { decideCheck } from './verification/sampling.ts'
import { recordReputation } from './verification/reputation.ts'

/**
 * Records a contributor's answer for its lease: every check of `checkSubmission` first (nothing is written
 * for a refused answer), then the answer, its sampling for a check (a primary) or its comparison (a check),
 * double-signing detection, and the round's close if it is now complete.
 */
export async function submitAnswer(ctx: JobContext, leaseId: string, body: Uint8Array): Promise<SubmitResult> {
  const { db } = ctx
  let decoded: ReturnType<typeof decodeSubmission>
  try {
    decoded = decodeSubmission(body)
  } catch (error) {
    if (error instanceof SubmissionFormatError) throw new CoordinatorError('malformed_submission', error.message)
    throw error
  }
  const { signed, update } = decoded
  // The signer as recovery would give it, checked against the contributor's known public key when this
  // process has seen it before (verification/signerKeys.ts: same verdict, ~4× less CPU). Nothing below runs
  // unless it is the claimed contributor, so no answer is recorded, averaged or paid on a bad signature.
  const { signer, digest } = await signerKeys.claimSigner(signed, ctx.domain)
  const attempt = signer === signed.claim.contributor ? await attemptRow(db, leaseId) : null
  const job = attempt ? await jobRow(db, attempt.job_id) : null
  const runtime = job ? await ctx.runtimes.get(job.id, job.spec) : null
  let checked: ReturnType<typeof checkSubmission>
  try {
    checked = checkSubmission({
      leaseId,
      signed,
      update,
      signer,
      attempt,
      job: job ?? { id: signed.claim.jobId, round: signed.claim.round, checkpoint: signed.claim.inputHash, status: 'active' },
      maxStaleness: job ? maxStaleness(job.spec.training) : 0,
      shapes: runtime?.shapes ?? [],
      compression: job?.spec.training.compression,
      now: ctx.now(),
    })
  } catch (error) {
    // Only once the unit went to someone else (or the round moved on): a lease merely past its time may
    // still be answered in time by a retry that the clock of a test, or a slow proxy, lets through.
    if (error instanceof CoordinatorError && (error.code === 'lease_expired' || error.code === 'stale_round') && attempt && job && attempt.status !== 'leased') {
      await keepLateClaim(ctx, attempt.lease_id, signed)
    }
    throw error
  }
  const { outputHash } = checked
  const claim = signed.claim
  const spec = job!.spec
  await ctx.blobs.put(update, outputHash)
  const now = ctx.now()
  const isPrimary = checked.attempt.kind === 'primary'
  const decision = isPrimary ? await decideCheck(ctx, spec, claim.contributor) : 'peer'
  // H × B: the unit's own H when it was sized to its contributor (units.inner_steps), the job's otherwise.
  const { batchSize, innerSteps } = spec.training
  const trainLoss = Number.isFinite(signed.trainLoss ?? NaN) ? signed.trainLoss! : null
  const accepted = await db.transaction(async (tx) => {
    const rows = await tx.query<{ examples: number }>(
      `UPDATE attempts SET status = 'submitted', output_hash = $2, device_class = $3, claim = $4, signature = $5, claim_digest = $6,
              examples = $7::int * coalesce((SELECT u.inner_steps FROM units u WHERE u.job_id = attempts.job_id AND u.round = attempts.round AND u.unit = attempts.unit), $11::int),
              train_loss = $8, submitted_at = $9, verdict = $10
        WHERE lease_id = $1 AND status = 'leased' AND expires_at > $9
        RETURNING lease_id, examples`,
      [leaseId, outputHash, claim.deviceClass, JSON.stringify(claim), signed.signature, digest ?? workClaimDigest(claim, ctx.domain), batchSize, trainLoss, now,
        decision === 'unchecked' ? 'unchecked' : 'pending', innerSteps],
    )
    if (rows.length === 0) return null
    const examples = Number(rows[0]!.examples)
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
      // The job row's counter (read by the payment summary) doubles as the guard that the round is still
      // the current one: its row lock orders this accept against a concurrent close.
      // An asynchronous job's guard is the staleness bound instead: the answer must still be averageable.
      const [counter] = await tx.query(
        `UPDATE jobs SET accepted_in_round = accepted_in_round + 1 WHERE id = $1 AND round <= $2::int + $3::int AND status <> 'finished' RETURNING id`,
        [job!.id, claim.round, maxStaleness(spec.training)],
      )
      if (!counter) throw new CoordinatorError('stale_round', `round ${claim.round} fell too far behind while this claim was being recorded`)
    }
    await recordReputation(tx, claim.contributor, 'accepted', now)
    return true
  })
  if (accepted === null) throw new CoordinatorError('already_submitted', `lease ${leaseId} was settled by a concurrent request`)

  const after = (await attemptRow(db, leaseId))!
  if (await detectDoubleSigning(ctx, after)) {
    return { accepted: true, round: claim.round, unit: claim.unit, roundClosed: false }
  }
  if (!isPrimary) await settlePeerCheck(ctx, after)
  else if (decision === 'referee') void runReferee(ctx, job!.id, claim.round, claim.unit)
  // The check's settlement may already have closed the round; either way the answer closed it.
  if (isAsynchronous(spec.training)) {
    // The contributor is answered now, not after the close its answer may complete (a close is hundreds of
    // milliseconds of averaging and evaluation; asynchronous contributors have their next unit already).
    // A close under way takes this answer in at the next one, tried behind it.
    void closeRound(ctx, job!.id, 'current').catch((error: unknown) => ctx.log(`closing after a submission failed: ${String(error)}`))
    return { accepted: true, round: claim.round, unit: claim.unit, roundClosed: false }
  }
  const roundClosed = (await closeRound(ctx, job!.id, claim.round)) ||
    (await jobRow(db, job!.id)).round > claim.round
  return { accepted: true, round: claim.round, unit: claim.unit, roundClosed }
}

/**
 * A validly signed answer that came too late is still the signer's word on that unit: kept (never paid,
 * never averaged) so that two different answers of one address for one unit are seen as double signing.
 */
async function keepLateClaim(ctx: JobContext, leaseId: string, signed: ReturnType<typeof decodeSubmission>['signed']): Promise<void> {
  const { claim } = signed
  const rows = await ctx.db.query(
    `UPDATE attempts SET status = 'late', output_hash = $2, device_class = $3, claim = $4, signature = $5, claim_digest = $6, submitted_at = $7
      WHERE lease_id = $1 AND status = 'expired' AND contributor = $8 AND round = $9 AND unit = $10 AND input_hash = $11
      RETURNING lease_id`,
    [leaseId, claim.outputHash, claim.deviceClass, JSON.stringify(claim), signed.signature, workClaimDigest(claim, ctx.domain), ctx.now(),
      claim.contributor, claim.round, claim.unit, claim.inputHash],
  )
  if (rows.length) await detectDoubleSigning(ctx, (await attemptRow(ctx.db, leaseId))!)
}
