import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeTensorList, type Hash, type TrainingConfig } from '../../src/protocol/index.ts'
import { DiskBlobStore } from '../blobs.ts'
import { migrate, openPglite, openPostgres, type Database } from '../db.ts'
import { JobService } from '../jobs.ts'
import { ModelDownloads } from '../modelDownload.ts'
import { firstDirtyRound } from '../rounds.ts'
import { TEST_DOMAIN, alice, bob, jobVariant, leased, makeSubmission, testJobBase, type TestJobBase } from '../testing/fixtures.ts'
import { TEST_ENGINES } from '../testing/engines.ts'
import { startPostgresServer } from '../testing/postgresServer.ts'
import { advisoryKey, postgresLocks } from '../replicaLocks.ts'
import { RETENTION_LOCK, retentionFromEnv, runRetention, vacuum, type RetentionPolicy } from './retention.ts'

const T0 = 1_800_000_000_000
const DAY = 24 * 3600_000
const POLICY: RetentionPolicy = { graceMs: 7 * DAY, settles: false }

describe('retention', () => {
  let db: Database
  let dir: string
  let blobs: DiskBlobStore
  let base: TestJobBase
  const clock = { t: T0 }
  let jobs: JobService
  let seed = 1

  beforeAll(async () => {
    base = await testJobBase()
    db = await openPglite()
    await migrate(db)
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-retention-'))
    blobs = new DiskBlobStore(dir)
    jobs = new JobService({ db, blobs, domain: TEST_DOMAIN, now: () => clock.t, random: () => 1 })
  })

  afterAll(async () => {
    await db?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** A job of `rounds` rounds of two units, run through `closed` of them with made-up updates. */
  async function runJob(name: string, training: Partial<TrainingConfig>, closed: number): Promise<{ jobId: Hash; updates: Hash[] }> {
    const jobId = await jobs.createJob(jobVariant(base.spec, name, training), base.blobs)
    const updates: Hash[] = []
    for (let round = 0; round < closed; round++) {
      for (const account of [alice, bob]) {
        const lease = leased(await jobs.lease(jobId, account.address))
        const submission = await makeSubmission({ lease, account, shapes: base.shapes, seed: seed++ })
        await jobs.submit(lease.id, submission.body)
        updates.push(submission.outputHash)
      }
      await jobs.closeRound(jobId, round)
    }
    return { jobId, updates }
  }

  const checkpoints = async (jobId: Hash) =>
    (await db.query<{ output_hash: Hash }>(`SELECT output_hash FROM rounds WHERE job_id = $1 ORDER BY round`, [jobId])).map((r) => r.output_hash)

  it("deletes a finished job's updates after the grace period, keeps every checkpoint it serves, and nothing of a running job", async () => {
    const finished = await runJob('retention: finished', { rounds: 2 }, 2)
    const running = await runJob('retention: running', { rounds: 3 }, 1)
    expect((await jobs.getJob(finished.jobId)).status).toBe('finished')
    expect((await jobs.getJob(running.jobId)).status).toBe('active')
    const finishedCheckpoints = await checkpoints(finished.jobId)
    expect(finishedCheckpoints).toHaveLength(2)
    for (const hash of [...finished.updates, ...running.updates]) expect(await blobs.has(hash)).toBe(true)

    // Within the grace period nothing goes.
    const early = await runRetention({ db, blobs, policy: POLICY, now: clock.t + 6 * DAY })
    expect(early).toEqual({ ran: true, pruned: [], unverifiable: 0 })
    for (const hash of finished.updates) expect(await blobs.has(hash)).toBe(true)

    const later = clock.t + 8 * DAY
    const pass = await runRetention({ db, blobs, policy: POLICY, now: later })
    expect(pass).toEqual({ ran: true, pruned: [{ jobId: finished.jobId, blobs: finished.updates.length }], unverifiable: 0 })
    for (const hash of finished.updates) expect(await blobs.has(hash)).toBe(false)
    // The running job loses nothing: its updates, its checkpoint, its data.
    for (const hash of running.updates) expect(await blobs.has(hash)).toBe(true)
    for (const hash of await checkpoints(running.jobId)) expect(await blobs.has(hash)).toBe(true)
    // What the finished job still promises is there: every round's model, the final checkpoint, its spec's blobs.
    const downloads = new ModelDownloads({ db, blobs })
    for (const [round, hash] of finishedCheckpoints.entries()) {
      const { bytes, checkpointHash } = await downloads.weights(finished.jobId, String(round))
      expect(checkpointHash).toBe(hash)
      expect(bytes.byteLength).toBe(decodeTensorList(await blobs.get(hash)).values.reduce((n, v) => n + v.byteLength, 0))
    }
    expect((await jobs.getJob(finished.jobId)).checkpoint).toBe(finishedCheckpoints.at(-1))
    const spec = (await jobs.getJob(finished.jobId)).spec
    for (const hash of [spec.model.initialWeights, spec.data.train.images, spec.data.train.labels, spec.data.heldOut.images, spec.data.heldOut.labels]) {
      expect(await blobs.has(hash)).toBe(true)
    }
    expect((await jobs.progress(finished.jobId)).history).toHaveLength(2)

    // A second pass finds nothing more; the sealed job is never rebuilt, even if work in it is later found wrong.
    expect(await runRetention({ db, blobs, policy: POLICY, now: later + DAY })).toEqual({ ran: true, pruned: [], unverifiable: 0 })
    await db.query(`UPDATE rounds SET dirty = true WHERE job_id = $1 AND round = 0`, [finished.jobId])
    expect(await firstDirtyRound(db, finished.jobId)).toBeNull()
    await jobs.recover()
    expect(await checkpoints(finished.jobId)).toEqual(finishedCheckpoints)
    expect(await vacuum(db)).toBe(true)
  })

  it('leaves an answer of a sealed job unchecked when its checker is caught later: there is no update to run again', async () => {
    const job = await runJob('retention: vouched', { rounds: 1 }, 1)
    expect((await runRetention({ db, blobs, policy: POLICY, now: clock.t + 8 * DAY })).pruned.map((p) => p.jobId)).toContain(job.jobId)
    // What coordinator/verification/convictions.ts does to the answers a caught checker vouched for.
    const [unit] = await db.query<{ lease_id: string }>(
      `UPDATE units SET check_kind = 'referee', check_status = 'referee' WHERE job_id = $1 AND unit = 0 RETURNING lease_id`,
      [job.jobId],
    )
    await db.query(`UPDATE attempts SET verdict = 'pending' WHERE lease_id = $1`, [unit!.lease_id])
    expect(await runRetention({ db, blobs, policy: POLICY, now: clock.t + 9 * DAY })).toEqual({ ran: true, pruned: [], unverifiable: 1 })
    const [after] = await db.query<{ check_status: string; verdict: string }>(
      `SELECT u.check_status, a.verdict FROM units u JOIN attempts a ON a.lease_id = u.lease_id WHERE u.lease_id = $1`,
      [unit!.lease_id],
    )
    expect(after).toEqual({ check_status: 'unverifiable', verdict: 'unchecked' })
  })

  it('keeps a finished job whole while a check of it is open', async () => {
    const job = await runJob('retention: under check', { rounds: 1 }, 1)
    const [unit] = await db.query<{ unit: number }>(`UPDATE units SET check_status = 'wanted' WHERE job_id = $1 AND unit = 0 RETURNING unit`, [job.jobId])
    expect(unit).toBeDefined()
    const pass = await runRetention({ db, blobs, policy: POLICY, now: clock.t + 30 * DAY })
    expect(pass.pruned.map((p) => p.jobId)).not.toContain(job.jobId)
    for (const hash of job.updates) expect(await blobs.has(hash)).toBe(true)
  })
})

const postgres = TEST_ENGINES.find((e) => e.name === 'postgres')!

describe.skipIf(postgres.skipReason !== null)('retention on PostgreSQL', () => {
  it('runs on one replica at a time: a pass finding the lock held does nothing', async () => {
    const server = await startPostgresServer()
    const url = await server.createDatabase(`retention_${process.pid}`)
    const db = await openPostgres(url)
    try {
      await migrate(db)
      const deleted: string[] = []
      const blobs = { delete: async (hash: string) => void deleted.push(hash) }
      let release!: () => void
      const held = new Promise<void>((r) => (release = r))
      let locked!: () => void
      const isLocked = new Promise<void>((r) => (locked = r))
      // Another replica's pass, holding the lock until released.
      const other = db.transaction(async (tx) => {
        await tx.query(`SELECT pg_advisory_xact_lock($1::bigint)`, [String(advisoryKey(RETENTION_LOCK))])
        locked()
        await held
      })
      await isLocked
      // Both ways of taking it: the replicas' session locks, and the transaction lock without them.
      const locks = postgresLocks(url)
      try {
        expect(await runRetention({ db, blobs, policy: POLICY, locks })).toEqual({ ran: false, pruned: [], unverifiable: 0 })
        expect(await runRetention({ db, blobs, policy: POLICY })).toEqual({ ran: false, pruned: [], unverifiable: 0 })
        release()
        await other
        expect((await runRetention({ db, blobs, policy: POLICY, locks })).ran).toBe(true)
        expect((await runRetention({ db, blobs, policy: POLICY })).ran).toBe(true)
      } finally {
        await locks.close()
      }
      expect(await vacuum(db)).toBe(false)
    } finally {
      await db.close()
      await server.stop()
    }
  })
})

describe('retention settings', () => {
  it('reads the grace period and the schedules from the environment, a week and hourly by default', () => {
    expect(retentionFromEnv({})).toEqual({ policy: { graceMs: 7 * DAY, settles: true }, schedule: { everyMs: 3600_000, vacuumEveryMs: 6 * 3600_000 } })
    expect(retentionFromEnv({ TABTRAIN_RETENTION_GRACE_HOURS: '2', TABTRAIN_RETENTION_EVERY_MINUTES: '5', TABTRAIN_VACUUM_EVERY_MINUTES: '30' })).toEqual({
      policy: { graceMs: 2 * 3600_000, settles: true },
      schedule: { everyMs: 300_000, vacuumEveryMs: 1_800_000 },
    })
    expect(retentionFromEnv({ TABTRAIN_RETENTION_GRACE_HOURS: 'off' }).policy).toBeNull()
    expect(() => retentionFromEnv({ TABTRAIN_RETENTION_GRACE_HOURS: 'a week' })).toThrow(/TABTRAIN_RETENTION_GRACE_HOURS must be a non-negative number, not "a week"/)
  })
})
