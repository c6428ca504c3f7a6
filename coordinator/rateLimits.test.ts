import { EventEmitter } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import type { ApiErrorBody } from '../src/protocol/index.ts'
import { CoordinatorError } from './errors.ts'
import { buildHttpServer, type HttpOptions } from './http.ts'
import { DEFAULT_RATE_LIMITS, rateLimitsFromEnv, registerRateLimits, trustProxyFromEnv, type RateLimits } from './rateLimits.ts'

const ALICE = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const BOB = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC'

/** A server with `limits`, a plain route and an address-bearing one, refusals in the protocol's shape. */
async function server(limits: Partial<RateLimits>): Promise<FastifyInstance> {
  const app = Fastify()
  const accounts = await registerRateLimits(app, { ...DEFAULT_RATE_LIMITS, exemptLoopback: false, ...limits })
  app.setErrorHandler((error, _req, reply) => {
    const refused = error instanceof CoordinatorError ? error : new CoordinatorError('malformed_request', String(error))
    void reply.status(refused.status).send({ error: refused.name, code: refused.code, message: refused.message } satisfies ApiErrorBody)
  })
  app.get('/api/info', async () => ({ ok: true }))
  app.post<{ Body: { address: string } }>('/api/faucet', async (req, reply) => {
    await accounts.faucet(req, reply, req.body.address)
    return { ok: true }
  })
  await app.ready()
  return app
}

describe('rate limits', () => {
  let app: FastifyInstance | undefined
  afterEach(async () => {
    await app?.close()
    app = undefined
  })

  it('refuses an IP address past its limit with 429 rate_limited, Retry-After and when to retry', async () => {
    app = await server({ perIp: 3 })
    const from = (remoteAddress: string) => app!.inject({ method: 'GET', url: '/api/info', remoteAddress })
    for (let i = 0; i < 3; i++) expect((await from('203.0.113.7')).statusCode).toBe(200)
    const refused = await from('203.0.113.7')
    expect(refused.statusCode).toBe(429)
    const body = refused.json() as ApiErrorBody
    expect(body.code).toBe('rate_limited')
    expect(body.message).toMatch(/^more than 3 requests from this IP address in 1 minute; retry in \d+ s \(Retry-After\)$/)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    // Another machine is counted apart.
    expect((await from('198.51.100.1')).statusCode).toBe(200)
  })

  it('counts an account apart from the IP address it asks from, on the routes that name one', async () => {
    app = await server({ faucetPerAddress: 2 })
    const drip = (address: string, remoteAddress: string) => app!.inject({ method: 'POST', url: '/api/faucet', payload: { address }, remoteAddress })
    expect((await drip(ALICE, '203.0.113.1')).statusCode).toBe(200)
    // From another machine, in another case: still Alice.
    expect((await drip(ALICE.toLowerCase(), '203.0.113.2')).statusCode).toBe(200)
    const refused = await drip(ALICE, '203.0.113.3')
    expect(refused.statusCode).toBe(429)
    expect((refused.json() as ApiErrorBody).message).toMatch(new RegExp(`^more than 2 faucet requests for ${ALICE.toLowerCase()} in 1 minute; retry in \\d+ s \\(Retry-After\\)$`, 'i'))
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    expect((await drip(BOB, '203.0.113.3')).statusCode).toBe(200)
  })

  it('leaves loopback alone when told to (benchmarks), and every limit can be turned off', async () => {
    app = await server({ perIp: 1, faucetPerAddress: 1, exemptLoopback: true })
    for (let i = 0; i < 5; i++) {
      expect((await app.inject({ method: 'GET', url: '/api/info', remoteAddress: '127.0.0.1' })).statusCode).toBe(200)
      expect((await app.inject({ method: 'POST', url: '/api/faucet', payload: { address: ALICE }, remoteAddress: '::1' })).statusCode).toBe(200)
    }
    expect((await app.inject({ method: 'GET', url: '/api/info', remoteAddress: '203.0.113.9' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: '/api/info', remoteAddress: '203.0.113.9' })).statusCode).toBe(429)
    await app.close()
    app = await server({ perIp: 0, faucetPerAddress: 0 })
    for (let i = 0; i < 5; i++) {
      expect((await app.inject({ method: 'POST', url: '/api/faucet', payload: { address: ALICE }, remoteAddress: '203.0.113.9' })).statusCode).toBe(200)
    }
  })

  it('reads its settings from the environment, and refuses nonsense', () => {
    expect(rateLimitsFromEnv({})).toEqual(DEFAULT_RATE_LIMITS)
    expect(
      rateLimitsFromEnv({
        TABTRAIN_RATE_LIMIT_PER_IP: 'off',
        TABTRAIN_RATE_LIMIT_LEASES_PER_ADDRESS: '5',
        TABTRAIN_RATE_LIMIT_WINDOW_SECONDS: '10',
        TABTRAIN_RATE_LIMIT_LOOPBACK: 'limit',
      }),
    ).toMatchObject({ perIp: 0, leasesPerAddress: 5, windowMs: 10_000, exemptLoopback: false })
    expect(() => rateLimitsFromEnv({ TABTRAIN_RATE_LIMIT_PER_IP: '-3' })).toThrow(/TABTRAIN_RATE_LIMIT_PER_IP=-3/)
    expect(() => rateLimitsFromEnv({ TABTRAIN_RATE_LIMIT_LOOPBACK: 'maybe' })).toThrow(/exempt or limit/)
    expect(trustProxyFromEnv({})).toBeUndefined()
    expect(trustProxyFromEnv({ TABTRAIN_TRUST_PROXY: '1' })).toBe(true)
    expect(trustProxyFromEnv({ TABTRAIN_TRUST_PROXY: '127.0.0.1,10.0.0.0/8' })).toBe('127.0.0.1,10.0.0.0/8')
  })

  it("counts lease requests against the contributor the request proved, on the coordinator's own route", async () => {
    // Only what the lease route touches: who the request proves, and an answer.
    const options = {
      jobs: { events: new EventEmitter(), lease: async () => ({ status: 'wait', retryAfterMs: 1000, reason: 'test' }), options: { db: {} } },
      blobs: {},
      identity: { verifyBody: async (_jobId: string, body: { session: string }) => ({ contributor: body.session, request: {} }) },
      info: { chainId: 1, verifyingContract: ALICE, coordinatorId: 'test', version: 'test', chain: null, epochSeconds: null },
      rateLimits: { leasesPerAddress: 2, perIp: 1000, exemptLoopback: false },
    } as unknown as HttpOptions
    app = await buildHttpServer(options)
    const lease = (session: string, remoteAddress: string) =>
      app!.inject({ method: 'POST', url: `/api/jobs/0x${'ab'.repeat(32)}/leases`, payload: { session }, remoteAddress })
    expect((await lease(ALICE, '203.0.113.1')).statusCode).toBe(200)
    expect((await lease(ALICE, '203.0.113.2')).statusCode).toBe(200)
    const refused = await lease(ALICE, '203.0.113.3')
    expect(refused.statusCode).toBe(429)
    expect(refused.json()).toMatchObject({ code: 'rate_limited', message: expect.stringContaining(`more than 2 lease requests for ${ALICE}`) })
    expect((await lease(BOB, '203.0.113.3')).statusCode).toBe(200)
  })
})
