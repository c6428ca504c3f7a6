import { Worker } from 'node:worker_threads'
import type { Hash, JobSpec, WorkUnit } from '../../src/protocol/index.ts'
import type { FromThread, ToThread } from './refereeThread.ts'

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

interface Job {
  id: number
  spec: JobSpec
  unit: WorkUnit
  resolve: (result: RefereeResult) => void
  reject: (error: RefereeError) => void
}

interface Slot {
  worker: Worker
  job: Job | null
  /** The uncaught error the thread reported before it exited, if any. */
  crash: Error | null
}

/** The thread's entry: registers tsx's loader in the thread, then imports refereeThread.ts (see the file). */
const THREAD_ENTRY = new URL('./refereeThread.boot.mjs', import.meta.url)

const describeUnit = (unit: WorkUnit) => `unit ${unit.unit} of round ${unit.round} of job ${unit.jobId}`

/**
 * A referee on `threads` worker threads (default 1: the coordinator shares a small machine), started on first
 * use, so the coordinator's event loop keeps serving while a unit is computed. Requests queue; each thread
 * computes one unit at a time. Blobs are asked of `blob` on the main thread (the thread reads no disk) and
 * checked against their hashes in the thread. A thread that dies fails the unit it was computing with
 * RefereeError ('crashed') and is replaced by a fresh one for the next. Idle threads do not keep the process
 * alive; close() ends them.
 */
export function createThreadReferee(options: { blob: (hash: Hash) => Promise<Uint8Array>; threads?: number }): Referee {
  const maxThreads = Math.max(1, Math.floor(options.threads ?? 1))
  const queue: Job[] = []
  const slots = new Set<Slot>()
  let nextId = 0
  let closed = false

  const send = (slot: Slot, message: ToThread) => {
    if (slots.has(slot)) slot.worker.postMessage(message)
  }

  const serveBlob = (slot: Slot, requestId: number, hash: Hash) => {
    Promise.resolve()
      .then(() => options.blob(hash))
      .then(
        (bytes: unknown) => {
          if (!(bytes instanceof Uint8Array)) {
            send(slot, { type: 'blob', requestId, ok: false, message: `the blob source answered ${hash} with ${typeof bytes}, not bytes` })
            return
          }
          // A copy goes to the thread (the caller may keep its bytes); copy only the view, not a larger buffer.
          const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice()
          send(slot, { type: 'blob', requestId, ok: true, bytes: own })
        },
        (error: unknown) => {
          const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
          send(slot, { type: 'blob', requestId, ok: false, message: `no blob ${hash} for the referee (${why})` })
        },
      )
  }

  const finish = (slot: Slot) => {
    slot.job = null
    slot.worker.unref()
    pump()
  }

  const start = (): Slot => {
    const worker = new Worker(THREAD_ENTRY, { execArgv: [] })
    const slot: Slot = { worker, job: null, crash: null }
    slots.add(slot)
    worker.on('message', (message: FromThread) => {
      if (message.type === 'blob') return serveBlob(slot, message.requestId, message.hash)
      const job = slot.job
      if (!job || job.id !== message.id) return
      if (message.type === 'done') {
        job.resolve({ outputHash: message.outputHash, updateBytes: message.updateBytes, deviceClass: message.deviceClass, ms: message.ms })
      } else {
        const kind = KIND_BY_THREAD_ERROR[message.name] ?? 'failed'
        job.reject(new RefereeError(`referee could not compute ${describeUnit(job.unit)}: ${message.name}: ${message.message}`, kind))
      }
      finish(slot)
    })
    worker.on('error', (error) => {
      slot.crash = error
    })
    worker.on('exit', (code) => {
      slots.delete(slot)
      const job = slot.job
      slot.job = null
      if (job) {
        const why = slot.crash ? `${slot.crash.name}: ${slot.crash.message}` : `exit code ${code}`
        job.reject(
          closed
            ? new RefereeError(`referee closed while computing ${describeUnit(job.unit)}`, 'closed')
            : new RefereeError(`referee thread crashed while computing ${describeUnit(job.unit)} (${why})`, 'crashed'),
        )
      }
      if (!closed) pump()
    })
    return slot
  }

  function pump(): void {
    while (!closed && queue.length > 0) {
      let slot = [...slots].find((s) => s.job === null)
      if (!slot) {
        if (slots.size >= maxThreads) return
        slot = start()
      }
      const job = queue.shift()!
      slot.job = job
      slot.worker.ref()
      try {
        send(slot, { type: 'compute', id: job.id, spec: job.spec, unit: job.unit })
      } catch (error) {
        // A spec or unit that cannot be cloned to the thread (not plain data).
        slot.job = null
        slot.worker.unref()
        job.reject(new RefereeError(`referee could not send ${describeUnit(job.unit)} to its thread: ${String(error)}`, 'failed'))
      }
    }
  }

  return {
    compute(spec, unit) {
      if (closed) return Promise.reject(new RefereeError(`referee is closed: cannot compute ${describeUnit(unit)}`, 'closed'))
      return new Promise<RefereeResult>((resolve, reject) => {
        queue.push({ id: nextId++, spec, unit, resolve, reject })
        pump()
      })
    },
    async close() {
      if (closed) return
      closed = true
      for (const job of queue.splice(0)) job.reject(new RefereeError(`referee closed before computing ${describeUnit(job.unit)}`, 'closed'))
      await Promise.all([...slots].map((slot) => slot.worker.terminate()))
    },
  }
}
