import * as Comlink from 'comlink'
import type { DeviceInfo, TrainingWorkerApi } from '../../src/worker/api.ts'
import type { UnitExecutor } from '../../src/worker/scheduler.ts'

export interface TrainingWorker {
  /** The device the first Worker found (a replacement Worker finds the same). */
  device: DeviceInfo
  executor: UnitExecutor
}

interface Spawned {
  worker: Worker
  remote: Comlink.Remote<TrainingWorkerApi>
  ready: Promise<DeviceInfo>
}

/**
 * The training Worker behind the scheduler. A unit is aborted (Stop, an automatic pause) by terminating the
 * Worker: tfjs cannot cut a unit short, and a terminated Worker releases the GPU at once instead of
 * computing a result nobody will submit. The next unit starts a fresh Worker (the data stays cached in
 * IndexedDB; the backend is set up again, which costs the shader compilation once more).
 */
export async function startTrainingWorker(coordinatorUrl: string): Promise<TrainingWorker> {
  const spawn = (): Spawned => {
    const worker = new Worker(new URL('../../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'tabtrain-training' })
    const remote = Comlink.wrap<TrainingWorkerApi>(worker)
    const spawned: Spawned = { worker, remote, ready: remote.init(coordinatorUrl) }
    // A Worker that failed to start is not reused: the next unit tries a fresh one.
    spawned.ready.catch(() => {
      if (current === spawned) current = null
    })
    return spawned
  }
  let current: Spawned | null = spawn()
  const device = await current.ready
  return {
    device,
    executor: {
      async runUnit(spec, unit, signal) {
        const spawned = (current ??= spawn())
        const abort = () => {
          spawned.worker.terminate()
          if (current === spawned) current = null
        }
        if (signal?.aborted) throw new DOMException('the unit was aborted before it started', 'AbortError')
        signal?.addEventListener('abort', abort, { once: true })
        try {
          await spawned.ready
          return await spawned.remote.runUnit(spec, unit)
        } finally {
          signal?.removeEventListener('abort', abort)
        }
      },
      // The Worker fetches the next unit's checkpoint between its GPU waits; a terminated one fetches nothing.
      async prefetch(spec, unit) {
        const spawned = current
        if (!spawned) return
        await spawned.ready
        await spawned.remote.prefetch(spec, unit)
      },
    },
  }
}
