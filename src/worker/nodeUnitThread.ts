import { parentPort, workerData } from 'node:worker_threads'
import * as tf from '@tensorflow/tfjs'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import type { JobSpec, WorkUnit } from '../protocol/index.ts'
import { cpuBackend } from './nodeBackend.ts'
import { createNodeExecutor } from './nodeContributor.ts'
import type { UnitOutput } from './unitRunner.ts'

/**
 * The headless contributor's unit thread on the cpu backend (started by nodeThreadExecutor.ts). tfjs's cpu
 * kernels run synchronously, a whole unit at a time: here they never block the main thread, which keeps
 * answering Ctrl-C, the network and the progress line. What the page's Worker is to a tab. The thread
 * fetches its own blobs from the coordinator.
 */

export interface UnitThreadInit {
  coordinatorUrl: string
  /** Why the contributor computes on the cpu backend rather than WebGPU, when `auto` fell back. */
  fallbackReason: string | null
}

/** Main thread → thread. */
export interface ToUnitThread {
  type: 'run' | 'prefetch'
  id: number
  spec: JobSpec
  unit: WorkUnit
}

/** Thread → main thread. */
export type FromUnitThread =
  | { type: 'done'; id: number; output: UnitOutput }
  | { type: 'prefetched'; id: number }
  | { type: 'failed'; id: number; name: string; message: string }

if (!parentPort) throw new Error('nodeUnitThread.ts runs as a worker thread (see nodeThreadExecutor.ts)')
const port = parentPort
const init = workerData as UnitThreadInit
const send = (message: FromUnitThread) => port.postMessage(message)

// Node's tfjs would otherwise advise installing tfjs-node on its first cpu kernel: the contributor does not use it.
tf.env().set('PROD', true)
const executor = createNodeExecutor(new CoordinatorClient(init.coordinatorUrl), cpuBackend(init.fallbackReason))

port.on('message', (message: ToUnitThread) => {
  const { id, spec, unit } = message
  const work = message.type === 'run' ? executor.runUnit(spec, unit) : executor.prefetch!(spec, unit)
  work.then(
    (output) => send(message.type === 'run' ? { type: 'done', id, output: output as UnitOutput } : { type: 'prefetched', id }),
    // The error's name crosses with it: the scheduler stops on some (UNRECOVERABLE_ERRORS), by name.
    (error: unknown) => send({ type: 'failed', id, name: error instanceof Error ? error.name : 'Error', message: error instanceof Error ? error.message : String(error) }),
  )
})
