/// <reference lib="webworker" />
import * as Comlink from 'comlink'
import wasmUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url'
import wasmSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url'
import wasmThreadedSimdUrl from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { formatDeviceClass, type JobSpec, type WorkUnit } from '../protocol/index.ts'
import { activateKernelBundle } from '../kernels/config.ts'
import type { TrainingWorkerApi } from './api.ts'
import { guardGpu, selectBackend, type DeviceInfo } from './backend.ts'
import { useCpuKernelsFor } from './cpuKernels.ts'
import { indexedDbCached, memoryCached } from './blobSource.ts'
import { createUnitRunner, type UnitOutput, type UnitRunner } from './unitRunner.ts'

let runner: UnitRunner | null = null
let device: Promise<DeviceInfo> | null = null

const api: TrainingWorkerApi = {
  async init(coordinatorUrl: string) {
    device ??= selectBackend({
      'tfjs-backend-wasm.wasm': wasmUrl,
      'tfjs-backend-wasm-simd.wasm': wasmSimdUrl,
      'tfjs-backend-wasm-threaded-simd.wasm': wasmThreadedSimdUrl,
    })
    const client = new CoordinatorClient(coordinatorUrl)
    runner = createUnitRunner(memoryCached(await indexedDbCached({ get: (hash) => client.blob(hash) })))
    return device
  },
  async runUnit(spec: JobSpec, unit: WorkUnit) {
    if (!runner || !device) throw new Error('init() must be called before runUnit()')
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
    // A GPU error during the unit (a kernel that did not compile here, a lost device) fails it before signing.
    const computed = await guardGpu(() => runner!.run(spec, unit))
    const output: UnitOutput = { ...computed, deviceClass: formatDeviceClass({ ...classParts, kernelBundle: spec.kernelBundle }) }
    // Hand the update's buffer over instead of copying it.
    return Comlink.transfer(output, [output.updateBytes.buffer as ArrayBuffer])
  },
}

Comlink.expose(api)
