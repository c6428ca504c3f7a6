import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { recoverLeaseRequestSigner, type CoordinatorInfo, type Hash, type SignedLeaseRequest } from '../protocol/index.ts'
import { JOB_PAUSED_WAIT_MS, prefetchDelayMs, Scheduler, TOO_MANY_LEASES_WAIT_MS, type SchedulerEvent } from './scheduler.ts'

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
 * A scheduler against a fake coordinator that leases units one after another (of round `roundOf(unit)`,
 * round 0 by default), records lease requests, releases and submissions, and an executor whose units
 * finish only when the test says so, each taking `trainMs` on the scheduler's clock.
 */
function unitHarness(
  options: {
    restAfterUnit?: (computeMs: number) => number
    prefetch?: boolean
    training?: Record<string, unknown>
    trainMs?: number
    roundOf?: (unit: number) => number
    /** The coordinator's answer to the submission of lease-N; accepted without closing the round by default. */
    answer?: (unit: number) => Answer | Promise<Answer>
    leaseTtlMs?: (unit: number) => number
  } = {},
) {
  const account = privateKeyToAccount(generatePrivateKey())
  const events: SchedulerEvent[] = []
  const sleeps: number[] = []
  const released: string[] = []
  const submitted: string[] = []
  const signals: AbortSignal[] = []
  const requests: SignedLeaseRequest[] = []
  const prefetched: number[] = []
  const started: number[] = []
  let leases = 0
  const pending: Array<() => void> = []
  const training = { innerSteps: 10, batchSize: 32, leaseTtlSeconds: 60, ...options.training }
  const roundOf = options.roundOf ?? (() => 0)
  const fetchImpl = (async (url: string | URL, init?: RequestInit) => {
    const path = new URL(String(url)).pathname
    const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
    if (path === '/api/info') return json(200, info)
    if (path === `/api/jobs/${jobId}`) return json(200, { id: jobId, spec: { training } })
    if (path === `/api/jobs/${jobId}/leases`) {
      const signed = JSON.parse(String(init!.body)) as SignedLeaseRequest
      requests.push(signed)
      const unit = leases++
      const innerSteps = signed.request.innerSteps ? { innerSteps: signed.request.innerSteps } : {}
      return json(200, {
        status: 'leased',
        lease: { id: `lease-${unit}`, contributor: account.address, expiresAt: Date.now() + (options.leaseTtlMs?.(unit) ?? 60_000), unit: { jobId, round: roundOf(unit), unit, inputHash: jobId, ...innerSteps } },
      })
    }
    const release = /^\/api\/leases\/(.+)\/release$/.exec(path)
    if (release) {
      released.push(release[1]!)
      return json(200, { released: true, round: 0, unit: Number(release[1]!.split('-')[1]) })
    }
    const submission = /^\/api\/leases\/(.+)\/submission$/.exec(path)
    if (submission) {
      submitted.push(submission[1]!)
      const unit = Number(submission[1]!.split('-')[1])
      const answer = (await options.answer?.(unit)) ?? { status: 200, body: { accepted: true, round: roundOf(unit), unit, roundClosed: false } }
      return json(answer.status, answer.body)
    }
    return json(404, { error: 'not found', code: 'not_found', message: path })
  }) as typeof fetch
  let clock = 0
  const trainMs = options.trainMs ?? 300
  const scheduler = new Scheduler({
    client: new CoordinatorClient('http://coordinator.test', fetchImpl),
    executor: {
      runUnit: (_spec, unit, signal) => {
        if (signal) signals.push(signal)
        started.push(unit.unit)
        return new Promise((resolve) => {
          pending.push(() => {
            clock += trainMs
            resolve({ unit, outputHash: jobId, updateBytes: new Uint8Array(4), examples: 64, losses: [1], meanLoss: 1, timings: { fetchMs: 0, trainMs, hashMs: 0 } })
          })
        })
      },
      prefetch: async (_spec, unit) => {
        prefetched.push(unit.unit)
      },
    },
    signer: account,
    deviceClass: 'test',
    jobId,
    now: () => clock,
    onEvent: (event) => events.push(event),
    restAfterUnit: options.restAfterUnit,
    prefetch: options.prefetch,
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
  const tick = (ms = 0) => {
    clock += ms
  }
  return { scheduler, events, sleeps, released, submitted, signals, pending, until, requests, prefetched, started, tick, leaseCount: () => leases }
}

describe('Scheduler stop and duty cycle', () => {
  it('hands the unit in flight back at once on stop, without waiting for it to finish', async () => {
    const h = unitHarness({ prefetch: false })
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

describe('Scheduler overlap: the next unit is leased and fetched while one computes', () => {
  it('leases and prefetches the next unit during a unit and starts it without a lease round trip', async () => {
    const h = unitHarness()
    h.scheduler.start()
    // Nothing is leased ahead during the first unit: the device has yet to show that it runs the job.
    await h.until(() => h.pending.length === 1)
    await new Promise((r) => setTimeout(r, 20))
    expect(h.leaseCount()).toBe(1)
    h.pending[0]!()
    await h.until(() => h.prefetched.length === 1)
    expect(h.started).toEqual([0, 1])
    expect(h.prefetched).toEqual([2])
    expect(h.events.filter((e) => e.type === 'leased').map((e) => e.type === 'leased' && [e.lease.id, e.prefetched ?? false])).toEqual([
      ['lease-0', false],
      ['lease-1', false],
      ['lease-2', true],
    ])
    expect(h.scheduler.leasesHeld.map((l) => l.id)).toEqual(['lease-1', 'lease-2'])
    h.pending[1]!()
    // Unit 2 starts on the lease already held; the lease asked for meanwhile is the one after it.
    await h.until(() => h.started.length === 3 && h.prefetched.length === 2)
    expect(h.started).toEqual([0, 1, 2])
    expect(h.leaseCount()).toBe(4)
    await h.until(() => h.events.filter((e) => e.type === 'unit-accepted').length === 2)
    const [first, second] = h.events.flatMap((e) => (e.type === 'unit-accepted' ? [e.report] : []))
    expect(first!.idleBeforeMs).toBeNull()
    // The device waited for nothing between units 1 and 2: no round trip sat between them.
    expect(second!.idleBeforeMs).toBe(0)
    await h.scheduler.stop()
  })

  it('uploads a finished unit in the background while the next one computes', async () => {
    let answerFirst: (a: Answer) => void = () => {}
    const firstAnswer = new Promise<Answer>((resolve) => (answerFirst = resolve))
    const h = unitHarness({ answer: (unit) => (unit === 0 ? firstAnswer : undefined!) })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.submitted.length === 1)
    // Unit 1 computes while unit 0's submission is still waiting for its answer. Its lease still counts
    // against the address's live leases, so the unit after next is asked for only once it has landed.
    expect(h.events.some((e) => e.type === 'unit-accepted')).toBe(false)
    await new Promise((r) => setTimeout(r, 20))
    expect(h.leaseCount()).toBe(2)
    expect(h.scheduler.leasesHeld.map((l) => l.id)).toEqual(['lease-1'])
    answerFirst({ status: 200, body: { accepted: true, round: 0, unit: 0, roundClosed: false } })
    await h.until(() => h.events.some((e) => e.type === 'unit-accepted'))
    await h.until(() => h.leaseCount() === 3 && h.prefetched.length === 1)
    expect(h.started).toEqual([0, 1])
    await h.scheduler.stop()
  })

  it('on stop hands back both the unit in flight and the prefetched one', async () => {
    const h = unitHarness()
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.prefetched.length === 1)
    expect(h.scheduler.leasesHeld.map((l) => l.id)).toEqual(['lease-1', 'lease-2'])
    await h.scheduler.stop()
    expect(h.scheduler.currentState).toBe('idle')
    expect(h.released.sort()).toEqual(['lease-1', 'lease-2'])
    expect(h.events.filter((e) => e.type === 'released').map((e) => e.type === 'released' && [e.unit, e.handedBack]).sort()).toEqual([
      [1, true],
      [2, true],
    ])
    expect(h.submitted).toEqual(['lease-0'])
    expect(h.scheduler.leasesHeld).toEqual([])
  })

  it('on stop lets a submission on its way land before the loop ends', async () => {
    let answerFirst: (a: Answer) => void = () => {}
    const firstAnswer = new Promise<Answer>((resolve) => (answerFirst = resolve))
    const h = unitHarness({ answer: (unit) => (unit === 0 ? firstAnswer : undefined!) })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.submitted.length === 1)
    let ended = false
    const stopped = h.scheduler.stop().then(() => (ended = true))
    await h.until(() => h.released.length === 1)
    expect(h.released).toEqual(['lease-1'])
    await new Promise((r) => setTimeout(r, 20))
    expect(ended).toBe(false)
    answerFirst({ status: 200, body: { accepted: true, round: 0, unit: 0, roundClosed: false } })
    await stopped
    expect(h.scheduler.currentState).toBe('idle')
    expect(h.events.some((e) => e.type === 'unit-accepted' && e.report.unit === 0)).toBe(true)
    // Nothing was leased ahead once the loop was stopping.
    expect(h.leaseCount()).toBe(2)
  })

  it('drops a prefetched unit whose round closed under synchronous rounds, and leases a fresh one', async () => {
    // Units 0–2 are of round 0; unit 0's answer closes it. Unit 2, prefetched during unit 1, is then stale.
    const h = unitHarness({
      roundOf: (unit) => (unit <= 2 ? 0 : 1),
      answer: (unit) => ({ status: 200, body: { accepted: true, round: 0, unit, roundClosed: unit === 0 } }),
    })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.prefetched.length === 1 && h.events.some((e) => e.type === 'unit-accepted'))
    h.pending[1]!()
    await h.until(() => h.started.length === 3)
    expect(h.started).toEqual([0, 1, 3])
    expect(h.released).toEqual(['lease-2'])
    const dropped = h.events.find((e) => e.type === 'released')
    expect(dropped?.type === 'released' && dropped.reason).toMatch(/round 0 closed after it was leased/)
    await h.scheduler.stop()
  })

  it('keeps a prefetched unit of a closed round when asynchronous rounds still accept it', async () => {
    const h = unitHarness({
      training: { maxStaleness: 2 },
      roundOf: (unit) => (unit <= 2 ? 0 : 1),
      answer: (unit) => ({ status: 200, body: { accepted: true, round: 0, unit, roundClosed: unit === 0 } }),
    })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.prefetched.length === 1 && h.events.some((e) => e.type === 'unit-accepted'))
    h.pending[1]!()
    await h.until(() => h.started.length === 3)
    expect(h.started).toEqual([0, 1, 2])
    expect(h.released).toEqual([])
    await h.scheduler.stop()
  })

  it('drops a prefetched unit whose lease would run out before a unit of the last length could finish', async () => {
    // A unit takes 40 s on this clock and leases last 60 s: the one prefetched during it has 20 s left.
    const h = unitHarness({ trainMs: 40_000 })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.prefetched.length === 1)
    h.pending[1]!()
    await h.until(() => h.started.length === 3)
    expect(h.started).toEqual([0, 1, 3])
    expect(h.released[0]).toBe('lease-2')
    const dropped = h.events.find((e) => e.type === 'released')
    expect(dropped?.type === 'released' && dropped.reason).toMatch(/lease would run out/)
    await h.scheduler.stop()
  })

  it('does not hold a second lease through duty-cycle rests', async () => {
    const h = unitHarness({ restAfterUnit: (ms) => ms })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    await new Promise((r) => setTimeout(r, 20))
    expect(h.leaseCount()).toBe(1)
    expect(h.prefetched).toEqual([])
    await h.scheduler.stop()
  })

  it('reports a background upload that failed beyond its retries as an error and hands its lease back', async () => {
    // Lease 0 runs out before a retry could land: the 503 is final for it.
    const h = unitHarness({ leaseTtlMs: (unit) => (unit === 0 ? 100 : 60_000), answer: (unit) => (unit === 0 ? { status: 503, body: { error: 'x', code: 'unavailable', message: 'restarting' } } : undefined!) })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.released.includes('lease-0') && h.started.length === 2)
    // Reported, with the loop's back-off, between units: the unit computing meanwhile is not disturbed.
    h.pending[1]!()
    await h.until(() => h.events.some((e) => e.type === 'error'))
    const error = h.events.find((e) => e.type === 'error')
    expect(error?.type === 'error' && error).toMatchObject({ message: 'CoordinatorRequestError: restarting', retryAfterMs: 500 })
    expect(h.events.some((e) => e.type === 'released' && e.unit === 0 && e.handedBack)).toBe(true)
    await h.until(() => h.events.filter((e) => e.type === 'unit-accepted').length === 1)
    // The loop carries on with the units it had prefetched.
    await h.until(() => h.started.length === 3)
    expect(h.started).toEqual([0, 1, 2])
    await h.scheduler.stop()
  })
})

describe('Scheduler auto-sizing', () => {
  it('asks for the H that fills the target unit time once it has measured a unit, and reports the H run', async () => {
    // 3 s for the job's 10 steps: 300 ms a step, so a 30 s unit is 100 steps.
    const h = unitHarness({ training: { maxInnerSteps: 1000 }, trainMs: 3000 })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.requests.length === 3)
    // The first request knew nothing yet: the job's own H. The next ones fill 30 s.
    expect(h.requests.map((r) => r.request.innerSteps)).toEqual([undefined, 100, 100])
    expect(await recoverLeaseRequestSigner(h.requests[2]!, info)).toBe(h.requests[2]!.request.contributor)
    h.pending[1]!()
    await h.until(() => h.started.length === 3)
    await h.until(() => h.events.filter((e) => e.type === 'unit-accepted').length === 2)
    h.pending[2]!()
    await h.until(() => h.events.filter((e) => e.type === 'unit-accepted').length === 3)
    const reports = h.events.flatMap((e) => (e.type === 'unit-accepted' ? [e.report] : []))
    expect(reports.map((r) => [r.unit, r.innerSteps])).toEqual([
      [0, 10],
      [1, 100],
      [2, 100],
    ])
    await h.scheduler.stop()
  })

  it('never asks for an H in a job that fixes it', async () => {
    const h = unitHarness({ trainMs: 3000 })
    h.scheduler.start()
    await h.until(() => h.pending.length === 1)
    h.pending[0]!()
    await h.until(() => h.started.length === 2 && h.requests.length === 3)
    expect(h.requests.every((r) => r.request.innerSteps === undefined)).toBe(true)
    await h.scheduler.stop()
  })
})

describe('prefetchDelayMs', () => {
  it("leases an asynchronous job's next unit shortly before the current one ends, so it starts from a recent checkpoint", () => {
    // A 30 s unit: 3 s ahead (the cap). A 2 s unit: 15% ahead. A unit shorter than the 300 ms floor: at once.
    expect(prefetchDelayMs(30_000)).toBe(27_000)
    expect(prefetchDelayMs(2_000)).toBe(1_700)
    expect(prefetchDelayMs(200)).toBe(0)
    expect(prefetchDelayMs(0)).toBe(0)
  })
})
