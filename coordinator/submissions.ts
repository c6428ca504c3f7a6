import { getAddress } from 'viem'
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
import { closeCurrentRoundSoon, closeRound } from './rounds.ts'
import { attemptRow, jobRow, type AttemptRow, type JobRow } from './rows.ts'
import { checkSubmission } from './submissionChecks.ts'
import { runReferee, settlePeerCheck } from './verification/checks.ts'
import { detectDoubleSigning } from './verification/convictions.ts'
import { signerKeys } from './verification/signerKeys.ts'
import { decideCheck } from './verification/sampling.ts'
import { reputationChangeSql, reputationFrom, type ReputationRow } from './verification/reputation.ts'

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
  // The lease's attempt, its job and the signer's reputation (for the check sampling below), in one read.
  const [read] = signer === signed.claim.contributor
    ? await db.query<JobRow & { attempt: AttemptRow; reputation: ReputationRow | null }>(
      `SELECT j.*, to_jsonb(a) AS attempt, to_jsonb(r) AS reputation
         FROM attempts a JOIN jobs j ON j.id = a.job_id LEFT JOIN reputation r ON r.address = $2
        WHERE a.lease_id = $1`,
      [leaseId, getAddress(signer!)],
    )
    : []
  const { attempt = null, reputation = null, ...jobColumns } = read ?? {}
  const job = read ? (jobColumns as JobRow) : null
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
  const decision = isPrimary ? await decideCheck(ctx, spec, claim.contributor, reputationFrom(reputation, claim.contributor)) : 'peer'
  // H × B: the unit's own H when it was sized to its contributor (units.inner_steps), the job's otherwise.
  const { batchSize, innerSteps } = spec.training
  const trainLoss = Number.isFinite(signed.trainLoss ?? NaN) ? signed.trainLoss! : null
  // One statement records the answer: the attempt, then (a primary) its unit and the job's counter, then the
  // contributor's reputation, each only if the one before it was written; a refusal rolls it all back.
  // The job row's counter (read by the payment summary) doubles as the guard that the round is still the
  // current one: its row lock orders this accept against a concurrent close. An asynchronous job's guard is
  // the staleness bound instead: the answer must still be averageable.
  const recorded = await db.transaction(async (tx) => {
    const [row] = await tx.query<AttemptRow & { units_accepted: string; accepted_in_round: number | null }>(
      `WITH answered AS (
         UPDATE attempts SET status = 'submitted', output_hash = $2, device_class = $3, claim = $4, signature = $5, claim_digest = $6,
                examples = $7::int * coalesce((SELECT u.inner_steps FROM units u WHERE u.job_id = attempts.job_id AND u.round = attempts.round AND u.unit = attempts.unit), $11::int),
                train_loss = $8, submitted_at = $9, verdict = $10
          WHERE lease_id = $1 AND status = 'leased' AND expires_at > $9
          RETURNING *),
       accepted AS (
         UPDATE units SET status = 'accepted', output_hash = $2, signature = $5, device_class = $3, examples = (SELECT examples FROM answered),
                train_loss = $8, accepted_at = $9, check_kind = $12, check_status = $13, check_wanted_at = $14
          WHERE $15 AND lease_id = $1 AND status = 'leased' AND EXISTS (SELECT 1 FROM answered)
          RETURNING unit),
       counted AS (
         UPDATE jobs SET accepted_in_round = accepted_in_round + 1
          WHERE id = $16 AND round <= $17::int + $18::int AND status <> 'finished' AND EXISTS (SELECT 1 FROM accepted)
          RETURNING accepted_in_round),
       credited AS (${reputationChangeSql('accepted', 19, 9, '($15 = false OR EXISTS (SELECT 1 FROM counted)) AND EXISTS (SELECT 1 FROM answered)')})
       SELECT answered.*, (SELECT count(*) FROM accepted) AS units_accepted, (SELECT accepted_in_round FROM counted) AS accepted_in_round FROM answered`,
      [leaseId, outputHash, claim.deviceClass, JSON.stringify(claim), signed.signature, digest ?? workClaimDigest(claim, ctx.domain), batchSize, trainLoss, now,
        decision === 'unchecked' ? 'unchecked' : 'pending', innerSteps,
        decision === 'unchecked' ? null : decision, decision === 'unchecked' ? null : decision === 'peer' ? 'wanted' : 'referee', decision === 'peer' ? now : null,
        isPrimary, job!.id, claim.round, maxStaleness(spec.training), getAddress(claim.contributor)],
    )
    if (!row) return null
    if (isPrimary && Number(row.units_accepted) === 0) throw new CoordinatorError('lease_expired', `lease ${leaseId} no longer holds its unit; the unit went back to the queue`)
    if (isPrimary && row.accepted_in_round == null) throw new CoordinatorError('stale_round', `round ${claim.round} fell too far behind while this claim was being recorded`)
    return row
  })
  if (recorded === null) throw new CoordinatorError('already_submitted', `lease ${leaseId} was settled by a concurrent request`)
  const { units_accepted: _units, accepted_in_round: acceptedInRound, ...after } = recorded

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
    closeCurrentRoundSoon(ctx, job!.id)
    return { accepted: true, round: claim.round, unit: claim.unit, roundClosed: false }
  }
  // A synchronous round closes once all its K units are answered and settled: while the job's counter of
  // accepted primaries (at least the number of them, as only a reopened unit lowers it) is below K, this
  // answer cannot have completed it, and the close's reads are skipped.
  if (isPrimary && Number(acceptedInRound) < spec.training.unitsPerRound) {
    ctx.events.emit('progress', job!.id)
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
