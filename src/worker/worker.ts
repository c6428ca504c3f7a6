/// <reference lib="webworker" />
import * as Comlink from 'comlink'
import wasmUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url'
import wasmSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url'
import wasmThreadedSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { formatDeviceClass, type Hash, type JobSpec, type WorkUnit } from '../protocol/index.ts'
import { activateKernelBundle } from '../kernels/config.ts'
import type { TrainingWorkerApi } from './api.ts'
import { gpuDeviceLost, guardGpu, recreateGpuBackend, selectBackend, type DeviceInfo } from './backend.ts'
import { useCpuKernelsFor } from './cpuKernels.ts'
import { indexedDbCached, memoryCached, type BlobSource } from './blobSource.ts'
import { createUnitRunner, type UnitOutput, type UnitRunner } from './unitRunner.ts'
import { BatchTooLargeError, checkBatchFits, modelFootprint } from './unitSizing.ts'

let runner: UnitRunner | null = null
let source: BlobSource | null = null
let device: Promise<DeviceInfo> | null = null
/** Jobs whose batch was checked against this device's limits. */
const batchChecked = new Set<Hash>()

/**
 * How many device losses one unit survives. A loss is the driver resetting, the GPU going away, or the
 * browser reclaiming it; one that recurs at once is a device that cannot run the unit, not bad luck.
 */
const MAX_DEVICE_LOSSES_PER_UNIT = 2

/** The GPU device was lost again and again during one unit: the unit fails (the scheduler backs off and retries). */
class DeviceLostError extends Error {
  override name = 'DeviceLostError'
}

/**
 * Refuses a job whose batch does not fit this device's buffers before any work, with a sentence that says
 * so (unitSizing.ts), instead of a shader failing mid-unit. Once per job.
 */
async function checkBatch(info: DeviceInfo, spec: JobSpec, unit: WorkUnit): Promise<void> {
  if (!info.limits || batchChecked.has(unit.jobId)) return
  const m = await runner!.model(spec, unit)
  const footprint = modelFootprint(
    spec.data.inputShape,
    m.layers.map((l) => ({ name: l.name, outputShape: l.outputShape as number[] })),
    m.weights.map((w) => w.shape as number[]),
  )
  const fit = checkBatchFits(spec.training.batchSize, footprint, info.limits)
  if (!fit.fits) throw new BatchTooLargeError(fit.message)
  batchChecked.add(unit.jobId)
}

const api: TrainingWorkerApi = {
  async init(coordinatorUrl: string) {
    device ??= selectBackend({
      'tfjs-backend-wasm.wasm': wasmUrl,
      'tfjs-backend-wasm-simd.wasm': wasmSimdUrl,
      'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedSimdUrl,
    })
    const client = new CoordinatorClient(coordinatorUrl)
    source = memoryCached(await indexedDbCached({ get: (hash) => client.blob(hash) }))
    runner = createUnitRunner(source)
    return device
  },
  async prefetch(spec: JobSpec, unit: WorkUnit) {
    await runner?.prefetch(spec, unit)
  },
  async runUnit(spec: JobSpec, unit: WorkUnit) {
    if (!runner || !device || !source) throw new Error('init() must be called before runUnit()')
    const info = await device
    // The job names the kernels its units must run with; a bundle this build does not have is refused
    // here rather than computed with other kernels under the job's name. Without WebGPU, exact-mode jobs
    // run exact mode's CPU kernels (the same bits), others the fallback backend (cpuKernels.ts).
    let classParts = info.classParts
    if (info.backend === 'webgpu') activateKernelBundle(spec.kernelBundle)
    else {
      const backend = await useCpuKernelsFor(spec, info.backend)
      classParts = { ...classParts, backend, architecture: backend }
    }
    await checkBatch(info, spec, unit)
    for (let losses = 0; ; losses++) {
      let lost: string | null
      try {
        // A GPU error during the unit (a kernel that did not compile here, a lost device) fails it before signing.
        const computed = await guardGpu(() => runner!.run(spec, unit))
        // A lost device may also "succeed" with garbage: its commands are dropped silently.
        lost = await gpuDeviceLost()
        if (!lost) {
          const output: UnitOutput = { ...computed, deviceClass: formatDeviceClass({ ...classParts, kernelBundle: spec.kernelBundle }), deviceLosses: losses }
          // Hand the update's buffer over instead of copying it.
          return Comlink.transfer(output, [output.updateBytes.buffer as ArrayBuffer])
        }
      } catch (error) {
        lost = await gpuDeviceLost()
        if (!lost) throw error
      }
      if (losses + 1 > MAX_DEVICE_LOSSES_PER_UNIT) throw new DeviceLostError(`the GPU device was lost ${losses + 1} times during one unit (last: ${lost})`)
      // A unit is a pure function of its checkpoint and indices: on a new device it is simply run again,
      // under the same lease. The models of the old device are gone with it; the data stays cached.
      await recreateGpuBackend()
      activateKernelBundle(spec.kernelBundle)
      runner = createUnitRunner(source)
    }
  },
}

Comlink.expose(api)
