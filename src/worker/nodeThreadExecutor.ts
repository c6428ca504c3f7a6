import { Worker } from 'node:worker_threads'
import type { JobSpec, WorkUnit } from '../protocol/index.ts'
import { cpuBackend } from './nodeBackend.ts'
import type { FromUnitThread, ToUnitThread, UnitThreadInit } from './nodeUnitThread.ts'
import type { UnitExecutor } from './scheduler.ts'
import type { UnitOutput } from './unitRunner.ts'

const THREAD_ENTRY = new URL('./nodeUnitThread.boot.mjs', import.meta.url)

/** The backend units compute on, as the contributor's main thread describes it (NodeBackend's words). */
export interface ExecutorBackend {
  name: 'webgpu' | 'cpu'
  description: string
  fallbackReason: string | null
  deviceClass(kernelBundle: string): string
}

/** Runs units, on a backend it can name, until closed. */
export interface NodeExecutor extends UnitExecutor {
  readonly backend: ExecutorBackend
  close(): Promise<void>
}

/** The unit thread ended (a crash, or terminated by a stop): the unit it was computing is lost. */
export class UnitThreadError extends Error {
  override name = 'UnitThreadError'
}

interface Pending {
  resolve(value: UnitOutput | null): void
  reject(error: Error): void
}

interface Thread {
  worker: Worker
  pending: Map<number, Pending>
  exited: boolean
}

/**
 * Units on tfjs's cpu backend in a worker thread (nodeUnitThread.ts): the main thread stays free for the pull
 * loop, the network and signals while the CPU computes, as a page stays free while its Worker trains. A unit
 * cut short (its `signal` aborts: a stop) ends the thread at once, as a tab terminates its Worker; the next
 * unit starts a new one. (WebGPU stays on the main thread: its work is asynchronous there, and Dawn aborts
 * the whole process when a thread with a read-back pending is terminated.)
 */
export function cpuThreadExecutor(coordinatorUrl: string, fallbackReason: string | null = null): NodeExecutor {
  const backend = cpuBackend(fallbackReason)
  let nextId = 0
  let closed = false
  let current: Thread | null = null

  const spawn = (): Thread => {
    const worker = new Worker(THREAD_ENTRY, { execArgv: [], workerData: { coordinatorUrl, fallbackReason } satisfies UnitThreadInit })
    const thread: Thread = { worker, pending: new Map(), exited: false }
    let crash: Error | null = null
    worker.on('message', (message: FromUnitThread) => {
      const pending = thread.pending.get(message.id)
      if (!pending) return
      thread.pending.delete(message.id)
      if (message.type === 'failed') {
        const error = new Error(message.message)
        error.name = message.name
        pending.reject(error)
      } else pending.resolve(message.type === 'done' ? message.output : null)
    })
    worker.on('error', (error) => (crash = error))
    worker.on('exit', (code) => {
      thread.exited = true
      const why = crash ? `${crash.name}: ${crash.message}` : `exit code ${code}`
      for (const pending of thread.pending.values()) pending.reject(new UnitThreadError(`the unit thread ended (${why})`))
      thread.pending.clear()
      if (current === thread) current = null
    })
    return thread
  }

  const end = (t: Thread): Promise<unknown> => {
    if (t.exited) return Promise.resolve()
    if (current === t) current = null
    return t.worker.terminate()
  }

  const ask = (type: 'run' | 'prefetch', spec: JobSpec, unit: WorkUnit, signal?: AbortSignal): Promise<UnitOutput | null> => {
    if (closed) return Promise.reject(new UnitThreadError('the unit thread was closed'))
    const t = (current ??= spawn())
    const id = nextId++
    return new Promise<UnitOutput | null>((resolve, reject) => {
      t.pending.set(id, { resolve, reject })
      t.worker.postMessage({ type, id, spec, unit } satisfies ToUnitThread)
      // tfjs cannot be interrupted mid-unit: the thread goes, and the next unit starts a fresh one.
      signal?.addEventListener('abort', () => void end(t), { once: true })
    })
  }

  return {
    backend,
    async runUnit(spec, unit, signal) {
      return (await ask('run', spec, unit, signal))!
    },
    async prefetch(spec, unit) {
      await ask('prefetch', spec, unit)
    },
    async close() {
      closed = true
      if (current) await end(current)
    },
  }
}
