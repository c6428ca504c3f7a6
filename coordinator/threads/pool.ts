import { Worker } from 'node:worker_threads'
import type { Hash } from '../../src/protocol/index.ts'
import type { FromThread, ToThread } from './thread.ts'

/** Work a coordinator thread does (thread.ts): ToThread without the id the pool assigns. */
export type ThreadWork = ToThread extends infer M ? (M extends { type: 'compute' | 'aggregate'; id: number } ? Omit<M, 'id'> : never) : never

/** The thread's answer to a piece of work. */
export type ThreadAnswer = Extract<FromThread, { type: 'done' | 'aggregated' }>

export type ThreadFailureKind =
  /** The work threw in the thread; `threadError` names the error class it threw. */
  | 'failed'
  /** The thread died (or never started) while doing the work; it is replaced for the next. */
  | 'crashed'
  /** close() was called. */
  | 'closed'

export class ThreadFailure extends Error {
  override name = 'ThreadFailure'
  constructor(
    message: string,
    readonly kind: ThreadFailureKind,
    /** For 'failed': the name of the error class the thread threw (e.g. BlobUnavailableError). */
    readonly threadError?: string,
  ) {
    super(message)
  }
}

interface Job {
  id: number
  work: ThreadWork
  blob: (hash: Hash) => Promise<Uint8Array>
  resolve: (answer: ThreadAnswer) => void
  reject: (error: ThreadFailure) => void
}

interface Slot {
  worker: Worker
  job: Job | null
  /** The uncaught error the thread reported before it exited, if any. */
  crash: Error | null
}

export interface ThreadPool {
  /**
   * Queues `work`; the thread asks `blob` on this thread for every blob it needs (and checks the bytes
   * against their hash there). Rejects with ThreadFailure.
   */
  run(work: ThreadWork, blob: (hash: Hash) => Promise<Uint8Array>): Promise<ThreadAnswer>
  /** Starts a thread now when none runs, so that the first piece of work does not wait for it to load (seconds). */
  prestart(): void
  /** Fails what is queued or running with ThreadFailure ('closed') and ends the threads. */
  close(): Promise<void>
}

/** The thread's entry: registers tsx's loader in the thread, then imports thread.ts (see the file). */
const THREAD_ENTRY = new URL('./thread.boot.mjs', import.meta.url)

/**
 * Up to `threads` coordinator worker threads (default 1: the coordinator shares a small machine), started on
 * first use, so the event loop keeps serving while a unit is re-executed or a round is aggregated. Work
 * queues; each thread does one piece at a time. A thread that dies fails its work with ThreadFailure
 * ('crashed') and is replaced by a fresh one for the next. Idle threads do not keep the process alive.
 */
export function createThreadPool(options: { threads?: number } = {}): ThreadPool {
  const maxThreads = Math.max(1, Math.floor(options.threads ?? 1))
  const queue: Job[] = []
  const slots = new Set<Slot>()
  let nextId = 0
  let closed = false

  const send = (slot: Slot, message: ToThread) => {
    if (slots.has(slot)) slot.worker.postMessage(message)
  }

  const serveBlob = (slot: Slot, requestId: number, hash: Hash) => {
    const job = slot.job
    if (!job) return send(slot, { type: 'blob', requestId, ok: false, message: `no work is running that could ask for blob ${hash}` })
    Promise.resolve()
      .then(() => job.blob(hash))
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
          send(slot, { type: 'blob', requestId, ok: false, message: `no blob ${hash} (${why})` })
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
      if (message.type === 'failed') job.reject(new ThreadFailure(`${message.name}: ${message.message}`, 'failed', message.name))
      else job.resolve(message)
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
        job.reject(closed ? new ThreadFailure('closed while working', 'closed') : new ThreadFailure(`thread crashed (${why})`, 'crashed'))
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
        send(slot, { ...job.work, id: job.id } as ToThread)
      } catch (error) {
        // Work that cannot be cloned to the thread (not plain data).
        slot.job = null
        slot.worker.unref()
        job.reject(new ThreadFailure(`could not send the work to its thread: ${String(error)}`, 'failed'))
      }
    }
  }

  return {
    run(work, blob) {
      if (closed) return Promise.reject(new ThreadFailure('the thread pool is closed', 'closed'))
      return new Promise<ThreadAnswer>((resolve, reject) => {
        queue.push({ id: nextId++, work, blob, resolve, reject })
        pump()
      })
    },
    prestart() {
      if (closed || slots.size > 0) return
      start().worker.unref()
    },
    async close() {
      if (closed) return
      closed = true
      for (const job of queue.splice(0)) job.reject(new ThreadFailure('closed before the work started', 'closed'))
      await Promise.all([...slots].map((slot) => slot.worker.terminate()))
    },
  }
}
