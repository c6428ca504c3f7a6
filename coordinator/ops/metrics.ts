import type { EventEmitter } from 'node:events'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { ROUTES } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'

/**
 * The coordinator's Prometheus metrics. One registry per coordinator (tests run several in one process;
 * prom-client's global registry would mix them). Events are counted where they are seen, without the
 * jobs logic knowing about metrics: lease and submission outcomes and refusals from the HTTP layer's
 * answers (`observeHttp`), round closes from the jobs' event emitter (`observeJobs`), chain transactions
 * from the transaction queue (`observeTransactions`); queue depths are read from the store on each scrape.
 */
export class CoordinatorMetrics {
  readonly registry = new Registry()

  /** Lease requests answered, by outcome: a unit (`leased`), `wait`, `finished`, or `refused` (an error code). */
  readonly leases = new Counter({
    name: 'tabtrain_leases_total',
    help: 'Lease requests answered, by outcome (leased = a unit was leased)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  /** Every submission answered; rate() of it is submissions per second. */
  readonly submissions = new Counter({
    name: 'tabtrain_submissions_total',
    help: 'Submissions answered, by outcome (accepted = the unit was accepted)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  readonly refusals = new Counter({
    name: 'tabtrain_refusals_total',
    help: 'API requests refused (4xx) or failed (5xx), by route and error code',
    labelNames: ['route', 'code'] as const,
    registers: [this.registry],
  })

  readonly requestSeconds = new Histogram({
    name: 'tabtrain_http_request_duration_seconds',
    help: 'Time to answer an API request, by method, route and status class',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  })

  /** From acquiring the round's lock to the commit that moves the job on: aggregation and held-out evaluation. */
  readonly roundCloseSeconds = new Histogram({
    name: 'tabtrain_round_close_seconds',
    help: 'Time to close a round (aggregate its updates, evaluate, commit)',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  })

  readonly chainTransactions = new Counter({
    name: 'tabtrain_chain_transactions_total',
    help: 'Chain transactions by kind and outcome (sent: has a hash; mined: succeeded; failed: reverted, no receipt, or not sent)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  })

  constructor() {
    collectDefaultMetrics({ register: this.registry })
  }

  /** The exposition text and its content type, for `GET /metrics`. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}

/**
 * Queue depths read from the store when Prometheus scrapes, in one statement over partial indexes
 * (units_queue, units_check_wanted, attempts_live): units of an active job's current round that a lease
 * request would get now, units waiting for a check, and leases held now.
 */
export function observeQueues(metrics: CoordinatorMetrics, db: Queryable, now: () => number = Date.now): void {
  // One read serves the three gauges: the first gauge's collect reads, the others' reuse it.
  let pending: Promise<{ units: number; checks: number; leases: number }> | null = null
  const read = () =>
    (pending ??= db
      .query<{ units: string; checks: string; leases: string }>(
        `SELECT (SELECT count(*) FROM units u JOIN jobs j ON j.id = u.job_id AND u.round = j.round
                  WHERE j.status = 'active' AND (u.status = 'open' OR (u.status = 'leased' AND u.lease_expires_at <= $1))) AS units,
                (SELECT count(*) FROM units WHERE check_status = 'wanted') AS checks,
                (SELECT count(*) FROM attempts WHERE status = 'leased' AND expires_at > $1) AS leases`,
        [now()],
      )
      .then(([row]) => ({ units: Number(row!.units), checks: Number(row!.checks), leases: Number(row!.leases) }))
      // A store that does not answer shows as NaN rather than as the last value read; /readyz says why.
      .catch(() => ({ units: NaN, checks: NaN, leases: NaN }))
      .finally(() => setTimeout(() => (pending = null), 0)))
  const gauge = (name: string, help: string, key: 'units' | 'checks' | 'leases') =>
    new Gauge({
      name,
      help,
      registers: [metrics.registry],
      async collect() {
        this.set((await read())[key])
      },
    })
  gauge('tabtrain_units_waiting', "Units of active jobs' current rounds waiting for a lease", 'units')
  gauge('tabtrain_checks_waiting', 'Accepted units waiting for a check to be leased', 'checks')
  gauge('tabtrain_leases_live', 'Leases held now (not answered, not expired)', 'leases')
}

/** Open WebSocket connections (the live progress sockets), counted on scrape. */
export function observeSockets(metrics: CoordinatorMetrics, clients: () => number): void {
  new Gauge({
    name: 'tabtrain_websocket_clients',
    help: 'Open WebSocket connections (live job progress)',
    registers: [metrics.registry],
    collect() {
      this.set(clients())
    },
  })
}

/** Round closes, from the `roundClosed` event coordinator/rounds.ts emits (job id, round, seconds). */
export function observeJobs(metrics: CoordinatorMetrics, events: EventEmitter): () => void {
  const onClosed = (_jobId: string, _round: number, seconds: number) => metrics.roundCloseSeconds.observe(seconds)
  events.on('roundClosed', onClosed)
  return () => events.off('roundClosed', onClosed)
}

/**
 * A transaction's kind: its label without the ids that follow (`close escrow of 0x12…` → `close escrow`,
 * `post root of epoch 7` → `post root`), so the label set stays small.
 */
export function transactionKind(label: string): string {
  return label.split(/\s+(?:of|for)\s+/)[0]!.slice(0, 48)
}

/** Chain transactions, from the `outcome` event of coordinator/settlement/transactions.ts's queue. */
export function observeTransactions(metrics: CoordinatorMetrics, queue: { outcomes: EventEmitter }): () => void {
  const onOutcome = (label: string, outcome: 'sent' | 'mined' | 'failed') => metrics.chainTransactions.inc({ kind: transactionKind(label), outcome })
  queue.outcomes.on('outcome', onOutcome)
  return () => queue.outcomes.off('outcome', onOutcome)
}

const LEASE_ROUTE = ROUTES.lease.path
const SUBMISSION_ROUTE = ROUTES.submission.path

/** What an answer said, noted before it is serialized and counted once it is sent. */
const answers = new WeakMap<FastifyRequest, { status?: unknown; code?: unknown }>()

/**
 * Counts lease and submission outcomes, refusals by code and request times from the answers the HTTP layer
 * sends: a JSON body's `status` (a lease answer) or `code` (a refusal, coordinator/errors.ts). Only `/api/`
 * routes; the site's files are not counted.
 */
export function observeHttp(app: FastifyInstance, metrics: CoordinatorMetrics): void {
  app.addHook('preSerialization', async (request: FastifyRequest, _reply: FastifyReply, payload: unknown) => {
    if (payload && typeof payload === 'object') {
      const { status, code } = payload as { status?: unknown; code?: unknown }
      answers.set(request, { status, code })
    }
    return payload
  })
  app.addHook('onResponse', async (request: FastifyRequest, reply: FastifyReply) => {
    const route = request.routeOptions.url
    if (route !== undefined && !route.startsWith('/api/')) return
    const label = route ?? 'unmatched'
    const status = reply.statusCode
    const answer = answers.get(request)
    metrics.requestSeconds.observe({ method: request.method, route: label, status: `${Math.floor(status / 100)}xx` }, reply.elapsedTime / 1000)
    if (status >= 400) {
      const code = typeof answer?.code === 'string' ? answer.code : String(status)
      metrics.refusals.inc({ route: label, code })
      if (route === LEASE_ROUTE) metrics.leases.inc({ outcome: 'refused' })
      if (route === SUBMISSION_ROUTE) metrics.submissions.inc({ outcome: 'refused' })
      return
    }
    if (route === LEASE_ROUTE) metrics.leases.inc({ outcome: typeof answer?.status === 'string' ? answer.status : 'unknown' })
    if (route === SUBMISSION_ROUTE) metrics.submissions.inc({ outcome: 'accepted' })
  })
}

/** `GET /metrics`: Prometheus's text format. */
export function metricsRoute(app: FastifyInstance, metrics: CoordinatorMetrics): void {
  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await metrics.scrape()
    return reply.type(contentType).send(body)
  })
}
