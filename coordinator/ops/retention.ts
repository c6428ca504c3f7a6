import type { Hash } from '../../src/protocol/index.ts'
import type { Database, Queryable } from '../db.ts'
import { advisoryKey, type ReplicaLocks } from '../replicaLocks.ts'

/**
 * Retention (docs/operations.md). Storage grows with every update a contributor sends (K per round), every
 * round's outer momentum and every referee run; a finished job needs none of them once nothing can look at
 * them again. A job is pruned when it is finished or cancelled, its last activity is older than the grace
 * period, and nothing is still open about it (no check, no pending verdict, no pending dispute, no dirty
 * round, no answer waiting for or in an epoch that is not posted). Pruning first seals the job (from then on
 * its rounds are final: coordinator/rounds.ts rebuilds nothing of a sealed job), then deletes its updates,
 * referee outputs and momentum blobs. It keeps the spec's blobs (initial weights, data shards), every closed
 * round's checkpoint (what coordinator/modelDownload.ts serves) and the job's final checkpoint, and any blob
 * another row still refers to (content addressing: two jobs may share bytes).
 */

/** Where blobs are deleted: the blob store's `delete` (a missing blob is not an error). */
export interface PrunableBlobs {
  delete(hash: string): Promise<unknown>
}

export interface RetentionPolicy {
  /** How long after a job's last activity (status change, round close, answer) its blobs are kept. */
  graceMs: number
  /** True when a chain settles rewards: answers not yet committed to a posted epoch keep their job whole. */
  settles: boolean
}

export const DEFAULT_RETENTION: RetentionPolicy = { graceMs: 7 * 24 * 3600_000, settles: true }

/** The replica lock of the retention pass (coordinator/replicaLocks.ts): one replica at a time prunes. */
export const RETENTION_LOCK = 'retention'

export interface RetentionResult {
  /** False when another replica held the lock: this pass did nothing. */
  ran: boolean
  /** Jobs whose blobs this pass deleted. */
  pruned: { jobId: Hash; blobs: number }[]
  /** Units of sealed jobs whose re-examination could no longer run (a checker caught after the job was sealed). */
  unverifiable: number
}

/** The jobs that may be sealed now. */
async function prunableJobs(db: Queryable, policy: RetentionPolicy, now: number): Promise<Hash[]> {
  const unsettled = policy.settles
    ? `AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = j.id AND a.epoch IS NULL
                         AND ((a.status = 'submitted' AND a.verdict IN ('unchecked', 'passed')) OR a.verdict = 'rejected'))
       AND NOT EXISTS (SELECT 1 FROM attempts a JOIN epochs e ON e.epoch = a.epoch WHERE a.job_id = j.id AND e.status <> 'posted')`
    : ''
  const rows = await db.query<{ id: Hash }>(
    `SELECT j.id FROM jobs j
      WHERE j.status IN ('finished', 'cancelled') AND j.pruned_at IS NULL
        AND greatest(coalesce(j.status_changed_at, 0), j.created_at,
                     coalesce((SELECT max(closed_at) FROM rounds r WHERE r.job_id = j.id), 0),
                     coalesce((SELECT max(coalesce(rebuilt_at, 0)) FROM rounds r WHERE r.job_id = j.id), 0),
                     coalesce((SELECT max(coalesce(submitted_at, issued_at)) FROM attempts a WHERE a.job_id = j.id), 0)) <= $1
        AND NOT EXISTS (SELECT 1 FROM units u WHERE u.job_id = j.id AND u.check_status IN ('wanted', 'referee'))
        AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.job_id = j.id AND (a.verdict = 'pending' OR (a.status = 'leased' AND a.expires_at > $2)))
        AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.job_id = j.id AND d.status = 'pending')
        AND NOT EXISTS (SELECT 1 FROM rounds r WHERE r.job_id = j.id AND r.dirty)
        ${unsettled}
      ORDER BY j.created_at`,
    [now - policy.graceMs, now],
  )
  return rows.map((r) => r.id)
}

/**
 * The blobs of a sealed job that go: its answers' updates, referee outputs and outer momentum, less every
 * hash a row still needs (any job's spec blobs, round inputs and outputs and checkpoints; the rows of jobs
 * not sealed; pending disputes).
 */
async function doomedBlobs(db: Queryable, jobId: Hash): Promise<Hash[]> {
  const rows = await db.query<{ hash: Hash }>(
    `WITH candidates AS (
       SELECT output_hash AS hash FROM attempts WHERE job_id = $1 AND output_hash IS NOT NULL
       UNION SELECT referee_hash FROM units WHERE job_id = $1 AND referee_hash IS NOT NULL
       UNION SELECT referee_hash FROM disputes WHERE job_id = $1 AND referee_hash IS NOT NULL
       UNION SELECT momentum_hash FROM rounds WHERE job_id = $1 AND momentum_hash IS NOT NULL
     )
     SELECT c.hash FROM candidates c
      WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.checkpoint = c.hash
                          OR j.spec->'model'->>'initialWeights' = c.hash
                          OR j.spec->'data'->'train'->>'images' = c.hash OR j.spec->'data'->'train'->>'labels' = c.hash
                          OR j.spec->'data'->'heldOut'->>'images' = c.hash OR j.spec->'data'->'heldOut'->>'labels' = c.hash)
        AND NOT EXISTS (SELECT 1 FROM rounds r WHERE r.output_hash = c.hash OR r.input_hash = c.hash OR r.base_hash = c.hash)
        AND NOT EXISTS (SELECT 1 FROM rounds r JOIN jobs j ON j.id = r.job_id WHERE r.momentum_hash = c.hash AND j.pruned_at IS NULL)
        AND NOT EXISTS (SELECT 1 FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.output_hash = c.hash AND j.pruned_at IS NULL)
        AND NOT EXISTS (SELECT 1 FROM units u JOIN jobs j ON j.id = u.job_id WHERE u.referee_hash = c.hash AND j.pruned_at IS NULL)
        AND NOT EXISTS (SELECT 1 FROM disputes d LEFT JOIN jobs j ON j.id = d.job_id
                         WHERE d.referee_hash = c.hash AND (d.status = 'pending' OR j.pruned_at IS NULL))
      ORDER BY c.hash`,
    [jobId],
  )
  return rows.map((r) => r.hash)
}

/**
 * Runs `fn` while holding the retention lock; false when another replica holds it. Replicas on PostgreSQL
 * share a session-level advisory lock (coordinator/replicaLocks.ts: no transaction stays open through the
 * pass, which would hold back VACUUM; a replica that dies drops it with its connection). Without `locks`,
 * PostgreSQL falls back to a transaction-scoped lock; PGlite is one process's store: nobody else prunes it.
 */
export async function withRetentionLock(db: Database, locks: ReplicaLocks | undefined, fn: () => Promise<void>): Promise<boolean> {
  if (locks) {
    const held = await locks.tryAcquire(RETENTION_LOCK)
    if (!held) return false
    try {
      await fn()
    } finally {
      await held.release()
    }
    return true
  }
  if (db.engine === 'pglite') {
    await fn()
    return true
  }
  return db.transaction(async (tx) => {
    const [row] = await tx.query<{ locked: boolean }>(`SELECT pg_try_advisory_xact_lock($1::bigint) AS locked`, [String(advisoryKey(RETENTION_LOCK))])
    if (!row?.locked) return false
    await fn()
    return true
  })
}

/**
 * One retention pass: seals every job the policy lets go, then deletes the blobs of sealed jobs not yet
 * pruned (a pass cut off by a crash finishes them on the next). Idempotent.
 */
export async function runRetention(options: {
  db: Database
  blobs: PrunableBlobs
  policy: RetentionPolicy
  /** Replicas' shared locks (PostgreSQL); omitted for one process on PGlite. */
  locks?: ReplicaLocks
  now?: number
}): Promise<RetentionResult> {
  const { db, blobs, policy } = options
  const now = options.now ?? Date.now()
  const result: RetentionResult = { ran: false, pruned: [], unverifiable: 0 }
  result.ran = await withRetentionLock(db, options.locks, async () => {
    for (const jobId of await prunableJobs(db, policy, now)) {
      await db.query(`UPDATE jobs SET pruned_at = $2 WHERE id = $1 AND pruned_at IS NULL`, [jobId, now])
    }
    // A checker caught after a job was sealed sends the answers it vouched for to the referee, which has
    // no update to run against any more: they stay as an unchecked answer is (docs/operations.md).
    const unverifiable = await db.query(
      `WITH u AS (
         UPDATE units SET check_status = 'unverifiable'
          WHERE check_status IN ('wanted', 'referee') AND job_id IN (SELECT id FROM jobs WHERE pruned_at IS NOT NULL)
         RETURNING lease_id)
       UPDATE attempts a SET verdict = 'unchecked', verdict_reason = 'not examined again: its update was pruned (retention)'
         FROM u WHERE a.lease_id = u.lease_id AND a.verdict = 'pending'
       RETURNING a.lease_id`,
    )
    result.unverifiable = unverifiable.length
    const sealed = await db.query<{ id: Hash }>(`SELECT id FROM jobs WHERE pruned_at IS NOT NULL AND pruned_blobs IS NULL ORDER BY pruned_at, id`)
    for (const { id } of sealed) {
      const doomed = await doomedBlobs(db, id)
      for (const hash of doomed) await blobs.delete(hash)
      await db.query(`UPDATE jobs SET pruned_blobs = $2 WHERE id = $1`, [id, doomed.length])
      result.pruned.push({ jobId: id, blobs: doomed.length })
    }
  })
  return result
}

/** PGlite has no autovacuum: dead rows (every lease and answer updates its unit and attempt) are reclaimed here. */
export async function vacuum(db: Database): Promise<boolean> {
  if (db.engine !== 'pglite') return false
  await db.query(`VACUUM (ANALYZE)`)
  return true
}

export interface RetentionSchedule {
  /** Time between retention passes. */
  everyMs: number
  /** Time between VACUUMs of an embedded (PGlite) store. */
  vacuumEveryMs: number
}

export const DEFAULT_SCHEDULE: RetentionSchedule = { everyMs: 3600_000, vacuumEveryMs: 6 * 3600_000 }

/**
 * The policy and schedule from the environment: TABTRAIN_RETENTION_GRACE_HOURS (168: a week; `off`
 * disables pruning), TABTRAIN_RETENTION_EVERY_MINUTES (60), TABTRAIN_VACUUM_EVERY_MINUTES (360).
 */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env): { policy: RetentionPolicy | null; schedule: RetentionSchedule } {
  const number = (name: string, fallback: number) => {
    const value = env[name]
    if (value === undefined || value === '') return fallback
    const n = Number(value)
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, not ${JSON.stringify(value)}`)
    return n
  }
  const minutes = (name: string, fallback: number) => {
    const n = number(name, fallback)
    if (n < 1) throw new Error(`${name} must be at least 1 (minutes), not ${JSON.stringify(env[name])}`)
    return n * 60_000
  }
  const grace = env.TABTRAIN_RETENTION_GRACE_HOURS
  return {
    policy: grace === 'off' ? null : { ...DEFAULT_RETENTION, graceMs: number('TABTRAIN_RETENTION_GRACE_HOURS', 168) * 3600_000 },
    schedule: { everyMs: minutes('TABTRAIN_RETENTION_EVERY_MINUTES', 60), vacuumEveryMs: minutes('TABTRAIN_VACUUM_EVERY_MINUTES', 360) },
  }
}

/**
 * Runs retention and vacuum on a timer, never two at once, the first pass one interval after start.
 * `stop()` waits for a pass in progress, so the store is not closed under it.
 */
export function scheduleRetention(options: {
  db: Database
  blobs: PrunableBlobs
  policy: RetentionPolicy | null
  schedule: RetentionSchedule
  locks?: ReplicaLocks
  log: (message: string) => void
}): { stop(): Promise<void> } {
  const { db, log } = options
  let running: Promise<void> | null = null
  const once = (what: string, task: () => Promise<void>) => {
    if (running) return
    running = task()
      .catch((error: unknown) => log(`${what} failed: ${(error as Error).message}`))
      .finally(() => (running = null))
  }
  const timers: NodeJS.Timeout[] = []
  const policy = options.policy
  if (policy) {
    timers.push(
      setInterval(
        () =>
          once('retention', async () => {
            const result = await runRetention({ db, blobs: options.blobs, policy, locks: options.locks })
            for (const p of result.pruned) log(`retention: job ${p.jobId.slice(0, 10)} pruned, ${p.blobs} blob(s) deleted`)
            if (result.unverifiable) log(`retention: ${result.unverifiable} answer(s) of pruned jobs can no longer be re-examined`)
          }),
        options.schedule.everyMs,
      ),
    )
  }
  if (db.engine === 'pglite') timers.push(setInterval(() => once('vacuum', async () => void (await vacuum(db))), options.schedule.vacuumEveryMs))
  for (const timer of timers) timer.unref()
  return {
    async stop() {
      for (const timer of timers) clearInterval(timer)
      await running
    },
  }
}
