import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { recoverLeaseRequestSigner, type CoordinatorInfo, type Hash, type SignedLeaseRequest } from '../protocol/index.ts'
import { JOB_PAUSED_WAIT_MS, Scheduler, TOO_MANY_LEASES_WAIT_MS, type SchedulerEvent } from './scheduler.ts'

const jobId = `0x${'ab'.repeat(32)}` as Hash
const info: CoordinatorInfo = {
  chainId: 31337,
  coordinatorId: 'test-coordinator',
  verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3',
  version: 'test',
  chain: null,
  epochSeconds: null,
}

type Answer = { status: number; body: unknown }
const refusal = (status: number, code: string, message: string): Answer => ({ status, body: { error: 'refused', code, message } })
const finished: Answer = { status: 200, body: { status: 'finished' } }

/** A scheduler against a fake coordinator that answers lease requests from `answers`, in order. */
function harness(answers: Answer[]) {
  const account = privateKeyToAccount(generatePrivateKey())
  const leases: SignedLeaseRequest[] = []
  const events: SchedulerEvent[] = []
  const sleeps: number[] = []
  const fetchImpl = (async (url: string | URL, init?: RequestInit) => {
    const path = new URL(String(url)).pathname
    const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
    if (path === '/api/info') return json(200, info)
    if (path === `/api/jobs/${jobId}/leases` && init?.method === 'POST') {
      leases.push(JSON.parse(String(init.body)) as SignedLeaseRequest)
      const answer = answers.shift() ?? finished
      return json(answer.status, answer.body)
    }
    return json(404, { error: 'not found', code: 'not_found', message: path })
  }) as typeof fetch
  const scheduler = new Scheduler({
    client: new CoordinatorClient('http://coordinator.test', fetchImpl),
    executor: { runUnit: () => Promise.reject(new Error('no unit is leased in these tests')) },
    signer: account,
    deviceClass: 'test',
    jobId,
    onEvent: (event) => events.push(event),
    sleep: async (ms) => {
      sleeps.push(ms)
    },
  })
  const ended = () =>
    new Promise<void>((resolve) => {
      const poll = () => (scheduler.currentState === 'running' ? setTimeout(poll, 5) : resolve())
      poll()
    })
  return { account, scheduler, leases, events, sleeps, ended }
}

describe('Scheduler lease requests', () => {
  it('signs a fresh lease request for this coordinator every time', async () => {
    const h = harness([{ status: 200, body: { status: 'wait', retryAfterMs: 50, reason: 'round full' } }, finished])
    h.scheduler.start()
    await h.ended()
    expect(h.scheduler.currentState).toBe('finished')
    expect(h.leases).toHaveLength(2)
    for (const signed of h.leases) {
      expect(signed.request).toMatchObject({ jobId, contributor: h.account.address, audience: info.coordinatorId })
      expect(Math.abs(signed.request.issuedAt - Date.now())).toBeLessThan(60_000)
      expect(await recoverLeaseRequestSigner(signed, info)).toBe(h.account.address)
    }
    expect(h.leases[0]!.request.nonce).not.toBe(h.leases[1]!.request.nonce)
    expect(h.sleeps).toEqual([50])
  })

  for (const [code, message] of [
    ['stake_required', 'this job needs a stake of at least 10 TTT in StakeManager'],
    ['address_banned', 'this address was caught cheating in round 3'],
    ['job_cancelled', 'the job was cancelled by its owner'],
  ] as const) {
    it(`stops on ${code} with the coordinator's message`, async () => {
      const h = harness([refusal(403, code, message)])
      h.scheduler.start()
      await h.ended()
      expect(h.events).toContainEqual({ type: 'stopped', reason: message, code })
      expect(h.events.filter((e) => e.type === 'error')).toEqual([])
      expect(h.leases).toHaveLength(1)
      expect(h.scheduler.currentState).toBe('idle')
    })
  }

  it('waits and asks again when the address holds too many leases', async () => {
    const h = harness([refusal(429, 'too_many_leases', 'at most 2 live leases per address'), finished])
    h.scheduler.start()
    await h.ended()
    expect(h.events).toContainEqual({ type: 'waiting', reason: 'at most 2 live leases per address', retryAfterMs: TOO_MANY_LEASES_WAIT_MS })
    expect(h.sleeps).toEqual([TOO_MANY_LEASES_WAIT_MS])
    expect(h.leases).toHaveLength(2)
    expect(h.scheduler.currentState).toBe('finished')
  })

  it('waits while the owner has paused the job and carries on when it is resumed', async () => {
    const h = harness([refusal(409, 'job_paused', 'the job is paused by its owner'), refusal(409, 'job_paused', 'the job is paused by its owner'), finished])
    h.scheduler.start()
    await h.ended()
    expect(h.events).toContainEqual({ type: 'waiting', reason: 'the job is paused by its owner', retryAfterMs: JOB_PAUSED_WAIT_MS })
    expect(h.sleeps).toEqual([JOB_PAUSED_WAIT_MS, JOB_PAUSED_WAIT_MS])
    expect(h.events.filter((e) => e.type === 'error')).toEqual([])
    expect(h.scheduler.currentState).toBe('finished')
  })

  it("says that the computer's clock is off when the request is stale, and keeps trying", async () => {
    const h = harness([refusal(401, 'stale_lease_request', 'issuedAt is 7 minutes off'), finished])
    h.scheduler.start()
    await h.ended()
    const errors = h.events.filter((e) => e.type === 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0]!.type === 'error' && errors[0]!.message).toMatch(/clock .* off/)
    expect(h.scheduler.currentState).toBe('finished')
  })
})

/**
 * A scheduler against a fake coordinator that leases units of round 0 one after another, records
 * releases and submissions, and an executor whose units finish only when the test says so.
 */
function unitHarness(options: { restAfterUnit?: (computeMs: number) => number } = {}) {
  const account = privateKeyToAccount(generatePrivateKey())
  const events: SchedulerEvent[] = []
  const sleeps: number[] = []
  const released: string[] = []
  const submitted: string[] = []
  const signals: AbortSignal[] = []
  let leases = 0
  const pending: Array<() => void> = []
  const fetchImpl = (async (url: string | URL, init?: RequestInit) => {
    const path = new URL(String(url)).pathname
    const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
    if (path === '/api/info') return json(200, info)
    if (path === `/api/jobs/${jobId}`) return json(200, { id: jobId, spec: {} })
    if (path === `/api/jobs/${jobId}/leases`) {
      const unit = leases++
      return json(200, { status: 'leased', lease: { id: `lease-${unit}`, contributor: account.address, expiresAt: Date.now() + 60_000, unit: { jobId, round: 0, unit, inputHash: jobId } } })
    }
    const release = /^\/api\/leases\/(.+)\/release$/.exec(path)
    if (release) {
      released.push(release[1]!)
      return json(200, { released: true, round: 0, unit: Number(release[1]!.split('-')[1]) })
    }
    const submission = /^\/api\/leases\/(.+)\/submission$/.exec(path)
    if (submission) {
      submitted.push(submission[1]!)
      return json(200, { accepted: true, round: 0, unit: 0, roundClosed: false })
    }
    return json(404, { error: 'not found', code: 'not_found', message: path })
  }) as typeof fetch
  let clock = 0
  const scheduler = new Scheduler({
    client: new CoordinatorClient('http://coordinator.test', fetchImpl),
    executor: {
      runUnit: (_spec, unit, signal) => {
        if (signal) signals.push(signal)
        return new Promise((resolve) => {
          pending.push(() => {
            clock += 300
            resolve({ unit, outputHash: jobId, updateBytes: new Uint8Array(4), examples: 64, losses: [1], meanLoss: 1, timings: { fetchMs: 0, trainMs: 300, hashMs: 0 } })
          })
        })
      },
    },
    signer: account,
    deviceClass: 'test',
    jobId,
    now: () => clock,
    onEvent: (event) => events.push(event),
    restAfterUnit: options.restAfterUnit,
    sleep: (ms) =>
      new Promise((resolve) => {
        sleeps.push(ms)
        setTimeout(resolve, 5)
      }),
  })
  const until = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      const poll = () => (done() ? resolve() : setTimeout(poll, 2))
      poll()
    })
  return { scheduler, events, sleeps, released, submitted, signals, pending, until }
}

describe('Scheduler stop and duty cycle', () => {
  it('hands the unit in flight back at once on stop, without waiting for it to finish', async () => {
    const h = unitHarness()
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    await h.scheduler.stop()
    expect(h.scheduler.currentState).toBe('idle')
    expect(h.released).toEqual(['lease-0'])
    expect(h.submitted).toEqual([])
    expect(h.signals[0]!.aborted).toBe(true)
    expect(h.events).toContainEqual({ type: 'released', round: 0, unit: 0, handedBack: true })
    // The unit finishing afterwards changes nothing: it is neither signed nor submitted.
    h.pending[0]!()
    await new Promise((r) => setTimeout(r, 20))
    expect(h.submitted).toEqual([])
  })

  it('rests t·(1−d)/d after each unit and reports the examples and compute time', async () => {
    const h = unitHarness({ restAfterUnit: (ms) => ms * 3 })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.events.some((e) => e.type === 'resting'))
    await h.until(() => h.pending.length === 2)
    await h.scheduler.stop()
    const accepted = h.events.find((e) => e.type === 'unit-accepted')
    expect(accepted?.type === 'unit-accepted' && accepted.report).toMatchObject({ examples: 64, computeMs: 300 })
    expect(h.events).toContainEqual({ type: 'resting', ms: 900 })
    expect(h.sleeps).toContain(900)
    expect(h.submitted).toEqual(['lease-0'])
    expect(h.released).toEqual(['lease-1'])
  })
})
