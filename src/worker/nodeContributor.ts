import { privateKeyToAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import type { Hash, JobSpec, WorkUnit } from '../protocol/index.ts'
import { KERNEL_BUNDLE } from '../kernels/config.ts'
import { memoryCached } from './blobSource.ts'
import { cpuBackend, selectNodeBackend, type NodeBackend, type NodeBackendChoice } from './nodeBackend.ts'
import { cpuThreadExecutor, type NodeExecutor } from './nodeThreadExecutor.ts'
import { Scheduler, type ContributorSigner, type SchedulerEvent, type UnitExecutor } from './scheduler.ts'
import { createUnitRunner, type UnitOutput } from './unitRunner.ts'
import { BatchTooLargeError, checkBatchFits, modelFootprint } from './unitSizing.ts'

/** How many device losses one unit survives, as in a tab (worker.ts): one that recurs at once is a device that cannot run it. */
const MAX_DEVICE_LOSSES_PER_UNIT = 2

/** The GPU device was lost again and again during one unit: the unit fails (the scheduler backs off and retries). */
class DeviceLostError extends Error {
  override name = 'DeviceLostError'
}

/**
 * Runs units in this process on `backend`, as a tab's Worker does in a page (worker.ts): the job's kernel
 * bundle put in place first, its batch checked against the device's buffers once per job, the computation
 * guarded against device errors, and a unit redone on a new device after a loss.
 */
export function createNodeExecutor(client: CoordinatorClient, backend: NodeBackend): UnitExecutor {
  const source = memoryCached({ get: (hash) => client.blob(hash) })
  let runner = createUnitRunner(source)
  const batchChecked = new Set<Hash>()

  const checkBatch = async (spec: JobSpec, unit: WorkUnit) => {
    if (!backend.limits || batchChecked.has(unit.jobId)) return
    const m = await runner.model(spec, unit)
    const footprint = modelFootprint(
      spec.data.inputShape,
      m.layers.map((l) => ({ name: l.name, outputShape: l.outputShape as number[] })),
      m.weights.map((w) => w.shape as number[]),
    )
    const fit = checkBatchFits(spec.training.batchSize, footprint, backend.limits)
    if (!fit.fits) throw new BatchTooLargeError(fit.message)
    batchChecked.add(unit.jobId)
  }

  return {
    async runUnit(spec, unit) {
      await backend.prepare(spec)
      await checkBatch(spec, unit)
      for (let losses = 0; ; losses++) {
        let lost: string | null
        try {
          const computed = await backend.guard(() => runner.run(spec, unit))
          // A lost device may also "succeed" with garbage: its commands are dropped silently.
          lost = await backend.deviceLost()
          if (!lost) return { ...computed, deviceClass: backend.deviceClass(spec.kernelBundle), deviceLosses: losses } satisfies UnitOutput
        } catch (error) {
          lost = await backend.deviceLost()
          if (!lost) throw error
        }
        if (losses + 1 > MAX_DEVICE_LOSSES_PER_UNIT) throw new DeviceLostError(`the GPU device was lost ${losses + 1} times during one unit (last: ${lost})`)
        // A unit is a pure function of its checkpoint and indices: on a new device it is simply run again.
        await backend.recreate()
        await backend.prepare(spec)
        runner = createUnitRunner(source)
      }
    },
    prefetch: (spec, unit) => runner.prefetch(spec, unit),
  }
}

/**
 * Where `tabtrain contribute` runs units, by `choice`: WebGPU through Dawn on this thread (its work is
 * asynchronous: the thread stays free), or the cpu backend in a worker thread (its kernels are synchronous,
 * nodeThreadExecutor.ts). `auto` is WebGPU where Dawn finds an adapter and tfjs starts on it. Throws
 * WebgpuUnavailableError for `webgpu` without one.
 */
export async function startNodeExecutor(coordinatorUrl: string, choice: NodeBackendChoice): Promise<NodeExecutor> {
  if (choice === 'cpu') return cpuThreadExecutor(coordinatorUrl)
  const backend = await selectNodeBackend(choice)
  if (backend.name === 'cpu') return cpuThreadExecutor(coordinatorUrl, backend.fallbackReason)
  const executor = createNodeExecutor(new CoordinatorClient(coordinatorUrl), backend)
  return { ...executor, backend, close: () => backend.close() }
}

/**
 * A headless contributor in Node: the same unit runner and pull loop as a browser tab. Units run in this
 * process on `backend` (nodeBackend.ts: Dawn's WebGPU, or tfjs's cpu backend; the cpu backend by default,
 * where exact-mode jobs run exact mode's CPU kernels, so their units have the bits a GPU gives, cpuKernels.ts),
 * or by `executor` (startNodeExecutor). Used by `tabtrain contribute` (src/cli/), the simulation tests and
 * the benchmark.
 */
export function createNodeContributor(params: {
  coordinatorUrl: string
  jobId: Hash
  /** The contributor's key, or a signer made from it. */
  privateKey?: Hex
  signer?: ContributorSigner
  backend?: NodeBackend
  /** Units run by this executor instead (and on its backend): startNodeExecutor. */
  executor?: NodeExecutor
  onEvent?: (event: SchedulerEvent) => void
}): Scheduler {
  const signer = params.signer ?? (params.privateKey ? privateKeyToAccount(params.privateKey) : null)
  if (!signer) throw new Error('createNodeContributor needs a privateKey or a signer')
  const client = new CoordinatorClient(params.coordinatorUrl)
  const backend = params.executor?.backend ?? params.backend ?? cpuBackend()
  return new Scheduler({
    client,
    executor: params.executor ?? createNodeExecutor(client, params.backend ?? cpuBackend()),
    signer,
    deviceClass: backend.deviceClass(KERNEL_BUNDLE),
    jobId: params.jobId,
    onEvent: params.onEvent,
  })
}
