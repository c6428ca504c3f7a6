import type { FastifyInstance } from 'fastify'
import { SCHEMA_VERSION, type Queryable } from '../db.ts'

/** One part the coordinator needs to serve: resolves when it is ready, throws (with the reason) when not. */
export type ReadinessCheck = () => Promise<void>

/** A check that takes longer than this counts as not ready: a load balancer should not wait on a hung store. */
const CHECK_TIMEOUT_MS = 2000

export interface ReadinessReport {
  ready: boolean
  /** Each part: ok, or why not. */
  checks: Record<string, { ok: true; ms: number } | { ok: false; ms: number; error: string }>
}

/** The store answers a query. */
export function storeCheck(db: Queryable): ReadinessCheck {
  return async () => {
    await db.query(`SELECT 1`)
  }
}

/** Every migration this build knows is applied (a store behind it would be missing tables or columns). */
export function migrationsCheck(db: Queryable): ReadinessCheck {
  return async () => {
    const [row] = await db.query<{ version: number | null }>(`SELECT max(version) AS version FROM schema_migrations`)
    const version = Number(row?.version ?? 0)
    if (version < SCHEMA_VERSION) throw new Error(`store at schema version ${version}; this build needs ${SCHEMA_VERSION}`)
  }
}

/** The chain's RPC answers (its latest block number). */
export function chainCheck(client: { getBlockNumber(): Promise<bigint> }): ReadinessCheck {
  return async () => {
    await client.getBlockNumber()
  }
}

async function timed(check: ReadinessCheck): Promise<ReadinessReport['checks'][string]> {
  const started = performance.now()
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS))),
    ])
    return { ok: true, ms: Math.round(performance.now() - started) }
  } catch (error) {
    return { ok: false, ms: Math.round(performance.now() - started), error: (error as Error).message ?? String(error) }
  } finally {
    clearTimeout(timer)
  }
}

/** Runs every check at once. */
export async function readiness(checks: Record<string, ReadinessCheck>): Promise<ReadinessReport> {
  const entries = await Promise.all(Object.entries(checks).map(async ([name, check]) => [name, await timed(check)] as const))
  return { ready: entries.every(([, r]) => r.ok), checks: Object.fromEntries(entries) }
}

/**
 * `GET /healthz`: the process is alive and serving (200 whenever it answers at all; a load balancer or
 * orchestrator restarts it when it does not). `GET /readyz`: 200 when every part it needs answers (the
 * store, its schema, the chain if one is configured), else 503 with the report saying which part is not.
 */
export function healthRoutes(app: FastifyInstance, checks: Record<string, ReadinessCheck>): void {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    const report = await readiness(checks)
    return reply.status(report.ready ? 200 : 503).send(report)
  })
}
