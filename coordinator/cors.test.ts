import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROUTE_LIST } from '../src/protocol/index.ts'
import { isWidgetCall, registerWidgetCors } from './cors.ts'

const JOB = `0x${'ab'.repeat(32)}`
const SITE = 'https://blog.example'

/**
 * A page of another origin (a widget's host) may make the widget's calls and nothing else: the browser
 * refuses the rest because the coordinator sends no CORS header for them.
 */
describe('CORS for the widget', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    app = Fastify()
    await registerWidgetCors(app)
    const ok = async () => ({ ok: true })
    app.get('/api/info', ok)
    app.post('/api/jobs/:id/leases', ok)
    app.post('/api/leases/:id/release', ok)
    app.post('/api/jobs', ok)
    app.post('/api/jobs/:id/cancel', ok)
    app.post('/api/faucet', ok)
    app.post('/api/auth/nonce', ok)
    await app.ready()
  })

  afterAll(() => app.close())

  const preflight = (url: string, method = 'POST') =>
    app.inject({ method: 'OPTIONS', url, headers: { origin: SITE, 'access-control-request-method': method, 'access-control-request-headers': 'content-type' } })

  it('allows a preflight from a foreign origin on a lease route, without credentials', async () => {
    const answer = await preflight(`/api/jobs/${JOB}/leases`)
    expect(answer.statusCode).toBe(204)
    expect(answer.headers['access-control-allow-origin']).toBe('*')
    expect(answer.headers['access-control-allow-methods']).toContain('POST')
    expect(answer.headers['access-control-allow-headers']).toBe('content-type')
    expect(answer.headers['access-control-allow-credentials']).toBeUndefined()
    expect((await preflight('/api/leases/6f1c/release')).headers['access-control-allow-origin']).toBe('*')
  })

  it('answers the simple reads with the header too', async () => {
    const answer = await app.inject({ method: 'GET', url: '/api/info', headers: { origin: SITE } })
    expect(answer.statusCode).toBe(200)
    expect(answer.headers['access-control-allow-origin']).toBe('*')
  })

  it('refuses a preflight on owner actions, job creation, the faucet and sign-in', async () => {
    for (const url of [`/api/jobs/${JOB}/cancel`, '/api/jobs', '/api/faucet', '/api/auth/nonce']) {
      const answer = await preflight(url)
      expect(answer.headers['access-control-allow-origin'], url).toBeUndefined()
      expect(answer.statusCode, url).toBe(404)
    }
    // The request itself still works for same-origin pages; it just carries no CORS header.
    const direct = await app.inject({ method: 'POST', url: '/api/faucet', headers: { origin: SITE } })
    expect(direct.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('matches a route only with the method the widget uses on it', () => {
    expect(isWidgetCall('GET', `/api/jobs/${JOB}`)).toBe(true)
    expect(isWidgetCall('GET', '/api/jobs?status=active')).toBe(true)
    expect(isWidgetCall('POST', '/api/jobs')).toBe(false)
    expect(isWidgetCall('PATCH', `/api/jobs/${JOB}`)).toBe(false)
    expect(isWidgetCall('GET', '/widget.js')).toBe(true)
    expect(isWidgetCall('GET', '/contribute.html')).toBe(false)
  })

  describe('over the whole route table (src/protocol/routes.ts)', () => {
    let table: FastifyInstance
    /** A request path for a route: every parameter filled with a plausible value. */
    const pathOf = (path: string) => path.replace(/:[A-Za-z]+/g, (name) => (name === ':jobId' || name === ':hash' ? JOB : name === ':address' ? `0x${'12'.repeat(20)}` : '7'))

    beforeAll(async () => {
      table = Fastify()
      await registerWidgetCors(table)
      for (const route of ROUTE_LIST) table.route({ method: route.method, url: route.path, handler: async () => ({ ok: true }) })
      await table.ready()
    })

    afterAll(() => table.close())

    const nonWidget = ROUTE_LIST.filter((route) => !route.widget)

    it('has routes of every kind that no other origin may call (owner actions, sign-in, faucet, job creation, operations)', () => {
      expect(nonWidget.map((route) => route.name)).toEqual(
        expect.arrayContaining(['pause', 'resume', 'cancel', 'budget', 'signIn', 'authNonce', 'faucet', 'createJob', 'metrics', 'healthz', 'readyz', 'openapi', 'live']),
      )
    })

    it.each(nonWidget.map((route) => [route.method, route.path, route] as const))('refuses a foreign origin on %s %s: no CORS header, preflight or not', async (method, path) => {
      const url = pathOf(path)
      const announced = await table.inject({
        method: 'OPTIONS',
        url,
        headers: { origin: SITE, 'access-control-request-method': method, 'access-control-request-headers': 'content-type' },
      })
      expect(announced.headers['access-control-allow-origin']).toBeUndefined()
      expect(announced.headers['access-control-allow-methods']).toBeUndefined()
      const direct = await table.inject({ method, url, headers: { origin: SITE } })
      expect(direct.statusCode).toBe(200)
      expect(direct.headers['access-control-allow-origin']).toBeUndefined()
    })

    it.each(ROUTE_LIST.filter((route) => route.widget).map((route) => [route.method, route.path] as const))('admits any origin on the widget call %s %s', async (method, path) => {
      const url = pathOf(path)
      const announced = await table.inject({ method: 'OPTIONS', url, headers: { origin: SITE, 'access-control-request-method': method } })
      expect(announced.headers['access-control-allow-origin']).toBe('*')
      expect((await table.inject({ method, url, headers: { origin: SITE } })).headers['access-control-allow-origin']).toBe('*')
    })
  })
})
