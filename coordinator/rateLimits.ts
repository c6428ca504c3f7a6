import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ConfigError } from './config.ts'
import { CoordinatorError } from './errors.ts'

/**
 * Requests per client, counted in fixed windows by @fastify/rate-limit (in this process's memory: each
 * replica counts its own). Two kinds:
 * - per IP address (an IPv6 address by its /64), on every route: what one machine may ask of the coordinator;
 * - per account, on the routes that name one: lease requests (counted against the contributor a signature
 *   or session proved, so nobody can use up another's allowance), the faucet (the address it pays) and
 *   sign-in (the address the message names).
 * A refusal is 429 `rate_limited` with `Retry-After` (seconds) and a message saying when to retry.
 */
export interface RateLimits {
  /** Length of a counting window. */
  windowMs: number
  /** Requests per window from one IP address, any route; 0: no limit. */
  perIp: number
  /** Lease requests per window by one contributor (each unit costs one); 0: no limit. */
  leasesPerAddress: number
  /** Faucet requests per window for one address (each may send transactions); 0: no limit. */
  faucetPerAddress: number
  /** Sign-ins per window by one address (each stores a session); 0: no limit. */
  signInsPerAddress: number
  /**
   * Requests from this machine (127.0.0.0/8, ::1) are not counted: benchmarks and tests drive hundreds of
   * requests per second from loopback. A coordinator behind a reverse proxy on the same machine must set
   * `trustProxy` (TABTRAIN_TRUST_PROXY), so that clients are counted by their own address, or turn this off.
   */
  exemptLoopback: boolean
}

/**
 * A tab asks for a lease, an input blob and a submission per unit (seconds apart), and a page load fetches
 * some hundred files once: 3,000 a minute from one address leaves room for an office of tabs behind one
 * NAT while capping a single abuser at 50 requests/s.
 */
export const DEFAULT_RATE_LIMITS: RateLimits = {
  windowMs: 60_000,
  perIp: 3000,
  leasesPerAddress: 600,
  faucetPerAddress: 10,
  signInsPerAddress: 30,
  exemptLoopback: true,
}

function count(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (raw === 'off') return 0
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) throw new ConfigError(`${name}=${raw} must be a whole number (0 or "off": no limit)`)
  return value
}

/**
 * TABTRAIN_RATE_LIMIT_WINDOW_SECONDS, TABTRAIN_RATE_LIMIT_PER_IP, TABTRAIN_RATE_LIMIT_LEASES_PER_ADDRESS,
 * TABTRAIN_RATE_LIMIT_FAUCET_PER_ADDRESS, TABTRAIN_RATE_LIMIT_SIGN_INS_PER_ADDRESS (0 or `off`: no limit),
 * TABTRAIN_RATE_LIMIT_LOOPBACK (`exempt`, the default, or `limit`).
 */
export function rateLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): RateLimits {
  const d = DEFAULT_RATE_LIMITS
  const loopback = env.TABTRAIN_RATE_LIMIT_LOOPBACK || 'exempt'
  if (loopback !== 'exempt' && loopback !== 'limit') throw new ConfigError(`TABTRAIN_RATE_LIMIT_LOOPBACK=${loopback}: expected exempt or limit`)
  const windowSeconds = count(env, 'TABTRAIN_RATE_LIMIT_WINDOW_SECONDS', d.windowMs / 1000)
  if (windowSeconds < 1) throw new ConfigError('TABTRAIN_RATE_LIMIT_WINDOW_SECONDS must be at least 1')
  return {
    windowMs: windowSeconds * 1000,
    perIp: count(env, 'TABTRAIN_RATE_LIMIT_PER_IP', d.perIp),
    leasesPerAddress: count(env, 'TABTRAIN_RATE_LIMIT_LEASES_PER_ADDRESS', d.leasesPerAddress),
    faucetPerAddress: count(env, 'TABTRAIN_RATE_LIMIT_FAUCET_PER_ADDRESS', d.faucetPerAddress),
    signInsPerAddress: count(env, 'TABTRAIN_RATE_LIMIT_SIGN_INS_PER_ADDRESS', d.signInsPerAddress),
    exemptLoopback: loopback === 'exempt',
  }
}

/**
 * TABTRAIN_TRUST_PROXY: `true` (or `1`) trusts X-Forwarded-For from any proxy; otherwise the proxies'
 * addresses or CIDRs, comma-separated (e.g. `127.0.0.1,10.0.0.0/8`), whose X-Forwarded-For is believed.
 */
export function trustProxyFromEnv(env: NodeJS.ProcessEnv = process.env): boolean | string | undefined {
  const raw = env.TABTRAIN_TRUST_PROXY
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return undefined
  return raw === '1' || raw === 'true' ? true : raw
}

export function isLoopback(ip: string): boolean {
  return ip === '::1' || /^(::ffff:)?127\./.test(ip)
}

const seconds = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}` : `${ms / 1000} s`)

/** Limits a route by an account: call `check(req, reply, address)` once the address is known. */
export type AccountLimit = (req: FastifyRequest, reply: FastifyReply, address: string) => Promise<void>

export interface RegisteredRateLimits {
  leases: AccountLimit
  faucet: AccountLimit
  signIns: AccountLimit
}

/**
 * Counts every route per IP (register before any route), and returns the per-account limits for the
 * routes to call. The per-IP count runs first thing (`onRequest`), before a body is read.
 */
export async function registerRateLimits(app: FastifyInstance, limits: RateLimits): Promise<RegisteredRateLimits> {
  const exempt = (req: FastifyRequest) => limits.exemptLoopback && isLoopback(req.ip)
  await app.register(fastifyRateLimit, {
    global: true,
    max: Math.max(limits.perIp, 1),
    timeWindow: limits.windowMs,
    allowList: (req) => limits.perIp === 0 || exempt(req),
    errorResponseBuilder: (_req, context) =>
      new CoordinatorError(
        'rate_limited',
        `more than ${context.max} requests from this IP address in ${seconds(limits.windowMs)}; retry in ${Math.ceil(context.ttl / 1000)} s (Retry-After)`,
      ),
  })

  const account = (max: number, what: string): AccountLimit => {
    if (max === 0) return async () => {}
    const keys = new WeakMap<FastifyRequest, string>()
    const limiter = app.createRateLimit({ max, timeWindow: limits.windowMs, keyGenerator: (req) => keys.get(req) ?? '' })
    return async (req, reply, address) => {
      if (exempt(req)) return
      keys.set(req, `${what}:${address.toLowerCase()}`)
      const result = await limiter(req)
      if (result.isAllowed || !result.isExceeded) return
      void reply.header('retry-after', String(result.ttlInSeconds))
      throw new CoordinatorError(
        'rate_limited',
        `more than ${max} ${what} for ${address} in ${seconds(limits.windowMs)}; retry in ${result.ttlInSeconds} s (Retry-After)`,
      )
    }
  }
  return {
    leases: account(limits.leasesPerAddress, 'lease requests'),
    faucet: account(limits.faucetPerAddress, 'faucet requests'),
    signIns: account(limits.signInsPerAddress, 'sign-ins'),
  }
}
