import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { SCHEMA_VERSION, migrate, openDatabase, openPglite, openPostgres, type Database } from './db.ts'
import { TEST_ENGINES, noteSkippedEngines, type RunningEngine } from './testing/engines.ts'

noteSkippedEngines('coordinator/db.test.ts')

const TABLES = [
  'attempts',
  'auth_nonces',
  'blobs',
  'chain_cursor',
  'disputes',
  'epochs',
  'escrow_deposits',
  'faucet_grants',
  'job_funding',
  'jobs',
  'lease_nonces',
  'reputation',
  'rounds',
  'schema_migrations',
  'settings',
  'units',
]

async function tablesOf(db: Database): Promise<string[]> {
  const rows = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
  )
  return rows.map((r) => r.table_name)
}

async function insertJob(db: Pick<Database, 'query'>, id: string, createdAt = 1_800_000_000_000) {
  await db.query(`INSERT INTO jobs (id, spec, checkpoint, created_at) VALUES ($1, $2, $3, $4)`, [
    id,
    JSON.stringify({ name: id, training: { unitsPerRound: 2 } }),
    `0x${'00'.repeat(32)}`,
    createdAt,
  ])
}

for (const engine of TEST_ENGINES) {
  describe.skipIf(engine.skipReason !== null)(`store on ${engine.name}`, () => {
    let running: RunningEngine
    /** One database for the suite: the first test migrates it from empty, the others use their own job ids. */
    let db: Database

    beforeAll(async () => {
      running = await engine.start()
      db = await running.open()
    })

    beforeEach(async (context) => {
      // Every test but the first finds the schema in place, even when run alone.
      if (!context.task.name.startsWith('migrate')) await migrate(db)
    })

    afterAll(async () => {
      await db?.close()
      await running?.stop()
    })

    it('migrate creates the schema on an empty database and records its version, once', async () => {
      expect(await tablesOf(db)).toEqual([])
      await migrate(db)
      expect(await tablesOf(db)).toEqual(TABLES)
      await migrate(db)
      await migrate(db)
      expect(await tablesOf(db)).toEqual(TABLES)
      const versions = await db.query<{ version: number }>(`SELECT version FROM schema_migrations ORDER BY version`)
      expect(versions.map((v) => Number(v.version))).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1))
      const columns = await db.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns WHERE table_name = 'units' ORDER BY ordinal_position`,
      )
      expect(columns.map((c) => c.column_name)).toEqual([
        'job_id',
        'round',
        'unit',
        'status',
        'lease_id',
        'leased_to',
        'lease_expires_at',
        'leases_issued',
        'output_hash',
        'signature',
        'device_class',
        'examples',
        'train_loss',
        'accepted_at',
        'check_kind',
        'check_status',
        'check_wanted_at',
        'referee_hash',
        'check_class',
        'referee_class',
        'applied_round',
        'inner_steps',
      ])
    })

    it('upgrades a store of the build before verification: accepted units become unchecked answers of their signers', async () => {
      const old = await running.open()
      try {
        await migrate(old, 2)
        await insertJob(old, 'job-old')
        await old.query(
          `INSERT INTO units (job_id, round, unit, status, lease_id, leased_to, lease_expires_at, output_hash, signature, device_class, examples, train_loss, accepted_at)
           VALUES ('job-old', 0, 0, 'accepted', 'lease-a', '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', 5, '0xaa', '0xsig', 'cpu|x', 320, 1.5, 4),
                  ('job-old', 0, 1, 'open', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
        )
        await migrate(old)
        const attempts = await old.query<Record<string, unknown>>(`SELECT lease_id, contributor, kind, status, verdict, output_hash, examples FROM attempts`)
        expect(attempts).toEqual([
          { lease_id: 'lease-a', contributor: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', kind: 'primary', status: 'submitted', verdict: 'unchecked', output_hash: '0xaa', examples: 320 },
        ])
        expect(await tablesOf(old)).toEqual(TABLES)
      } finally {
        await old.close()
      }
    })

    it(`reports its engine as ${engine.name}`, () => {
      expect(db.engine).toBe(engine.name)
    })

    it('round-trips jsonb, millisecond timestamps, doubles and defaults', async () => {
      await insertJob(db, 'job-a', 1_800_000_000_123)
      const [row] = await db.query<Record<string, unknown>>(`SELECT * FROM jobs WHERE id = 'job-a'`)
      expect(row!.spec).toEqual({ name: 'job-a', training: { unitsPerRound: 2 } })
      expect(Number(row!.created_at)).toBe(1_800_000_000_123)
      expect(row!.status).toBe('active')
      expect(Number(row!.round)).toBe(0)
      expect(row!.initial_loss).toBeNull()
      await db.query(`UPDATE jobs SET initial_loss = $2 WHERE id = $1`, ['job-a', 2.302585092994046])
      const [again] = await db.query<{ initial_loss: number }>(`SELECT initial_loss FROM jobs WHERE id = 'job-a'`)
      expect(again!.initial_loss).toBe(2.302585092994046)
      // The JSON operators the service's recovery query relies on.
      const [units] = await db.query<{ k: number }>(`SELECT (spec->'training'->>'unitsPerRound')::int AS k FROM jobs WHERE id = 'job-a'`)
      expect(units!.k).toBe(2)
    })

    it('enforces the keys: one unit per (job, round, index), one unit per lease, jobs must exist', async () => {
      await insertJob(db, 'job-k')
      await db.query(`INSERT INTO units (job_id, round, unit, lease_id) VALUES ('job-k', 0, 0, 'L1')`)
      await expect(db.query(`INSERT INTO units (job_id, round, unit) VALUES ('job-k', 0, 0)`)).rejects.toThrow()
      await expect(db.query(`INSERT INTO units (job_id, round, unit, lease_id) VALUES ('job-k', 0, 1, 'L1')`)).rejects.toThrow()
      await expect(db.query(`INSERT INTO units (job_id, round, unit) VALUES ('no-such-job', 0, 0)`)).rejects.toThrow()
      const rows = await db.query(`SELECT * FROM units WHERE job_id IN ('job-k', 'no-such-job')`)
      expect(rows).toHaveLength(1)
    })

    it('transaction commits and returns the callback value', async () => {
      const result = await db.transaction(async (tx) => {
        await insertJob(tx, 'job-t')
        const rows = await tx.query<{ id: string }>(`SELECT id FROM jobs WHERE id = 'job-t'`)
        return rows.map((r) => r.id)
      })
      expect(result).toEqual(['job-t'])
      expect(await db.query(`SELECT id FROM jobs WHERE id = 'job-t'`)).toEqual([{ id: 'job-t' }])
    })

    it('transaction rolls back everything when the callback throws, and rethrows', async () => {
      const boom = new Error('boom')
      await expect(
        db.transaction(async (tx) => {
          await insertJob(tx, 'job-r')
          throw boom
        }),
      ).rejects.toBe(boom)
      await expect(
        db.transaction(async (tx) => {
          await insertJob(tx, 'job-s')
          await tx.query(`SELECT * FROM no_such_table`)
        }),
      ).rejects.toThrow(/no_such_table/)
      expect(await db.query(`SELECT id FROM jobs WHERE id IN ('job-r', 'job-s')`)).toEqual([])
      // The connection is usable afterwards.
      await insertJob(db, 'job-after')
      expect(await db.query(`SELECT id FROM jobs WHERE id IN ('job-r', 'job-s', 'job-after')`)).toEqual([{ id: 'job-after' }])
    })

    it('concurrent transactions that read-modify-write one row under FOR UPDATE lose no update', async () => {
      await insertJob(db, 'job-c')
      await Promise.all(
        Array.from({ length: 12 }, () =>
          db.transaction(async (tx) => {
            const [row] = await tx.query<{ round: number }>(`SELECT round FROM jobs WHERE id = 'job-c' FOR UPDATE`)
            await tx.query(`UPDATE jobs SET round = $1 WHERE id = 'job-c'`, [Number(row!.round) + 1])
          }),
        ),
      )
      const [row] = await db.query<{ round: number }>(`SELECT round FROM jobs WHERE id = 'job-c'`)
      expect(Number(row!.round)).toBe(12)
    })

    it('FOR UPDATE SKIP LOCKED hands each row to one of several concurrent claimers', async () => {
      await insertJob(db, 'job-q')
      await db.query(`INSERT INTO units (job_id, round, unit) SELECT 'job-q', 0, g FROM generate_series(0, 4) AS g`)
      const claims = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          db.transaction(async (tx) => {
            const rows = await tx.query<{ unit: number }>(
              `WITH c AS (SELECT job_id, round, unit FROM units WHERE job_id = 'job-q' AND status = 'open'
                           ORDER BY unit LIMIT 1 FOR UPDATE SKIP LOCKED)
               UPDATE units u SET status = 'leased', lease_id = $1 FROM c
                WHERE u.job_id = c.job_id AND u.round = c.round AND u.unit = c.unit RETURNING u.unit`,
              [`skip-locked-${i}`],
            )
            return rows[0]?.unit ?? null
          }),
        ),
      )
      const units = claims.filter((u): u is number => u !== null).map(Number)
      expect(units.sort()).toEqual([0, 1, 2, 3, 4])
    })
  })
}

describe('PGlite persisted to a folder', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-pglite-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps its data and migrations across a close and reopen', async () => {
    const first = await openDatabase({ dataDir: join(dir, 'pgdata') })
    expect(first.engine).toBe('pglite')
    await migrate(first)
    await insertJob(first, 'job-p')
    await first.close()

    const second = await openPglite(join(dir, 'pgdata'))
    try {
      await migrate(second)
      expect(await second.query(`SELECT id FROM jobs`)).toEqual([{ id: 'job-p' }])
      const versions = await second.query<{ version: number }>(`SELECT version FROM schema_migrations`)
      expect(versions.map((v) => Number(v.version))).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1))
    } finally {
      await second.close()
    }
  })
})

describe('openPostgres', () => {
  it('fails at open, not at the first query, when the server is unreachable', async () => {
    // Port 1 on the loopback interface: nothing listens there, the connection is refused at once.
    await expect(openPostgres('postgres://postgres@127.0.0.1:1/none')).rejects.toThrow()
    await expect(openDatabase({ databaseUrl: 'postgres://postgres@127.0.0.1:1/none' })).rejects.toThrow()
  })
})
