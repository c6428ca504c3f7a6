import type { Address } from 'viem'
import { CoordinatorRequestError, CoordinatorUnreachableError, type CoordinatorClient } from '../client/coordinatorClient.ts'
import {
  LEASE_REQUEST_MAX_SKEW_MS,
  isAsynchronous,
  maxStaleness,
  signLeaseRequest,
  signWorkClaim,
  unitInnerSteps,
  type CoordinatorInfo,
  type Hash,
  type JobSpec,
  type Lease,
  type LeaseRequestSigner,
  type LeaseResponse,
  type SignedClaim,
  type TypedDataSigner,
  type WorkUnit,
} from '../protocol/index.ts'
import type { UnitOutput } from './unitRunner.ts'
import { DEFAULT_TARGET_UNIT_MS, UnitSizer } from './unitSizing.ts'

/**
 * Runs one unit somewhere: a comlink proxy to the Worker in a page, the runner itself in Node. `signal`
 * aborts when the loop stops or pauses mid-unit: an executor that can cut the computation short should
 * (the page terminates its Worker); the loop does not wait for it either way.
 */
export interface UnitExecutor {
  runUnit(spec: JobSpec, unit: WorkUnit, signal?: AbortSignal): Promise<UnitOutput>
  /**
   * Fetches what `unit` will need (its checkpoint, the job's shards) while another unit computes, so that
   * it starts at once. Best effort: a failure here is met again, and reported, when the unit runs.
   */
  prefetch?(spec: JobSpec, unit: WorkUnit): Promise<void>
}

export interface UnitReport {
  round: number
  unit: number
  outputHash: Hash
  meanLoss: number
  losses: number[]
  /** Training examples the unit went through, and the executor's wall time for it (fetch, train, hash). */
  examples: number
  computeMs: number
  /** H of the unit (the job's, or the one this tab asked for and was given). */
  innerSteps: number
  /**
   * How long the device sat idle between the previous unit's computation and this one's, duty-cycle rests
   * left out; null for the first unit of a run. With the next unit prefetched it is the scheduler's own time.
   */
  idleBeforeMs: number | null
  /** Times the GPU device was lost during the unit, re-created and the unit redone (0 almost always). */
  deviceLosses: number
  roundClosed: boolean
  /** Wall time split of the unit, in ms, as the page saw it. */
  timings: { fetchMs: number; trainMs: number; hashMs: number; signMs: number; uploadMs: number; totalMs: number }
}

export type SchedulerState = 'idle' | 'running' | 'stopping' | 'finished'

export type SchedulerEvent =
  | { type: 'state'; state: SchedulerState }
  /** `prefetched`: leased while another unit computes, to start as soon as that one is done. */
  | { type: 'leased'; lease: Lease; prefetched?: boolean }
  | { type: 'unit-accepted'; report: UnitReport }
  | { type: 'unit-refused'; round: number; unit: number; code: string; message: string }
  | { type: 'waiting'; reason: string; retryAfterMs: number }
  /** The duty cycle's rest after a unit (`restAfterUnit`); only a stop cuts it short. */
  | { type: 'resting'; ms: number }
  /**
   * The loop stopped with a unit in flight (or prefetched) and handed its lease back, so the unit is
   * leasable again at once; `handedBack` is false when the coordinator could not be told (the lease then
   * runs out by itself). `reason`: a prefetched unit dropped before it ran (its round moved on, its lease
   * would run out first).
   */
  | { type: 'released'; round: number; unit: number; handedBack: boolean; message?: string; reason?: string }
  | { type: 'error'; message: string; retryAfterMs: number }
  /**
   * The loop gave up: retrying cannot help. Either this build lacks the job's kernel bundle, or the
   * coordinator refuses the address (`code`: `address_banned`, or `stake_required` until it stakes).
   */
  | { type: 'stopped'; reason: string; code?: string }

/**
 * Signs both claims and lease requests: a viem local account, or a wallet client bound to its account
 * (whose `signTypedData` takes any typed data).
 */
export type ContributorSigner = TypedDataSigner & LeaseRequestSigner

export interface SchedulerOptions {
  client: CoordinatorClient
  executor: UnitExecutor
  signer: ContributorSigner
  /** Claimed when the executor does not say which class a unit ran under. */
  deviceClass: string
  jobId: Hash
  /**
   * The site whose embedded widget runs this loop: named in every signed lease request, so the unit's pay is
   * shared with it (REFERRER_SHARE_BPS). Only the widget sets it, after its consent text said so.
   */
  referrer?: Address | null
  onEvent?: (event: SchedulerEvent) => void
  /**
   * How long to rest after a unit whose computation took `computeMs`: the page's duty cycle (a share d of
   * the time computing rests t·(1−d)/d). None by default.
   */
  restAfterUnit?: (computeMs: number) => number
  /**
   * Lease the next unit while one computes and fetch its checkpoint, so the device does not wait for a
   * round trip between units (the address may hold `maxLiveLeases` ≥ 2 leases). On by default; a tab that
   * rests between units (duty cycle) does not hold a second lease through its rest.
   */
  prefetch?: boolean
  /** Wall time a unit should take in jobs that let the contributor choose H (`maxInnerSteps`); 30 s by default. */
  targetUnitMs?: number
  sleep?: (ms: number) => Promise<void>
  now?: () => number
}

/**
 * Errors no retry can fix: the job names kernels this build does not have (config.ts), or that this
 * process's backend cannot run (nodeContributor.ts), so every unit of it would fail the same way. The loop
 * stops instead of leasing units only to let their leases run out.
 */
const UNRECOVERABLE_ERRORS = new Set(['UnsupportedKernelBundleError', 'KernelBundleBackendError', 'BatchTooLargeError'])

/** Back-off after failures: start small so a restarting coordinator is picked up quickly. */
const FIRST_BACKOFF_MS = 500
const MAX_BACKOFF_MS = 15_000

/**
 * Lease refusals that asking again cannot change: only a person can stake the job's minimum
 * (`stake_required`) or use another wallet (`address_banned`), and a cancelled job never issues units again
 * (`job_cancelled`).
 */
const STOPPING_REFUSALS = new Set(['address_banned', 'stake_required', 'job_cancelled'])

/** How long to wait when the address already holds as many live leases as a job allows (another tab's). */
export const TOO_MANY_LEASES_WAIT_MS = 5_000

/** How often a tab asks again while the job's owner has paused it: a resume is picked up within this. */
export const JOB_PAUSED_WAIT_MS = 15_000

/**
 * How long before the current unit is expected to finish an asynchronous job's next unit is leased: long
 * enough for the lease and the checkpoint download (a few hundred ms on a local coordinator, seconds on a
 * slow link), short enough that the prefetched unit starts from a recent checkpoint. A unit leased at the
 * start of the one before it is a whole round stale when it runs, and averaging updates that all lag one
 * round behaves like a doubled outer step: held-out accuracy swung between 49% and 94% with 4 contributors in
 * bench/network.ts (H = 100) before this.
 */
export function prefetchDelayMs(lastComputeMs: number): number {
  const lead = Math.min(3_000, Math.max(300, 0.15 * lastComputeMs))
  return Math.max(0, lastComputeMs - lead)
}

/** The loop ends with a 'stopped' event carrying this reason. */
class LoopStop extends Error {
  override name = 'LoopStop'
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message)
  }
}

/** The loop was stopped while a unit was in flight: the unit is dropped and its lease handed back. */
class UnitAborted extends Error {
  override name = 'UnitAborted'
}

/** Settles with `work`, or rejects with UnitAborted as soon as `signal` aborts, whichever comes first. */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new UnitAborted())
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new UnitAborted())
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      },
    )
  })
}

/** A lease held for the next unit, and when (on this clock) it arrived. */
interface Held {
  lease: Lease
  since: number
}

/** The coordinator refused a lease request as stale: this machine's clock is off. Retried, it may be set right. */
class ClockSkewError extends Error {
  override name = 'ClockSkewError'
}

/**
 * The contributor's pull loop: lease a unit, run it, sign the claim over its hashes, submit, repeat.
 * A refused submission (stale round, expired lease) is reported and the loop moves on; an unreachable
 * coordinator is retried with back-off, so a tab survives a coordinator restart.
 *
 * The device is kept busy: while a unit computes, the next one is leased and its checkpoint fetched, and a
 * finished unit's submission is uploaded while the next one computes. In jobs with `maxInnerSteps` the loop
 * asks (in its signed lease request) for the H that makes a unit take `targetUnitMs` on this device.
 */
export class Scheduler {
  private state: SchedulerState = 'idle'
  private loop: Promise<void> | null = null
  private readonly specs = new Map<Hash, JobSpec>()
  private info: CoordinatorInfo | null = null
  private readonly sleep: (ms: number) => Promise<void>
  private readonly now: () => number
  private wake: (() => void) | null = null
  /** Ends the wait before an asynchronous job's prefetch (prefetchDelayMs) at once, on stop. */
  private wakePrefetch: (() => void) | null = null
  /** Aborts the unit in flight, if any: stop() hands it back at once instead of finishing it. */
  private inFlight: AbortController | null = null
  private lease: Lease | null = null
  /** A duty-cycle rest is under way: a nudge (new round) must not cut it short, only a stop. */
  private resting = false
  /** The next unit, leased while the current one computes: the request on its way, then the lease held. */
  private next: Promise<Held | null> | null = null
  private nextLease: Lease | null = null
  /** Submissions on their way while later units compute. */
  private readonly uploads = new Set<Promise<void>>()
  /** A background submission that failed beyond its retries: the loop reports it as it did a failed submit. */
  private uploadFailure: unknown = null
  /** The newest round a submission was told had closed: a prefetched unit older than the staleness window is dropped. */
  private closedRound = -1
  private readonly sizer: UnitSizer
  /** When the previous unit's computation ended, and the rest taken since, for `idleBeforeMs`. */
  private lastComputeEnd: number | null = null
  private restedMs = 0
  private lastComputeMs = 0
  /** Units this run has computed: the next unit is leased ahead only once this device has run one of the job. */
  private computed = 0

  constructor(private readonly options: SchedulerOptions) {
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    }))
    this.now = options.now ?? (() => performance.now())
    this.sizer = new UnitSizer(options.targetUnitMs ?? DEFAULT_TARGET_UNIT_MS)
  }

  get currentState(): SchedulerState {
    return this.state
  }

  get address(): Address {
    return this.options.signer.address
  }

  /** The lease of the unit in flight, if any: a page that is closed hands it back with a beacon. */
  get leaseInFlight(): Lease | null {
    return this.lease
  }

  /** Every lease this loop holds: the unit in flight and the prefetched next one (a closed page hands both back). */
  get leasesHeld(): Lease[] {
    return [this.lease, this.nextLease].filter((l): l is Lease => l !== null)
  }

  /** The H this loop asks for in `spec`'s job now (null: the job's own), from the step time it measured. */
  innerStepsFor(spec: JobSpec): number | null {
    return this.sizer.innerStepsFor(spec.training)
  }

  start(): void {
    if (this.state === 'running') return
    this.setState('running')
    this.loop ??= this.run().finally(() => {
      this.loop = null
      if (this.state !== 'finished') this.setState('idle')
    })
  }

  /** Cuts a wait short, e.g. when the page hears that a new round opened. */
  nudge(): void {
    if (!this.resting) this.wake?.()
  }

  /**
   * Stops at once: a unit in flight is dropped and its lease handed back to the coordinator (a 'released'
   * event), so someone else can take it now rather than when the lease runs out; so is a prefetched one.
   * Submissions already on their way are finished. Resolves when the loop has ended. A pause is a stop
   * followed, later, by start().
   */
  async stop(): Promise<void> {
    if (this.state === 'running') this.setState('stopping')
    this.inFlight?.abort()
    this.wake?.()
    this.wakePrefetch?.()
    await this.loop
  }

  private setState(state: SchedulerState) {
    this.state = state
    this.emit({ type: 'state', state })
  }

  private emit(event: SchedulerEvent) {
    this.options.onEvent?.(event)
  }

  private async run(): Promise<void> {
    let finished = false
    try {
      finished = await this.loopUntilDone()
    } finally {
      // Whatever ended the loop, the prefetched unit goes back and the submissions on their way land.
      await this.releaseNext()
      while (this.uploads.size > 0) await Promise.allSettled([...this.uploads])
      this.uploadFailure = null
      this.lastComputeEnd = null
      this.computed = 0
    }
    if (finished) this.setState('finished')
  }

  /** The loop proper; true when the job has finished. */
  private async loopUntilDone(): Promise<boolean> {
    let backoff = FIRST_BACKOFF_MS
    while (this.state === 'running') {
      try {
        const finished = await this.step()
        if (finished) return true
        backoff = FIRST_BACKOFF_MS
      } catch (error) {
        if (error instanceof LoopStop) {
          this.emit({ type: 'stopped', reason: error.message, ...(error.code ? { code: error.code } : {}) })
          return false
        }
        // Stopped meanwhile (a submission given up on, a unit handed back after a failure): no retry to wait for.
        if (this.state !== 'running') return false
        const message = error instanceof ClockSkewError ? error.message : error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        // Comlink rebuilds a Worker's error as a plain Error with the original name, so match on the name.
        if (error instanceof Error && UNRECOVERABLE_ERRORS.has(error.name)) {
          this.emit({ type: 'stopped', reason: message })
          return false
        }
        this.emit({ type: 'error', message, retryAfterMs: backoff })
        await this.sleep(backoff)
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
      }
    }
    return false
  }

  /**
   * A finished unit is worth keeping: while the coordinator is unreachable (restarting, network gone)
   * the same signed submission is retried until its lease runs out, instead of being dropped.
   */
  private async submitUntilLeaseEnds<T>(lease: Lease, submit: () => Promise<T>): Promise<T> {
    let backoff = FIRST_BACKOFF_MS
    for (;;) {
      try {
        return await submit()
      } catch (error) {
        const transient =
          error instanceof CoordinatorUnreachableError || (error instanceof CoordinatorRequestError && (error.status >= 500 || error.code === 'rate_limited'))
        // A rate limit says when to come back (Retry-After); anything else backs off.
        const wait = error instanceof CoordinatorRequestError && error.retryAfterMs !== null ? Math.max(error.retryAfterMs, backoff) : backoff
        if (!transient || Date.now() + wait >= lease.expiresAt || this.state !== 'running') throw error
        this.emit({ type: 'error', message: `${(error as Error).name}: ${(error as Error).message}; resubmitting`, retryAfterMs: wait })
        await this.sleep(wait)
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
      }
    }
  }

  /**
   * Asks for a unit with a freshly signed lease request (a new nonce and time every time, so a retry is
   * never a replay). Null when the address holds as many live leases as the job allows: waited out here.
   */
  private async requestLease(info: CoordinatorInfo): Promise<LeaseResponse | null> {
    const { client, jobId } = this.options
    const signed = await this.signedLeaseRequest(info)
    try {
      return await client.lease(jobId, signed)
    } catch (error) {
      if (!(error instanceof CoordinatorRequestError)) throw error
      if (STOPPING_REFUSALS.has(error.code)) throw new LoopStop(error.message, error.code)
      if (error.code === 'too_many_leases') {
        this.emit({ type: 'waiting', reason: error.message, retryAfterMs: TOO_MANY_LEASES_WAIT_MS })
        await this.sleep(TOO_MANY_LEASES_WAIT_MS)
        return null
      }
      if (error.code === 'rate_limited') {
        // Too many requests from this address or network: ask again when the coordinator says.
        const wait = error.retryAfterMs ?? TOO_MANY_LEASES_WAIT_MS
        this.emit({ type: 'waiting', reason: error.message, retryAfterMs: wait })
        await this.sleep(wait)
        return null
      }
      if (error.code === 'job_paused') {
        this.emit({ type: 'waiting', reason: error.message, retryAfterMs: JOB_PAUSED_WAIT_MS })
        await this.sleep(JOB_PAUSED_WAIT_MS)
        return null
      }
      if (error.code === 'stale_lease_request') {
        const minutes = LEASE_REQUEST_MAX_SKEW_MS / 60_000
        throw new ClockSkewError(
          `The coordinator refused the lease request as stale: this computer's clock (${new Date(signed.request.issuedAt).toISOString()}) is more than ${minutes} minutes off the coordinator's. Set the clock right (automatic time); the tab keeps trying.`,
        )
      }
      throw error
    }
  }

  /** A lease request for this job, asking for the H that fills the target unit time once the job and the device are known. */
  private signedLeaseRequest(info: CoordinatorInfo) {
    const { signer, jobId } = this.options
    const spec = this.specs.get(jobId)
    const innerSteps = spec ? this.sizer.innerStepsFor(spec.training) : null
    return signLeaseRequest(signer, { jobId, audience: info.coordinatorId, domain: info, referrer: this.options.referrer, innerSteps })
  }

  /** One lease-run-submit cycle; true when the job has finished. */
  private async step(): Promise<boolean> {
    const { client } = this.options
    const info = (this.info ??= await client.info())
    if (this.uploadFailure !== null) {
      const failure = this.uploadFailure
      this.uploadFailure = null
      throw failure
    }
    let lease = await this.takeNext()
    if (!lease) {
      const response = await this.requestLease(info)
      if (response === null) return false
      if (response.status === 'finished') return true
      if (response.status === 'wait') {
        this.emit({ type: 'waiting', reason: response.reason, retryAfterMs: response.retryAfterMs })
        await this.sleep(response.retryAfterMs)
        return false
      }
      lease = response.lease
      this.emit({ type: 'leased', lease })
    }
    const abort = new AbortController()
    this.inFlight = abort
    this.lease = lease
    // Stopped while the lease request was on its way: the unit is handed back before any work.
    if (this.state !== 'running') abort.abort()
    let computeMs: number
    try {
      computeMs = await this.work(info, lease, abort.signal)
    } catch (error) {
      // Whatever ended the unit early (a stop, a failed computation), its unit should not wait out the
      // lease time: hand it back now. A refusal by the coordinator never gets here (work() reports it).
      await this.release(lease)
      if (error instanceof UnitAborted) return false
      throw error
    } finally {
      this.inFlight = null
      this.lease = null
    }
    await this.rest(computeMs)
    return false
  }

  /** Tells the coordinator that `lease` is handed back; never throws (the lease runs out by itself otherwise). */
  private async release(lease: Lease, reason?: string): Promise<void> {
    const { round, unit } = lease.unit
    try {
      await this.options.client.releaseLease(lease.id)
      this.emit({ type: 'released', round, unit, handedBack: true, ...(reason ? { reason } : {}) })
    } catch (error) {
      // A dropped prefetch whose lease is already dead (its round closed) has nothing to hand back: no news.
      if (reason) return
      this.emit({ type: 'released', round, unit, handedBack: false, message: error instanceof Error ? error.message : String(error) })
    }
  }

  /**
   * Leases the next unit while `spec`'s current one computes, and has the executor fetch its checkpoint.
   * Quietly nothing when no unit is to be had now (a wait, a refusal, a network error): the loop asks in
   * the ordinary way, with its waits and reports, once the current unit is done.
   */
  private startPrefetch(info: CoordinatorInfo, spec: JobSpec): void {
    if (this.next || this.options.prefetch === false || this.state !== 'running') return
    // Not before the device has run a unit of the job: one it cannot run (a kernel bundle this build lacks,
    // a batch too large) stops the loop after its first unit, and should not hold a second lease meanwhile.
    if (this.computed === 0) return
    // A tab that rests between units has idle time anyway: it does not hold a second lease through the rest.
    if ((this.options.restAfterUnit?.(1) ?? 0) > 0) return
    const landing = [...this.uploads]
    this.next = (async (): Promise<Held | null> => {
      // A submission on its way still holds its lease, which counts against the address's live leases
      // (maxLiveLeases, 2 by default): ask once it has landed, or the request is refused as too many.
      await Promise.allSettled(landing)
      if (this.state !== 'running') return null
      const delay = isAsynchronous(spec.training) ? prefetchDelayMs(this.lastComputeMs) : 0
      if (delay > 0) {
        // Its own timer, not this.sleep's: a backoff of a background upload may be sleeping at the same time.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay)
          this.wakePrefetch = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        this.wakePrefetch = null
        if (this.state !== 'running') return null
      }
      let response: LeaseResponse
      try {
        response = await this.options.client.lease(this.options.jobId, await this.signedLeaseRequest(info))
      } catch {
        return null
      }
      if (response.status !== 'leased') return null
      const held: Held = { lease: response.lease, since: this.now() }
      this.nextLease = held.lease
      this.emit({ type: 'leased', lease: held.lease, prefetched: true })
      if (this.state === 'running') void this.options.executor.prefetch?.(spec, held.lease.unit).catch(() => {})
      return held
    })()
  }

  /** The prefetched lease, when there is one still worth running; a stale one is handed back. */
  private async takeNext(): Promise<Lease | null> {
    const pending = this.next
    if (!pending) return null
    const held = await pending
    this.next = null
    this.nextLease = null
    if (!held) return null
    const spec = this.specs.get(this.options.jobId)
    const reason = spec ? this.staleReason(held, spec) : null
    if (reason) {
      await this.release(held.lease, reason)
      return null
    }
    return held.lease
  }

  /**
   * Why a prefetched unit is not worth running any more, or null. Its round closed beyond what the job
   * accepts (synchronous rounds: the round itself; asynchronous: `maxStaleness` rounds), so its answer would
   * be refused as stale; or its lease would run out before a unit of the last one's length could finish
   * (measured on this clock from when it arrived, as the coordinator's clock may differ from this one).
   */
  private staleReason(held: Held, spec: JobSpec): string | null {
    const { round } = held.lease.unit
    if (round + maxStaleness(spec.training) <= this.closedRound) {
      return `round ${this.closedRound} closed after it was leased, so its answer would be refused as stale`
    }
    const ttlMs = spec.training.leaseTtlSeconds * 1000
    if (this.now() - held.since + this.lastComputeMs >= ttlMs) return 'its lease would run out before the unit could finish'
    return null
  }

  /** Hands the prefetched lease back (a stop, a pause, the end of the job), once its request has landed. */
  private async releaseNext(): Promise<void> {
    const pending = this.next
    this.next = null
    const held = pending ? await pending : null
    this.nextLease = null
    if (held) await this.release(held.lease)
  }

  /** Runs, signs and submits one leased unit; its compute time (the executor's) once answered or refused. */
  private async work(info: CoordinatorInfo, lease: Lease, signal: AbortSignal): Promise<number> {
    const { client, executor, signer, jobId } = this.options
    if (signal.aborted) throw new UnitAborted()
    let spec = this.specs.get(jobId)
    if (!spec) {
      spec = (await unlessAborted(client.job(jobId), signal)).spec
      this.specs.set(jobId, spec)
    }
    const t0 = this.now()
    const idleBeforeMs = this.lastComputeEnd === null ? null : Math.max(0, t0 - this.lastComputeEnd - this.restedMs)
    this.startPrefetch(info, spec)
    const output = await unlessAborted(executor.runUnit(spec, lease.unit, signal), signal)
    const t1 = this.now()
    this.computed++
    const innerSteps = unitInnerSteps(lease.unit, spec.training)
    this.sizer.observe({ innerSteps, trainMs: output.timings.trainMs, computeMs: t1 - t0 })
    this.lastComputeEnd = t1
    this.lastComputeMs = t1 - t0
    this.restedMs = 0
    // A wallet may ask its holder to confirm the signature; a stop meanwhile hands the unit back too.
    const signed = await unlessAborted(signWorkClaim(
      signer,
      {
        jobId: lease.unit.jobId,
        round: lease.unit.round,
        unit: lease.unit.unit,
        inputHash: lease.unit.inputHash,
        outputHash: output.outputHash,
        contributor: signer.address,
        deviceClass: output.deviceClass ?? this.options.deviceClass,
      },
      info,
    ), signal)
    const t2 = this.now()
    // The upload runs while the next unit computes; the loop ends only once it has landed.
    const upload = this.submit(lease, signed, output, { t0, t1, t2, innerSteps, idleBeforeMs })
    this.uploads.add(upload)
    void upload.finally(() => this.uploads.delete(upload))
    return t1 - t0
  }

  /**
   * Submits a signed unit and reports the answer. The coordinator saying no (the round moved on, the lease
   * ran out) is a 'unit-refused'; a failure beyond the retries hands the lease back and is reported by the
   * loop as an error with its back-off, as when submissions were made in line.
   */
  private async submit(
    lease: Lease,
    signed: SignedClaim,
    output: UnitOutput,
    t: { t0: number; t1: number; t2: number; innerSteps: number; idleBeforeMs: number | null },
  ): Promise<void> {
    try {
      const result = await this.submitUntilLeaseEnds(lease, () => this.options.client.submit(lease.id, signed, output.updateBytes, output.meanLoss))
      const t3 = this.now()
      if (result.roundClosed) this.closedRound = Math.max(this.closedRound, result.round)
      this.emit({
        type: 'unit-accepted',
        report: {
          round: lease.unit.round,
          unit: lease.unit.unit,
          outputHash: output.outputHash,
          meanLoss: output.meanLoss,
          losses: output.losses,
          examples: output.examples,
          computeMs: t.t1 - t.t0,
          innerSteps: t.innerSteps,
          idleBeforeMs: t.idleBeforeMs,
          deviceLosses: output.deviceLosses ?? 0,
          roundClosed: result.roundClosed,
          timings: { ...output.timings, signMs: t.t2 - t.t1, uploadMs: t3 - t.t2, totalMs: t3 - t.t0 },
        },
      })
    } catch (error) {
      if (error instanceof CoordinatorRequestError && error.status < 500) {
        if (error.code === 'stale_round') this.closedRound = Math.max(this.closedRound, lease.unit.round)
        this.emit({ type: 'unit-refused', round: lease.unit.round, unit: lease.unit.unit, code: error.code, message: error.message })
        return
      }
      await this.release(lease)
      this.uploadFailure ??= error
    }
  }

  /** The duty cycle: after a unit that computed for `computeMs`, rest as long as `restAfterUnit` says. */
  private async rest(computeMs: number): Promise<void> {
    const ms = this.options.restAfterUnit?.(computeMs) ?? 0
    if (!(ms > 0) || this.state !== 'running') return
    this.emit({ type: 'resting', ms })
    this.resting = true
    const start = this.now()
    try {
      await this.sleep(ms)
    } finally {
      this.resting = false
      this.restedMs += this.now() - start
    }
  }
}
