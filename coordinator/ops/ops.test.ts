import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate, openPglite, SCHEMA_VERSION, type Database } from '../db.ts'
import { registerOps } from './index.ts'
import { createLogger, levelOf } from './logging.ts'
import { transactionKind } from './metrics.ts'

/** A metric's sample value from Prometheus's text format (`name{labels} value`), NaN when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : NaN
}

/** A stand-in for the coordinator's API: a lease route answering by the job id, a submission route, refusals with codes. */
function fakeApi(app: FastifyInstance): void {
  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, _request, reply) => {
    void reply.status(error.statusCode ?? 500).send({ error: 'CoordinatorError', code: error.code, message: error.message })
  })
  app.post<{ Params: { jobId: string } }>('/api/jobs/:jobId/leases', async (req) => {
    if (req.params.jobId === 'banned') throw Object.assign(new Error('banned'), { statusCode: 403, code: 'address_banned' })
    return req.params.jobId === 'done' ? { status: 'finished' } : { status: 'leased', lease: { id: 'x' } }
  })
  app.post<{ Params: { leaseId: string } }>('/api/leases/:leaseId/submission', async (req) => {
    if (req.params.leaseId === 'late') throw Object.assign(new Error('too late'), { statusCode: 410, code: 'lease_expired' })
    return { accepted: true, round: 0, unit: 0, roundClosed: false }
  })
}

describe('operations endpoints', () => {
  let db: Database
  const events = new EventEmitter()
  const outcomes = new EventEmitter()
  let chainUp = true
  const chain = {
    transactions: { outcomes },
    publicClient: { getBlockNumber: async () => (chainUp ? 7n : Promise.reject(new Error('connection refused'))) },
  }
  let app: FastifyInstance
  let other: FastifyInstance

  beforeAll(async () => {
    db = await openPglite()
    await migrate(db)
    app = Fastify()
    fakeApi(app)
    registerOps(app, { db, events, chain, version: 'test' })
    other = Fastify()
    registerOps(other, { db, events: new EventEmitter(), chain: null, version: 'test' })
  })

  afterAll(async () => {
    await app.close()
    await other.close()
    await db.close()
  })

  it('counts leases, submissions and refusals by code, round closes and chain transactions, per coordinator', async () => {
    for (const jobId of ['a', 'b', 'done', 'banned']) await app.inject({ method: 'POST', url: `/api/jobs/${jobId}/leases`, payload: {} })
    for (const leaseId of ['l1', 'l2', 'l3', 'late']) await app.inject({ method: 'POST', url: `/api/leases/${leaseId}/submission`, payload: {} })
    await app.inject({ method: 'GET', url: '/api/nothing' })
    events.emit('roundClosed', '0xjob', 0, 0.3)
    events.emit('roundClosed', '0xjob', 1, 4)
    outcomes.emit('outcome', 'close escrow of 0x1234abcd', 'sent')
    outcomes.emit('outcome', 'close escrow of 0x1234abcd', 'failed')
    outcomes.emit('outcome', 'post root of epoch 3', 'sent')
    outcomes.emit('outcome', 'post root of epoch 3', 'mined')

    const scrape = await app.inject({ method: 'GET', url: '/metrics' })
    expect(scrape.statusCode).toBe(200)
    expect(scrape.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = scrape.body
    expect(sample(text, 'tabtrain_leases_total{outcome="leased"}')).toBe(2)
    expect(sample(text, 'tabtrain_leases_total{outcome="finished"}')).toBe(1)
    expect(sample(text, 'tabtrain_leases_total{outcome="refused"}')).toBe(1)
    expect(sample(text, 'tabtrain_submissions_total{outcome="accepted"}')).toBe(3)
    expect(sample(text, 'tabtrain_submissions_total{outcome="refused"}')).toBe(1)
    expect(sample(text, 'tabtrain_refusals_total{route="/api/jobs/:jobId/leases",code="address_banned"}')).toBe(1)
    expect(sample(text, 'tabtrain_refusals_total{route="/api/leases/:leaseId/submission",code="lease_expired"}')).toBe(1)
    expect(sample(text, 'tabtrain_refusals_total{route="unmatched",code="404"}')).toBe(1)
    expect(sample(text, 'tabtrain_round_close_seconds_count')).toBe(2)
    expect(sample(text, 'tabtrain_round_close_seconds_bucket{le="0.5"}')).toBe(1)
    expect(sample(text, 'tabtrain_round_close_seconds_sum')).toBeCloseTo(4.3)
    expect(sample(text, 'tabtrain_chain_transactions_total{kind="close escrow",outcome="failed"}')).toBe(1)
    expect(sample(text, 'tabtrain_chain_transactions_total{kind="post root",outcome="mined"}')).toBe(1)
    expect(sample(text, 'tabtrain_http_request_duration_seconds_count{method="POST",route="/api/jobs/:jobId/leases",status="2xx"}')).toBe(3)
    // Queue depths are read from the store on each scrape (this one is empty), sockets from the server.
    expect(sample(text, 'tabtrain_units_waiting')).toBe(0)
    expect(sample(text, 'tabtrain_checks_waiting')).toBe(0)
    expect(sample(text, 'tabtrain_leases_live')).toBe(0)
    expect(sample(text, 'tabtrain_websocket_clients')).toBe(0)
    // The process's own metrics, in this coordinator's registry.
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d+/m)

    // Another coordinator in the same process counts nothing of this one's.
    const elsewhere = (await other.inject({ method: 'GET', url: '/metrics' })).body
    expect(sample(elsewhere, 'tabtrain_leases_total{outcome="leased"}')).toBeNaN()
    expect(elsewhere).not.toMatch(/tabtrain_chain_transactions_total\{/)
  })

  it('names transaction kinds without the ids that follow', () => {
    expect(transactionKind('close escrow of 0xabc')).toBe('close escrow')
    expect(transactionKind('slashDoubleSign for dispute 0x12')).toBe('slashDoubleSign')
    expect(transactionKind('claim the unfrozen rewards of 0xabc before sweeping')).toBe('claim the unfrozen rewards')
    expect(transactionKind('faucet gas')).toBe('faucet gas')
  })

  it('is alive whatever its parts say, and ready only when the store, its schema and the chain answer', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' })
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toMatchObject({ ready: true, checks: { store: { ok: true }, migrations: { ok: true }, chain: { ok: true } } })

    chainUp = false
    const down = await app.inject({ method: 'GET', url: '/readyz' })
    expect(down.statusCode).toBe(503)
    expect(down.json()).toMatchObject({ ready: false, checks: { store: { ok: true }, chain: { ok: false, error: 'connection refused' } } })
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200)
    chainUp = true

    // A store one migration behind this build.
    const old = await openPglite()
    await migrate(old, SCHEMA_VERSION - 1)
    const behind = Fastify()
    registerOps(behind, { db: old, events: new EventEmitter(), version: 'test' })
    const report = await behind.inject({ method: 'GET', url: '/readyz' })
    expect(report.statusCode).toBe(503)
    expect(report.json().checks.migrations).toMatchObject({ ok: false, error: `store at schema version ${SCHEMA_VERSION - 1}; this build needs ${SCHEMA_VERSION}` })
    expect(report.json().checks).not.toHaveProperty('chain')

    await old.close()
    const closed = await behind.inject({ method: 'GET', url: '/readyz' })
    expect(closed.statusCode).toBe(503)
    expect(closed.json().checks.store.ok).toBe(false)
    await behind.close()
  })
})

describe('coordinator logs', () => {
  const capture = () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk: Buffer, _e, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean))
        done()
      },
    })
    return { lines, stream }
  }

  it('reads each message for its level', () => {
    expect(levelOf('job 0x12 round 3 closed: held-out loss 0.31')).toBe('info')
    expect(levelOf('verification tick failed: connection terminated')).toBe('warn')
    expect(levelOf('referee for a lone answer (lease x) failed: boom; retried on the next tick')).toBe('warn')
    expect(levelOf('0xabc caught: wrong update; banned, 0 unit(s) it vouched for go to the referee')).toBe('warn')
    expect(levelOf('internal error: TypeError: x is undefined')).toBe('error')
  })

  it('writes JSON lines with level, time, msg and fields, and the banner as one line the test harness finds', () => {
    const { lines, stream } = capture()
    const logger = createLogger({ format: 'json', level: 'info', stream })
    logger.log('job 0x12 round 3 closed', { jobId: '0x12', round: 3 })
    logger.log('verification tick failed: boom')
    logger.logger.debug('not at info')
    logger.banner('\nTabTrain is running.\n  Contribute: http://127.0.0.1:4321/contribute.html\n', { contribute: 'http://127.0.0.1:4321/contribute.html' })
    expect(lines).toHaveLength(3)
    const [first, second, banner] = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(first).toMatchObject({ level: 'info', msg: 'job 0x12 round 3 closed', jobId: '0x12', round: 3 })
    expect(new Date(String(first!.time)).toISOString()).toBe(first!.time)
    expect(second).toMatchObject({ level: 'warn', msg: 'verification tick failed: boom' })
    expect(banner).toMatchObject({ level: 'info', banner: true, contribute: 'http://127.0.0.1:4321/contribute.html' })
    expect(lines[2]).toMatch(/Contribute: (http:\/\/127\.0\.0\.1:\d+)\//)
  })

  it('shows a person the banner and warnings only, in short lines', () => {
    const { lines, stream } = capture()
    const logger = createLogger({ format: 'text', level: 'warn', stream })
    logger.log('job 0x12 round 3 closed')
    logger.log('verification tick failed: boom', { attempt: 2 })
    logger.banner('TabTrain is running.\n  Contribute: http://127.0.0.1:4321/contribute.html', {})
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d WARN verification tick failed: boom attempt=2$/)
    expect(lines.slice(1)).toEqual(['TabTrain is running.', '  Contribute: http://127.0.0.1:4321/contribute.html'])
  })

  it('still writes the banner in JSON when the level hides info', () => {
    const { lines, stream } = capture()
    createLogger({ format: 'json', level: 'warn', stream }).banner('TabTrain is running.\n  Contribute: http://127.0.0.1:1/contribute.html', {})
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'info', msg: 'TabTrain is running. Contribute: http://127.0.0.1:1/contribute.html' })
  })
})
