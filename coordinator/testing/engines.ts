import { openPglite, openPostgres, type Database } from '../db.ts'
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
