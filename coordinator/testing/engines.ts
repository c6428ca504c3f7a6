import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { BlobStore } from '../blobs.ts'
import { migrate, openPglite, openPostgres, type Database } from '../db.ts'
import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from './postgresServer.ts'

/**
 * The store engines a suite runs on: in-process PGlite always, and a real PostgreSQL server when one
 * can be started on this machine. Use with `for (const engine of TEST_ENGINES) describe.skipIf(engine.skipReason)`.
 */
export interface RunningEngine {
  /** A fresh, empty database (not migrated). */
  open(): Promise<Database>
  stop(): Promise<void>
}

export interface TestEngine {
  name: Database['engine']
  /** Why the engine cannot run here, or null. */
  skipReason: string | null
  start(): Promise<RunningEngine>
}

let databases = 0

export const TEST_ENGINES: TestEngine[] = [
  {
    name: 'pglite',
    skipReason: null,
    async start() {
      return { open: () => openPglite(), stop: async () => {} }
    },
  },
  {
    name: 'postgres',
    skipReason: postgresUnavailableReason(),
    async start() {
      const server: PostgresServer = await startPostgresServer()
      return {
        async open() {
          databases += 1
          return openPostgres(await server.createDatabase(`t${process.pid}_${databases}`))
        },
        stop: () => server.stop(),
      }
    },
  },
]

/** Logs, once per test file, which engines are skipped and why. */
export function noteSkippedEngines(suite: string): void {
  for (const engine of TEST_ENGINES) {
    if (engine.skipReason) console.warn(`[${suite}] skipping the ${engine.name} store suite: ${engine.skipReason}`)
  }
}

/** What a suite gets from `useMigratedStore`: read its fields inside tests (they are set in beforeAll). */
export interface MigratedStore {
  db: Database
  blobs: BlobStore
  blobDir: string
}

/**
 * Registers beforeAll/afterAll hooks giving the enclosing describe block a migrated database on `engine` and a
 * blob store in a temporary folder, both removed afterwards.
 */
export function useMigratedStore(engine: TestEngine, prefix: string): MigratedStore {
  const store = {} as MigratedStore
  let running: RunningEngine | undefined
  beforeAll(async () => {
    running = await engine.start()
    store.db = await running.open()
    await migrate(store.db)
    store.blobDir = await mkdtemp(join(tmpdir(), `${prefix}-`))
    store.blobs = new BlobStore(store.blobDir)
  })
  afterAll(async () => {
    await store.db?.close()
    await running?.stop()
    if (store.blobDir) await rm(store.blobDir, { recursive: true, force: true })
  })
  return store
}
