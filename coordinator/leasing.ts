import { randomUUID } from 'node:crypto'
import type { Address } from 'viem'
import {
  isAsynchronous,
  issuedInnerSteps,
  maxStaleness,
  stakeNeeded,
  verificationPolicy,
  type Hash,
  type LeaseReleaseResult,
  type LeaseResponse,
} from '../src/protocol/index.ts'
import type { JobContext } from './context.ts'
import { CoordinatorError } from './errors.ts'
import type { JobRow, UnitRow } from './rows.ts'
import { isBanned, recordReputation, reputationFrom, type ReputationRow } from './verification/reputation.ts'

/** How soon a contributor asks again while a paid job waits for its escrow. */
const PAYMENT_WAIT_MS = 2000

/**
 * How long a contributor should wait before asking again when every unit of the round is out. Units of
 * the presets take seconds, so a round usually closes well before the next lease would expire: ask
 * again soon rather than at the expiry. Pages also wake early on the job's WebSocket push.
 */
export const MIN_RETRY_MS = 250
export const MAX_RETRY_MS = 1000

/**
 * An address whose leases ran out unanswered more than this many times beyond its accepted units is on
 * probation: one live lease, a quarter of the job's lease time, and never the unit it let lapse. A client
 * that takes units and never answers then holds one slot for a short while at a time, while an honest tab
 * that lost a few leases to a closed laptop lid keeps its normal share. Nothing else happens to it: a slow
 * tab is not a cheat.
 */
const ABANDON_SLACK = 2
const PROBATION_TTL_SHARE = 4

/**
 * Most units one round of an asynchronous job may create on demand. Each live address holds at most
 * `maxLiveLeases` of them and expired ones are leased again before a new one is made, so honest rounds stay
 * far below this; it only bounds what a swarm of fresh addresses can make the store hold.
 */
export const MAX_UNITS_PER_ROUND = 10_000

/**
 * Leases a unit of the job's current round to `contributor` (already authenticated by its signature):
 * first a unit that waits for a check by someone other than its primary, then an open unit, then one
 * whose lease ran out. A check's lease is the same as any other, so the checker cannot tell.
 * `referrer`, signed by the contributor in its lease request, is recorded with the attempt: the unit's pay
 * is split with it when an epoch pays the attempt (settlement/earnings.ts).
 * `askedInnerSteps`, the H the contributor sized to its device (signed too), is clamped to the job's
 * [innerSteps, maxInnerSteps] and recorded on the unit (units.inner_steps, null for the job's own H); a
 * check of that unit is issued with the same H, so it re-executes the same computation.
 */
export async function leaseUnit(
  ctx: JobContext,
  jobId: string,
  contributor: Address,
  referrer: Address | null = null,
  askedInnerSteps: number | null = null,
): Promise<LeaseResponse> {
  // The job, the asker's reputation and whether any unit of the job waits for a check, in one statement
  // (the last on an index of only such units): most leases then skip the search for a check altogether.
  // A check wanted a moment after this read is found by the next lease, as if this one had come earlier.
  const [head] = await ctx.db.query<JobRow & { reputation: ReputationRow | null; wants_check: boolean }>(
    `SELECT j.*, to_jsonb(r) AS reputation,
            EXISTS (SELECT 1 FROM units w WHERE w.job_id = j.id AND w.check_status = 'wanted') AS wants_check
       FROM jobs j LEFT JOIN reputation r ON r.address = $2 WHERE j.id = $1`,
    [jobId, contributor],
  )
  if (!head) throw new CoordinatorError('job_not_found', `no job ${jobId}`)
  const { reputation: joined, wants_check: wantsCheck, ...job } = head
  if (job.status === 'finished') return { status: 'finished' }
  // The owner's word (coordinator/owner.ts): no new unit. Leases already out may still be answered.
  if (job.status === 'paused') throw new CoordinatorError('job_paused', `job ${job.id} is paused by its owner: no new units until it is resumed`)
  if (job.status === 'cancelled') throw new CoordinatorError('job_cancelled', `job ${job.id} was cancelled by its owner: it issues no more units`)
  const policy = verificationPolicy(job.spec)
  const reputation = reputationFrom(joined, contributor)
  if (isBanned(reputation)) {
    throw new CoordinatorError('address_banned', `${contributor} gets no more units: ${reputation.banned_reason ?? 'it was caught submitting wrong work'}`)
  }
  if (job.spec.payment) {
    const blocker = ctx.payments
      ? await ctx.payments.leaseBlocker({ id: job.id, spec: job.spec, round: job.round })
      : 'this coordinator runs without a chain, so a paid job cannot be funded'
    if (blocker) return { status: 'wait', retryAfterMs: PAYMENT_WAIT_MS, reason: blocker }
    const minStake = stakeNeeded(policy, BigInt(job.spec.payment.pricePerUnit), ctx.stakes ? await ctx.stakes.slashBps() : 0)
    const stake = ctx.stakes ? await ctx.stakes.stakeOf(contributor) : 0n
    const format = (amount: bigint) => ctx.stakes?.formatAmount(amount) ?? `${amount} base units`
    if (stake < minStake) {
      throw new CoordinatorError(
        'stake_required',
        `this paid job needs a stake of at least ${format(minStake)} in StakeManager before it leases units; ${contributor} has ${format(stake)}`,
      )
    }
  }
  const now = ctx.now()
  const probation = Number(reputation.leases_abandoned) > Number(reputation.units_accepted) + ABANDON_SLACK
  const maxLive = probation ? 1 : policy.maxLiveLeases
  const ttlMs = (job.spec.training.leaseTtlSeconds * 1000) / (probation ? PROBATION_TTL_SHARE : 1)
  const leaseId = randomUUID()
  const issuedH = issuedInnerSteps(job.spec.training, askedInnerSteps)
  const leased = await ctx.db.transaction(async (tx) => {
    // Counted under a lock per (job, address), inside the transaction that takes the unit: concurrent
    // requests of one address are serialised, so the cap holds however many arrive at once.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, [job.id, contributor])
    const tooMany = (live: string | number) =>
      new CoordinatorError(
        'too_many_leases',
        `${contributor} already holds ${live} live lease(s) in this job, the most it may hold${probation ? ' after leaving leases unanswered' : ''}; answer or let them expire first`,
      )
    // The address's live leases, counted after the lock (each statement sees what committed before it).
    const live = (job: string, address: string, at: string) =>
      `SELECT count(*) AS n FROM attempts WHERE job_id = ${job} AND contributor = ${address} AND status = 'leased' AND expires_at > ${at}`
    // The attempt is written in the same transaction that locks its unit, so two concurrent requests can
    // never both take one check (the second one's NOT EXISTS sees the first's live attempt).
    // A primary trains from the current checkpoint; a check (asynchronous jobs may check a unit of an
    // earlier round) from the checkpoint its unit was issued with.
    const record = async (unit: number, kind: 'primary' | 'check', innerSteps: number | null, round = job.round, inputHash: Hash = job.checkpoint) => {
      await tx.query(
        `INSERT INTO attempts (lease_id, job_id, round, unit, contributor, kind, issued_at, expires_at, input_hash, referrer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [leaseId, job.id, round, unit, contributor, kind, now, now + ttlMs, inputHash, referrer],
      )
      return { unit, kind, round, inputHash, innerSteps }
    }
    let counted = false
    if (wantsCheck) {
      const [held] = await tx.query<{ n: string }>(live('$1', '$2', '$3'), [job.id, contributor, now])
      if (Number(held?.n ?? 0) >= maxLive) throw tooMany(held!.n)
      counted = true
      // A check: a unit whose answer waits for a second opinion from an address that has not answered it.
      // A third run in the primary's device class goes only to an address whose last answer was of that class.
      const [check] = await tx.query<UnitRow & { input_hash: Hash; inner_steps: number | null }>(
        `SELECT u.*, (SELECT p.input_hash FROM attempts p WHERE p.lease_id = u.lease_id) AS input_hash FROM units u
          WHERE u.job_id = $1 AND u.round BETWEEN $2::int - $5::int AND $2 AND u.status = 'accepted' AND u.check_status = 'wanted'
            AND (u.check_kind = 'peer' OR (u.check_kind = 'class' AND u.check_class = (
                  SELECT device_class FROM attempts WHERE contributor = $3 AND status = 'submitted' AND device_class IS NOT NULL
                   ORDER BY submitted_at DESC LIMIT 1)))
            AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = u.job_id AND a.round = u.round AND a.unit = u.unit
                              AND (a.contributor = $3 OR (a.kind = 'check' AND a.status = 'leased' AND a.expires_at > $4)))
          ORDER BY u.round, u.unit LIMIT 1
          FOR UPDATE OF u SKIP LOCKED`,
        [job.id, job.round, contributor, now, maxStaleness(job.spec.training)],
      )
      if (check) return record(check.unit, 'check', check.inner_steps == null ? null : Number(check.inner_steps), Number(check.round), check.input_hash)
    }
    // A primary's attempt is written by the statement that takes (or makes) its unit, as a WITH clause.
    // Parameters of the statements below: $1 job, $2 round, $3 lease, $4 address, $5 expiry, $6 H, $7 now,
    // $8 checkpoint, $9 referrer, then the statement's own.
    const shared = [job.id, job.round, leaseId, contributor, now + ttlMs, issuedH, now, job.checkpoint, referrer]
    const RECORD_PRIMARY = `INSERT INTO attempts (lease_id, job_id, round, unit, contributor, kind, issued_at, expires_at, input_hash, referrer)
         SELECT $3::text, $1::text, $2::int, unit, $4::text, 'primary', $7::bigint, $5::bigint, $8::text, $9::text FROM taken`
    type Taken = { live: string | null; unit: number | null; previous_lease: string | null; previous_holder: string | null }
    // Open units first, in index order, then units whose lease ran out. Two index range scans instead of
    // one OR over the whole round, so a lease costs the same with K = 4 or K = 10,000. The first one also
    // counts the address's live leases (when no check search counted them) and takes nothing at the cap.
    const take = async (condition: string) => {
      const count = !counted
      counted = true
      const [row] = await tx.query<Taken>(
        `WITH ${count ? `live AS (${live('$1', '$4', '$7')}),` : ''}
         candidate AS (
           SELECT job_id, round, unit, lease_id AS previous_lease, leased_to AS previous_holder FROM units
            WHERE job_id = $1 AND round = $2 AND ${condition} ${count ? `AND (SELECT n FROM live) < $10` : ''}
            ORDER BY unit LIMIT 1
            FOR UPDATE SKIP LOCKED),
         taken AS (
           UPDATE units u SET status = 'leased', lease_id = $3, leased_to = $4, lease_expires_at = $5,
                  leases_issued = u.leases_issued + 1, inner_steps = $6::int
             FROM candidate c
            WHERE u.job_id = c.job_id AND u.round = c.round AND u.unit = c.unit
           RETURNING u.unit, c.previous_lease, c.previous_holder),
         recorded AS (${RECORD_PRIMARY})
         SELECT ${count ? '(SELECT n FROM live)' : 'NULL'} AS live, taken.* FROM (SELECT 1) AS one LEFT JOIN taken ON true`,
        count ? [...shared, maxLive] : shared,
      )
      if (count && Number(row?.live ?? 0) >= maxLive) throw tooMany(row!.live!)
      return row?.unit == null ? [] : [row]
    }
    // Asynchronous rounds follow the pool: when no unit is left to take, a new one is made for the asker.
    // Its index is the round's next; the job-wide lock orders concurrent creations.
    const create = async () => {
      await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1), $2)`, [job.id, job.round])
      return tx.query<Taken>(
        `WITH taken AS (
           INSERT INTO units (job_id, round, unit, status, lease_id, leased_to, lease_expires_at, leases_issued, inner_steps)
           SELECT $1, $2, coalesce(max(unit), -1) + 1, 'leased', $3, $4, $5, 1, $6::int FROM units WHERE job_id = $1 AND round = $2
           HAVING coalesce(max(unit), -1) + 1 < $10
           RETURNING unit, NULL::text AS previous_lease, NULL::text AS previous_holder),
         recorded AS (${RECORD_PRIMARY})
         SELECT NULL AS live, taken.* FROM taken`,
        [...shared, MAX_UNITS_PER_ROUND],
      )
    }
    let rows = await take(`status = 'open'`)
    if (rows.length === 0) {
      rows = probation
        ? await take(`status = 'leased' AND lease_expires_at <= $7 AND leased_to <> $4`)
        : await take(`status = 'leased' AND lease_expires_at <= $7`)
    }
    if (rows.length === 0 && isAsynchronous(job.spec.training)) rows = await create()
    const row = rows[0]
    if (!row) return null
    if (row.previous_lease) {
      const expired = await tx.query(`UPDATE attempts SET status = 'expired' WHERE lease_id = $1 AND status = 'leased' RETURNING lease_id`, [row.previous_lease])
      if (expired.length && row.previous_holder) await recordReputation(tx, row.previous_holder, 'abandoned', now)
    }
    return { unit: Number(row.unit), kind: 'primary' as const, round: job.round, inputHash: job.checkpoint, innerSteps: issuedH }
  })
  if (leased) {
    return {
      status: 'leased',
      lease: {
        id: leaseId,
        contributor,
        expiresAt: now + ttlMs,
        unit: { jobId: job.id, round: leased.round, unit: leased.unit, inputHash: leased.inputHash, ...(leased.innerSteps ? { innerSteps: leased.innerSteps } : {}) },
      },
    }
  }
  const [next] = await ctx.db.query<{ next_expiry: string | null; open: string }>(
    `SELECT min(lease_expires_at) FILTER (WHERE status = 'leased') AS next_expiry,
            count(*) FILTER (WHERE status <> 'accepted' OR check_status IN ('wanted', 'referee')) AS open
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

/**
 * Hands a live lease back before its time is up (a tab stopped or paused): its unit is leasable again at
 * once, by anyone, instead of after the rest of its lease time. Knowing the lease id is the authority, as
 * for a submission: only its holder was told it. A release is not an abandoned lease: the holder said so
 * in time, so it counts nothing against the address's probation. A lease already answered, released,
 * run out or revoked cannot be handed back (`lease_not_live`, or `already_submitted` once answered).
 */
export async function releaseLease(ctx: JobContext, leaseId: string): Promise<LeaseReleaseResult> {
  const now = ctx.now()
  const released = await ctx.db.transaction(async (tx) => {
    // Locked so that a submission or a re-lease of the same unit racing this release waits for it.
    const [attempt] = await tx.query<{ job_id: string; round: number; unit: number; kind: string; status: string; expires_at: string | number }>(
      `SELECT job_id, round, unit, kind, status, expires_at FROM attempts WHERE lease_id = $1 FOR UPDATE`,
      [leaseId],
    )
    if (!attempt) throw new CoordinatorError('lease_not_found', `no lease ${leaseId}`)
    if (attempt.status === 'submitted' || attempt.status === 'late') {
      throw new CoordinatorError('already_submitted', `lease ${leaseId} was already answered; there is nothing to hand back`)
    }
    if (attempt.status !== 'leased') {
      throw new CoordinatorError('lease_not_live', `lease ${leaseId} is no longer held (${attempt.status}); there is nothing to hand back`)
    }
    if (Number(attempt.expires_at) <= now) {
      // Past its time the unit is already leasable; a release now would only hide an abandoned lease.
      throw new CoordinatorError('lease_not_live', `lease ${leaseId} ran out at ${new Date(Number(attempt.expires_at)).toISOString()}; there is nothing to hand back`)
    }
    await tx.query(`UPDATE attempts SET status = 'released' WHERE lease_id = $1`, [leaseId])
    // A primary holds its unit row; a check holds nothing but its attempt, which no longer blocks the check.
    if (attempt.kind === 'primary') {
      await tx.query(
        `UPDATE units SET status = 'open', lease_id = NULL, leased_to = NULL, lease_expires_at = NULL
          WHERE lease_id = $1 AND status = 'leased'`,
        [leaseId],
      )
    }
    return { jobId: attempt.job_id, round: Number(attempt.round), unit: Number(attempt.unit) }
  })
  // Tabs waiting for work hear about the freed unit on the job's live feed instead of at their next poll.
  ctx.events.emit('progress', released.jobId)
  return { released: true, round: released.round, unit: released.unit }
}
