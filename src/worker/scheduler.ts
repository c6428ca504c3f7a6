import type { Address } from 'viem'
import { CoordinatorRequestError, CoordinatorUnreachableError, type CoordinatorClient } from '../client/coordinatorClient.ts'
import {
  LEASE_REQUEST_MAX_SKEW_MS,
  signLeaseRequest,
  signWorkClaim,
  type CoordinatorInfo,
  type Hash,
  type JobSpec,
  type Lease,
  type LeaseRequestSigner,
  type LeaseResponse,
  type TypedDataSigner,
  type WorkUnit,
} from '../protocol/index.ts'
import type { UnitOutput } from './unitRunner.ts'

/**
 * Runs one unit somewhere: a comlink proxy to the Worker in a page, the runner itself in Node. `signal`
 * aborts when the loop stops or pauses mid-unit: an executor that can cut the computation short should
 * (the page terminates its Worker); the loop does not wait for it either way.
 */
export interface UnitExecutor {
  runUnit(spec: JobSpec, unit: WorkUnit, signal?: AbortSignal): Promise<UnitOutput>
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
  roundClosed: boolean
  /** Wall time split of the unit, in ms, as the page saw it. */
  timings: { fetchMs: number; trainMs: number; hashMs: number; signMs: number; uploadMs: number; totalMs: number }
}

export type SchedulerState = 'idle' | 'running' | 'stopping' | 'finished'

export type SchedulerEvent =
  | { type: 'state'; state: SchedulerState }
  | { type: 'leased'; lease: Lease }
  | { type: 'unit-accepted'; report: UnitReport }
  | { type: 'unit-refused'; round: number; unit: number; code: string; message: string }
  | { type: 'waiting'; reason: string; retryAfterMs: number }
  /** The duty cycle's rest after a unit (`restAfterUnit`); only a stop cuts it short. */
  | { type: 'resting'; ms: number }
  /**
   * The loop stopped with a unit in flight and handed its lease back, so the unit is leasable again at
   * once; `handedBack` is false when the coordinator could not be told (the lease then runs out by itself).
   */
  | { type: 'released'; round: number; unit: number; handedBack: boolean; message?: string }
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
  sleep?: (ms: number) => Promise<void>
  now?: () => number
}

/**
 * Errors no retry can fix: the job names kernels this build does not have (config.ts), or that this
 * process's backend cannot run (nodeContributor.ts), so every unit of it would fail the same way. The loop
 * stops instead of leasing units only to let their leases run out.
 */
const UNRECOVERABLE_ERRORS = new Set(['UnsupportedKernelBundleError', 'KernelBundleBackendError'])

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

/** The coordinator refused a lease request as stale: this machine's clock is off. Retried, it may be set right. */
class ClockSkewError extends Error {
  override name = 'ClockSkewError'
}

/**
 * The contributor's pull loop: lease a unit, run it, sign the claim over its hashes, submit, repeat.
 * A refused submission (stale round, expired lease) is reported and the loop moves on; an unreachable
 * coordinator is retried with back-off, so a tab survives a coordinator restart.
 */
export class Scheduler {
  private state: SchedulerState = 'idle'
  private loop: Promise<void> | null = null
  private readonly specs = new Map<Hash, JobSpec>()
  private info: CoordinatorInfo | null = null
  private readonly sleep: (ms: number) => Promise<void>
  private readonly now: () => number
  private wake: (() => void) | null = null
  /** Aborts the unit in flight, if any: stop() hands it back at once instead of finishing it. */
  private inFlight: AbortController | null = null
  private lease: Lease | null = null
  /** A duty-cycle rest is under way: a nudge (new round) must not cut it short, only a stop. */
  private resting = false

  constructor(private readonly options: SchedulerOptions) {
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    }))
    this.now = options.now ?? (() => performance.now())
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
   * event), so someone else can take it now rather than when the lease runs out. Resolves when the loop
   * has ended. A pause is a stop followed, later, by start().
   */
  async stop(): Promise<void> {
    if (this.state === 'running') this.setState('stopping')
    this.inFlight?.abort()
    this.wake?.()
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
    let backoff = FIRST_BACKOFF_MS
    while (this.state === 'running') {
      try {
        const finished = await this.step()
        if (finished) {
          this.setState('finished')
          return
        }
        backoff = FIRST_BACKOFF_MS
      } catch (error) {
        if (error instanceof LoopStop) {
          this.emit({ type: 'stopped', reason: error.message, ...(error.code ? { code: error.code } : {}) })
          return
        }
        // Stopped meanwhile (a submission given up on, a unit handed back after a failure): no retry to wait for.
        if (this.state !== 'running') return
        const message = error instanceof ClockSkewError ? error.message : error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        // Comlink rebuilds a Worker's error as a plain Error with the original name, so match on the name.
        if (error instanceof Error && UNRECOVERABLE_ERRORS.has(error.name)) {
          this.emit({ type: 'stopped', reason: message })
          return
        }
        this.emit({ type: 'error', message, retryAfterMs: backoff })
        await this.sleep(backoff)
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
      }
    }
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
        const transient = error instanceof CoordinatorUnreachableError || (error instanceof CoordinatorRequestError && error.status >= 500)
        if (!transient || Date.now() + backoff >= lease.expiresAt || this.state !== 'running') throw error
        this.emit({ type: 'error', message: `${(error as Error).name}: ${(error as Error).message}; resubmitting`, retryAfterMs: backoff })
        await this.sleep(backoff)
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
      }
    }
  }

  /**
   * Asks for a unit with a freshly signed lease request (a new nonce and time every time, so a retry is
   * never a replay). Null when the address holds as many live leases as the job allows: waited out here.
   */
  private async requestLease(info: CoordinatorInfo): Promise<LeaseResponse | null> {
    const { client, signer, jobId } = this.options
    const signed = await signLeaseRequest(signer, { jobId, audience: info.coordinatorId, domain: info, referrer: this.options.referrer })
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

  /** One lease-run-submit cycle; true when the job has finished. */
  private async step(): Promise<boolean> {
    const { client } = this.options
    const info = (this.info ??= await client.info())
    const response = await this.requestLease(info)
    if (response === null) return false
    if (response.status === 'finished') return true
    if (response.status === 'wait') {
      this.emit({ type: 'waiting', reason: response.reason, retryAfterMs: response.retryAfterMs })
      await this.sleep(response.retryAfterMs)
      return false
    }
    const { lease } = response
    this.emit({ type: 'leased', lease })
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
  private async release(lease: Lease): Promise<void> {
    const { round, unit } = lease.unit
    try {
      await this.options.client.releaseLease(lease.id)
      this.emit({ type: 'released', round, unit, handedBack: true })
    } catch (error) {
      this.emit({ type: 'released', round, unit, handedBack: false, message: error instanceof Error ? error.message : String(error) })
    }
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
    const output = await unlessAborted(executor.runUnit(spec, lease.unit, signal), signal)
    const t1 = this.now()
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
    try {
      const result = await this.submitUntilLeaseEnds(lease, () => client.submit(lease.id, signed, output.updateBytes, output.meanLoss))
      const t3 = this.now()
      this.emit({
        type: 'unit-accepted',
        report: {
          round: lease.unit.round,
          unit: lease.unit.unit,
          outputHash: output.outputHash,
          meanLoss: output.meanLoss,
          losses: output.losses,
          examples: output.examples,
          computeMs: t1 - t0,
          roundClosed: result.roundClosed,
          timings: { ...output.timings, signMs: t2 - t1, uploadMs: t3 - t2, totalMs: t3 - t0 },
        },
      })
    } catch (error) {
      if (!(error instanceof CoordinatorRequestError) || error.status >= 500) throw error
      // The coordinator said no (the round moved on, the lease ran out): nothing to retry, take new work.
      this.emit({ type: 'unit-refused', round: lease.unit.round, unit: lease.unit.unit, code: error.code, message: error.message })
    }
    return t1 - t0
  }

  /** The duty cycle: after a unit that computed for `computeMs`, rest as long as `restAfterUnit` says. */
  private async rest(computeMs: number): Promise<void> {
    const ms = this.options.restAfterUnit?.(computeMs) ?? 0
    if (!(ms > 0) || this.state !== 'running') return
    this.emit({ type: 'resting', ms })
    this.resting = true
    try {
      await this.sleep(ms)
    } finally {
      this.resting = false
    }
  }
}
