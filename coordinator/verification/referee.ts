import type { Hash, JobSpec, WorkUnit } from '../../src/protocol/index.ts'
import { createThreadPool, ThreadFailure } from '../threads/pool.ts'

export interface RefereeResult {
  /** SHA-256 of `updateBytes`: what the unit's claim must name as its outputHash. */
  outputHash: Hash
  /** Δ = θ_H − θ_0 in canonical tensor bytes. */
  updateBytes: Uint8Array
  /** The device class an honest Node contributor claims for this unit (src/worker/nodeDeviceClass.ts). */
  deviceClass: string
  /** Time the thread spent on the unit (blobs, training, hashing); not the wait in the queue. */
  ms: number
}

export interface Referee {
  /**
   * Computes `unit` of the job `spec` from scratch: the answer an honest Node contributor on the cpu backend
   * gives (exact-mode jobs on exact mode's CPU kernels, which equal a GPU's bits). Rejects with RefereeError.
   */
  compute(spec: JobSpec, unit: WorkUnit): Promise<RefereeResult>
  /** Fails what is queued or running with RefereeError ('closed') and ends the threads. */
  close(): Promise<void>
}

export type RefereeErrorKind =
  /** The job names a kernel bundle this build does not have. */
  | 'unsupported-bundle'
  /** A blob the unit needs (checkpoint, data shard) is not in the blob source. */
  | 'missing-blob'
  /** The blob source returned bytes that do not hash to the blob's address. */
  | 'bad-blob'
  /** The spec does not hash to the unit's job id. */
  | 'bad-spec'
  /** The worker thread died (or never started) while computing the unit; it is replaced for the next one. */
  | 'crashed'
  /** close() was called. */
  | 'closed'
  /** Anything else the computation threw. */
  | 'failed'

export class RefereeError extends Error {
  override name = 'RefereeError'
  constructor(
    message: string,
    readonly kind: RefereeErrorKind,
  ) {
    super(message)
  }
}

const KIND_BY_THREAD_ERROR: Record<string, RefereeErrorKind> = {
  UnsupportedKernelBundleError: 'unsupported-bundle',
  BlobUnavailableError: 'missing-blob',
  BlobIntegrityError: 'bad-blob',
  SpecIntegrityError: 'bad-spec',
}

const describeUnit = (unit: WorkUnit) => `unit ${unit.unit} of round ${unit.round} of job ${unit.jobId}`

/**
 * The coordinator's referee on its own thread pool (coordinator/threads/pool.ts): the event loop keeps
 * serving while a unit is computed. Blobs are asked of `blob` on the main thread (the thread reads no disk)
 * and checked against their hashes in the thread. A thread that dies fails the unit it was computing with
 * RefereeError ('crashed') and is replaced for the next. Idle threads do not keep the process alive.
 */
export function createThreadReferee(options: { blob: (hash: Hash) => Promise<Uint8Array>; threads?: number }): Referee {
  const pool = createThreadPool({ threads: options.threads })
  return {
    async compute(spec, unit) {
      try {
        const answer = await pool.run({ type: 'compute', spec, unit }, options.blob)
        if (answer.type !== 'done') throw new ThreadFailure(`the thread answered ${answer.type}`, 'failed')
        return { outputHash: answer.outputHash, updateBytes: answer.updateBytes, deviceClass: answer.deviceClass, ms: answer.ms }
      } catch (error) {
        if (!(error instanceof ThreadFailure)) throw error
        const kind: RefereeErrorKind = error.kind === 'failed' ? (KIND_BY_THREAD_ERROR[error.threadError ?? ''] ?? 'failed') : error.kind
        const what = error.kind === 'closed' ? `referee closed: cannot compute ${describeUnit(unit)}` : `referee could not compute ${describeUnit(unit)}`
        throw new RefereeError(`${what}: ${error.message}`, kind)
      }
    },
    close: () => pool.close(),
  }
}
