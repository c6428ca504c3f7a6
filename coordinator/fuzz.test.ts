import { Agent, request as httpRequest } from 'node:http'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import {
  ERROR_STATUS,
  ROUTE_LIST,
  buildSignInMessage,
  decodeTensorList,
  encodeSubmission,
  encodeUpdate,
  isErrorCode,
  refusalsOf,
  routePathPattern,
  sha256Hex,
  signLeaseRequest,
  signWorkClaim,
  type CoordinatorInfo,
  type Hash,
  type RouteDefinition,
} from '../src/protocol/index.ts'
import { alice, leased, signedLease, TEST_DOMAIN } from './testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/**
 * Hostile input: thousands of malformed and random requests, seeded, to every route of the protocol's
 * table, over loopback only and bounded in count and time. No answer may be a 5xx; every refusal is a 4xx
 * whose JSON body names one of the protocol's codes (one its route may give), with the HTTP status that
 * code has, and a message; the coordinator still answers afterwards.
 */

const SEED = 20261201
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 3000)
const TIME_BOUND_MS = 30_000
const CONCURRENCY = 8

/** mulberry32: small, seeded, good enough to pick cases. */
function rng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const pick = <T,>(items: readonly T[]): T => items[int(items.length)]!
  const chance = (p: number) => next() < p
  const hex = (n: number, alphabet = '0123456789abcdef') => Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join('')
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256))
  return { next, int, pick, chance, hex, bytes }
}

type Rng = ReturnType<typeof rng>

interface Sent {
  method: string
  path: string
  headers: Record<string, string>
  body?: Uint8Array | string
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })

/** One raw request over loopback: any method, any path, any header, any bytes. */
function send(base: URL, sent: Sent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      // A body whose content-length lies would leave bytes on a kept-alive connection: those go alone.
      { host: base.hostname, port: base.port, method: sent.method, path: sent.path, headers: sent.headers, agent: sent.headers['content-length'] ? false : agent },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer in 20 s to ${sent.method} ${sent.path.slice(0, 100)}`)))
    if (sent.body !== undefined) req.write(sent.body)
    req.end()
  })
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND', 'TRACE'] as const

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'text/plain',
  'text/html',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'multipart/form-data; boundary=----x',
  'application/octet-stream',
  'image/png',
  'application/vnd.api+json',
  ';;;',
  '',
]

/** Strings that break things: empty, huge, control characters, unicode, traversal, injections, bad hex. */
function nastyString(r: Rng): string {
  return r.pick([
    () => '',
    () => 'x'.repeat(r.pick([100, 5000, 70_000])),
    () => '\u0000\u0001\u001f',
    () => '💥'.repeat(r.int(50) + 1),
    () => '../../etc/passwd',
    () => "' OR 1=1 --",
    () => '${jndi:ldap://x}',
    () => `0x${r.hex(64)}`,
    () => `0x${r.hex(64, '0123456789ABCDEF')}`,
    () => `0x${r.hex(r.int(200))}`,
    () => `0x${r.hex(40)}`,
    () => `0x${r.hex(64, 'xyzg')}`,
    () => '__proto__',
    () => 'constructor',
    () => String(r.int(2 ** 31) - 2 ** 30),
    () => '1e309',
    () => 'NaN',
    () => r.hex(r.int(40) + 1, 'abcdefghijklmnopqrstuvwxyz-_'),
  ])()
}

/** Any JSON value, nested a little, or a lot. */
function randomJson(r: Rng, depth = 0): unknown {
  const kind = r.int(depth > 3 ? 6 : 9)
  switch (kind) {
    case 0:
      return null
    case 1:
      return r.chance(0.5)
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, Number.MAX_SAFE_INTEGER + 2])
    case 3:
    case 4:
    case 5:
      return nastyString(r)
    case 6:
      return Array.from({ length: r.int(5) }, () => randomJson(r, depth + 1))
    default:
      return Object.fromEntries(Array.from({ length: r.int(5) }, () => [r.pick(['request', 'signature', 'session', 'address', 'budget', 'message', 'jobId', '__proto__', nastyString(r).slice(0, 20)]), randomJson(r, depth + 1)]))
  }
}

/** `value` with one leaf replaced, removed, or a key added, at random. */
function mutate(r: Rng, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || r.chance(0.15)) return randomJson(r)
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value) ? [...value] : { ...(value as Record<string, unknown>) }
  const keys = Object.keys(copy)
  if (keys.length === 0 || r.chance(0.1)) {
    ;(copy as Record<string, unknown>)[nastyString(r).slice(0, 30) || 'extra'] = randomJson(r)
    return copy
  }
  const key = r.pick(keys)
  if (r.chance(0.2)) delete (copy as Record<string, unknown>)[key]
  else (copy as Record<string, unknown>)[key] = mutate(r, (copy as Record<string, unknown>)[key])
  return copy
}

const DEEP = `${'['.repeat(5000)}${']'.repeat(5000)}`
const BROKEN_JSON = ['{', '{"request":', '[1,2', '{"a":1}}', 'nul', '"\\x"', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"x":1}}}', DEEP, '\u0000', '{"a":1e99999}']

/** The counts the summary line reports. */
interface Tally {
  sent: number
  ok: number
  byCode: Record<string, number>
  fiveHundreds: number
  webSockets: number
}

describe('fuzz: hostile input to every route (loopback, seeded, bounded)', () => {
  let coordinator: TemporaryCoordinator
  let base: URL
  let info: CoordinatorInfo
  let jobId: Hash
  let blobHash: Hash
  let leaseIds: string[] = []
  let submissionTemplates: Uint8Array[] = []
  let leaseTemplates: unknown[] = []
  let token = ''
  const failures: string[] = []

  beforeAll(async () => {
    const t0 = Date.now()
    // Without a chain by default (seconds to start); FUZZ_CHAIN=local runs the same against anvil, faucet and rewards included.
    coordinator = await startTemporaryCoordinator({ chain: process.env.FUZZ_CHAIN === 'local' ? { mode: 'local', port: 0 } : { mode: 'off', ...TEST_DOMAIN } })
    base = new URL(coordinator.url)
    const client = new CoordinatorClient(coordinator.url)
    info = await client.info()
    jobId = coordinator.presetJobId as Hash
    const job = await client.job(jobId)
    blobHash = job.spec.model.initialWeights
    // Real leases and well-formed submissions for them, to mutate: the fuzz reaches the checks behind the parsers.
    const initial = decodeTensorList(await client.blob(blobHash))
    for (let i = 0; i < 3; i++) {
      const account = privateKeyToAccount(generatePrivateKey())
      // A paid job (on a chain) leases only to staked addresses: the faucet stakes for it.
      if (info.chain?.faucet) await client.faucet(account.address)
      const lease = leased(await signedLease(client, account, jobId))
      leaseIds.push(lease.id)
      const updateBytes = encodeUpdate(job.spec.training.compression, { shapes: initial.shapes, values: initial.values.map((v) => new Float32Array(v.length).fill(1e-3)) })
      const signed = await signWorkClaim(account, { ...lease.unit, outputHash: sha256Hex(updateBytes), contributor: account.address, deviceClass: 'fuzz' }, info)
      submissionTemplates.push(encodeSubmission(signed, updateBytes))
      leaseTemplates.push(await signLeaseRequest(account, { jobId, audience: info.coordinatorId, domain: info }))
    }
    // A requester's token, so that owner actions and job creation are fuzzed behind the sign-in too.
    const host = base.host
    const { nonce } = (await (await fetch(`${coordinator.url}/api/auth/nonce`)).json()) as { nonce: string }
    const message = buildSignInMessage({ address: alice.address, chainId: info.chainId, origin: `http://${host}`, nonce })
    const signIn = await fetch(`${coordinator.url}/api/auth/siwe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message, signature: await alice.signMessage({ message }) }),
    })
    token = ((await signIn.json()) as { token: string }).token
    expect(token).toBeTruthy()
    console.log(`fuzz set-up: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  })

  afterAll(async () => {
    const t0 = Date.now()
    agent.destroy()
    const slow = setTimeout(() => {
      const server = coordinator.app.server
      server.getConnections((_e, n) => console.log(`still closing after 10 s: ${n} connections`))
      console.log((process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().map((h) => (h as object).constructor.name).join(','))
    }, 10_000)
    await coordinator?.dispose()
    clearTimeout(slow)
    console.log(`fuzz tear-down: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  })

  /** A value for a path parameter: often plausible, often not. */
  function param(r: Rng, name: string): string {
    const plausible: Record<string, () => string> = {
      jobId: () => r.pick([jobId, `0x${r.hex(64)}`]),
      round: () => r.pick(['0', '1', String(r.int(100))]),
      unit: () => r.pick(['0', '1', String(r.int(10))]),
      leaseId: () => r.pick([...leaseIds, crypto.randomUUID()]),
      address: () => r.pick([alice.address, alice.address.toLowerCase(), privateKeyToAccount(generatePrivateKey()).address]),
      hash: () => r.pick([blobHash, `0x${r.hex(64)}`]),
    }
    const odd = ['-1', '1.5', '1e3', '01', '9999999999', '0x10', '%201', 'null', '%00', '%zz', '%2F..%2F', '..', '.']
    if (r.chance(0.4)) return (plausible[name] ?? (() => 'x'))()
    if (r.chance(0.3)) return r.pick(odd)
    return encodeURIComponent(nastyString(r))
  }

  function pathFor(r: Rng, route: RouteDefinition, headOnly: boolean): string {
    let path = route.path.replace(/:([A-Za-z]+)/g, (_m, name: string) => param(r, name))
    if (r.chance(0.05)) path += r.pick(['/', '//', '/extra', '?', '#frag', '/..', '%'])
    if (r.chance(0.15)) {
      const query = Array.from({ length: r.int(4) + 1 }, () => `${encodeURIComponent(nastyString(r).slice(0, 50))}=${encodeURIComponent(nastyString(r).slice(0, 200))}`).join('&')
      path += `?${r.chance(0.1) ? '%zz=%zz&a[b][c]=1&__proto__[x]=1' : query}`
    }
    if (r.chance(0.01) && !headOnly) path = `${path}?pad=${'a'.repeat(20_000)}` // past Node's header limit: 431 (not for HEAD, whose answer has no body)
    return path
  }

  function bodyFor(r: Rng, route: RouteDefinition, headers: Record<string, string>): Uint8Array | string | undefined {
    const choice = r.int(10)
    if (choice === 0) return undefined
    if (choice === 1) {
      headers['content-type'] = r.pick(CONTENT_TYPES)
      return r.bytes(r.int(2048))
    }
    if (choice === 2) {
      headers['content-type'] = 'application/json'
      return r.pick(BROKEN_JSON)
    }
    if (choice === 3) {
      // Larger than any small body may be.
      headers['content-type'] = r.pick(['application/json', 'application/octet-stream', 'text/plain'])
      return 'x'.repeat(r.pick([20_000, 200_000, 1_100_000]))
    }
    switch (route.body.kind) {
      case 'json': {
        headers['content-type'] = r.chance(0.9) ? 'application/json' : r.pick(CONTENT_TYPES)
        const template =
          route.path.endsWith('/leases') ? r.pick(leaseTemplates) : route.path === '/api/faucet' ? { address: alice.address } : route.path.endsWith('/budget') ? { budget: '1000' } : { message: 'x', signature: `0x${'1'.repeat(130)}` }
        return JSON.stringify(r.chance(0.8) ? mutate(r, template) : randomJson(r))
      }
      case 'octet-stream': {
        headers['content-type'] = r.chance(0.9) ? 'application/octet-stream' : r.pick(CONTENT_TYPES)
        const template = r.pick(submissionTemplates)
        const bytes = Uint8Array.from(template)
        const view = new DataView(bytes.buffer)
        switch (r.int(6)) {
          case 0:
            return bytes.subarray(0, r.int(bytes.length))
          case 1:
            for (let i = 0; i < 1 + r.int(8); i++) bytes[r.int(bytes.length)] = r.int(256)
            return bytes
          case 2:
            view.setUint32(4, r.pick([0, 1, 0xffffffff, bytes.length, 70_000]), true)
            return bytes
          case 3: {
            // The claim's JSON mutated, the update kept.
            const length = view.getUint32(4, true)
            const claim = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length))) as unknown
            const json = new TextEncoder().encode(JSON.stringify(mutate(r, claim)))
            const out = new Uint8Array(8 + json.length + bytes.length - 8 - length)
            const outView = new DataView(out.buffer)
            outView.setUint32(0, view.getUint32(0, true), true)
            outView.setUint32(4, json.length, true)
            out.set(json, 8)
            out.set(bytes.subarray(8 + length), 8 + json.length)
            return out
          }
          case 4:
            return r.bytes(r.int(4096))
          default:
            return Uint8Array.from([...bytes, ...r.bytes(r.int(64) + 1)])
        }
      }
      case 'multipart': {
        const boundary = `----fuzz${r.hex(12)}`
        headers['content-type'] = r.chance(0.85) ? `multipart/form-data; boundary=${boundary}` : r.pick(CONTENT_TYPES)
        const draft = { preset: 'mnist-mlp', name: `fuzz ${r.int(1000)}`, kernelBundle: 'default', payment: { pricePerUnit: '1', budget: '100', requester: alice.address } }
        const parts = [
          `--${boundary}\r\ncontent-disposition: form-data; name="${r.chance(0.9) ? 'job' : nastyString(r).slice(0, 20)}"\r\n\r\n${r.chance(0.3) ? nastyString(r) : JSON.stringify(mutate(r, draft))}\r\n`,
          ...Array.from(
            { length: r.int(3) },
            () => `--${boundary}\r\ncontent-disposition: form-data; name="${r.pick(['model', 'weights', 'data', 'images', 'labels', 'other'])}"; filename="${r.pick(['model.json', 'w.bin', 'd.csv', nastyString(r).slice(0, 30)])}"\r\ncontent-type: application/octet-stream\r\n\r\n${r.chance(0.5) ? '{"modelTopology":' : nastyString(r).slice(0, 2000)}\r\n`,
          ),
          r.chance(0.8) ? `--${boundary}--\r\n` : '',
        ]
        return parts.join('').slice(0, r.chance(0.1) ? r.int(200) : undefined)
      }
      default:
        return r.chance(0.5) ? undefined : JSON.stringify(randomJson(r))
    }
  }

  /** The route a request reaches, if its method and path are one the table lists. */
  const patterns = ROUTE_LIST.map((route) => ({ route, pattern: routePathPattern(route.path) }))
  const matched = (method: string, path: string) => {
    const bare = path.split(/[?#]/)[0]!
    return patterns.find(({ route, pattern }) => (route.method === method || (method === 'HEAD' && route.method === 'GET')) && pattern.test(bare))?.route
  }

  function check(sent: Sent, answer: Answer, tally: Tally): void {
    const what = `${sent.method} ${sent.path.slice(0, 120)}`
    if (answer.status >= 500) {
      tally.fiveHundreds++
      failures.push(`${what} → ${answer.status} ${answer.body.slice(0, 300)}`)
      return
    }
    if (answer.status < 400) {
      tally.ok++
      return
    }
    // HEAD answers carry no body; their status is all there is.
    if (sent.method === 'HEAD') {
      tally.byCode[`HEAD ${answer.status}`] = (tally.byCode[`HEAD ${answer.status}`] ?? 0) + 1
      return
    }
    let body: { error?: unknown; code?: unknown; message?: unknown }
    try {
      body = JSON.parse(answer.body) as typeof body
    } catch {
      failures.push(`${what} → ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 200)}`)
      return
    }
    if (typeof body.error !== 'string' || !isErrorCode(body.code) || typeof body.message !== 'string' || body.message.trim() === '') {
      failures.push(`${what} → ${answer.status} ${answer.body.slice(0, 300)}: not {error, code, message} with a protocol code`)
      return
    }
    tally.byCode[body.code] = (tally.byCode[body.code] ?? 0) + 1
    if (ERROR_STATUS[body.code] !== answer.status) failures.push(`${what} → ${answer.status} with code ${body.code}, whose status is ${ERROR_STATUS[body.code]}`)
    const route = matched(sent.method, sent.path)
    const everywhere = ['malformed_request', 'payload_too_large', 'unsupported_media_type', 'rate_limited', 'headers_too_large']
    const allowed: string[] = route ? [...refusalsOf(route), ...everywhere, ...(route.websocket ? ['upgrade_required'] : [])] : [...everywhere, 'not_found']
    if (!allowed.includes(body.code)) failures.push(`${what} → ${body.code}, not a refusal ${route ? `${route.method} ${route.path}` : 'an unknown route'} lists (${body.message.slice(0, 200)})`)
  }

  it(`answers ${REQUESTS} malformed and random requests with 4xx refusals, never a 5xx`, { timeout: 120_000 }, async () => {
    const r = rng(SEED)
    const tally: Tally = { sent: 0, ok: 0, byCode: {}, fiveHundreds: 0, webSockets: 0 }
    const started = Date.now()
    const cases: Sent[] = []
    for (let i = 0; i < REQUESTS; i++) {
      const route = ROUTE_LIST[i % ROUTE_LIST.length]!
      const headers: Record<string, string> = {}
      const method = r.chance(0.85) ? route.method : r.pick(METHODS)
      if (route.signedIn && r.chance(0.6)) headers.authorization = r.chance(0.8) ? `Bearer ${token}` : r.pick(['Bearer', 'Basic abc', `Bearer ${nastyString(r).slice(0, 500)}`, 'x'.repeat(3000)])
      if (r.chance(0.1)) headers.origin = r.pick(['https://evil.example', 'null', nastyString(r).slice(0, 100)])
      const body = method === 'GET' || method === 'HEAD' ? undefined : bodyFor(r, route, headers)
      if (body !== undefined && r.chance(0.03)) headers['content-length'] = String(r.pick([0, 1, 10 ** 9]))
      // Header values travel as latin-1 text: anything else is not a request a client could send.
      for (const [name, value] of Object.entries(headers)) headers[name] = value.replace(/[^\x20-\x7e]/g, '?')
      cases.push({ method, path: pathFor(r, route, method === 'HEAD'), headers, body })
    }
    let next = 0
    const worker = async () => {
      while (next < cases.length && Date.now() - started < TIME_BOUND_MS) {
        const sent = cases[next++]!
        tally.sent++
        let answer: Answer
        try {
          answer = await send(base, sent)
        } catch (error) {
          // A connection the server closed after refusing a body it would not read is an answer too; a hang is not.
          const message = (error as Error).message
          if (/ECONNRESET|EPIPE|socket hang up/.test(message) && sent.headers['content-length']) continue
          failures.push(`${sent.method} ${sent.path.slice(0, 120)} → no answer: ${message}`)
          continue
        }
        check(sent, answer, tally)
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))

    // The live feed: odd job ids over a real WebSocket are refused before the upgrade, or closed with 4404.
    for (let i = 0; i < 20; i++) {
      const id = i % 2 === 0 ? `0x${r.hex(64)}` : encodeURIComponent(nastyString(r).slice(0, 300))
      const outcome = await new Promise<string>((resolve) => {
        const socket = new WebSocket(`ws://${base.host}/api/jobs/${id}/live`)
        socket.on('unexpected-response', (req, res) => {
          // Refused before the upgrade: the answer is ours to read and the connection ours to close.
          req.destroy()
          resolve(`http ${res.statusCode}`)
        })
        socket.on('close', (code) => resolve(`close ${code}`))
        socket.on('error', (error) => resolve(`error ${error.message}`))
      })
      tally.webSockets++
      if (!/^(http 400|close 4404)$/.test(outcome)) failures.push(`WebSocket /api/jobs/${id.slice(0, 80)}/live → ${outcome}`)
    }

    const seconds = ((Date.now() - started) / 1000).toFixed(1)
    const codes = Object.entries(tally.byCode)
      .sort((a, b) => b[1] - a[1])
      .map(([code, n]) => `${code} ${n}`)
      .join(', ')
    console.log(`fuzz (seed ${SEED}): ${tally.sent} requests + ${tally.webSockets} WebSockets in ${seconds} s; 2xx/3xx ${tally.ok}; 4xx by code: ${codes}; 5xx ${tally.fiveHundreds}`)

    expect(failures).toEqual([])
    expect(tally.fiveHundreds).toBe(0)
    expect(tally.sent).toBeGreaterThan(Math.min(1000, REQUESTS / 2))
    // Still up, and still itself.
    const after = await send(base, { method: 'GET', path: '/api/info', headers: {} })
    expect(after.status).toBe(200)
    expect(JSON.parse(after.body)).toEqual(info)
  })
})
