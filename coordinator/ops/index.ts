import type { EventEmitter } from 'node:events'
import type { FastifyInstance } from 'fastify'
import type { Database } from '../db.ts'
import { chainCheck, healthRoutes, migrationsCheck, storeCheck, type ReadinessCheck } from './health.ts'
import { CoordinatorMetrics, metricsRoute, observeHttp, observeJobs, observeQueues, observeSockets, observeTransactions } from './metrics.ts'
import { openApiRoute } from './openapi.ts'

export { CoordinatorMetrics } from './metrics.ts'
export { createLogger, type CoordinatorLogger, type Log } from './logging.ts'
export { retentionFromEnv, runRetention, scheduleRetention, vacuum } from './retention.ts'

export interface OpsDependencies {
  db: Database
  /** The jobs' event emitter (JobService.events): round closes are timed from its `roundClosed` events. */
  events: EventEmitter
  /** The chain's transaction queue and RPC client; null without a chain. */
  chain?: { transactions: { outcomes: EventEmitter }; publicClient: { getBlockNumber(): Promise<bigint> } } | null
  /** Shown in the OpenAPI description. */
  version: string
  now?: () => number
  /** A registry of its own per coordinator by default. */
  metrics?: CoordinatorMetrics
}

/**
 * The operations endpoints on `app` (the coordinator's server): `GET /metrics` (Prometheus), `/healthz`,
 * `/readyz` and `/api/openapi.json`, and the hooks that count requests. Register after the API routes or
 * before: the hooks apply to every route of the instance. Returns the metrics and a function that
 * detaches the listeners (for a coordinator closing while the emitters live on).
 */
export function registerOps(app: FastifyInstance, deps: OpsDependencies): { metrics: CoordinatorMetrics; detach(): void } {
  const metrics = deps.metrics ?? new CoordinatorMetrics()
  observeHttp(app, metrics)
  observeQueues(metrics, deps.db, deps.now)
  const sockets = app as FastifyInstance & { websocketServer?: { clients: Set<unknown> } }
  observeSockets(metrics, () => sockets.websocketServer?.clients.size ?? 0)
  const detachers = [observeJobs(metrics, deps.events)]
  if (deps.chain) detachers.push(observeTransactions(metrics, deps.chain.transactions))
  metricsRoute(app, metrics)
  const checks: Record<string, ReadinessCheck> = { store: storeCheck(deps.db), migrations: migrationsCheck(deps.db) }
  if (deps.chain) checks.chain = chainCheck(deps.chain.publicClient)
  healthRoutes(app, checks)
  openApiRoute(app, { version: deps.version })
  return { metrics, detach: () => detachers.forEach((d) => d()) }
}
