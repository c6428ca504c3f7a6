import { createRequire } from 'node:module'
import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu'
import { activateKernelBundle } from '../kernels/config.ts'
import { installNavigatorGpu, isUnavailable, nodeGpu } from '../kernels/device.ts'
import type { JobSpec } from '../protocol/index.ts'
import { gpuDeviceLost, guardGpu, recreateGpuBackend, selectBackend } from './backend.ts'
import { useCpuKernelsFor } from './cpuKernels.ts'
import { nodeDeviceClass, type NodeGpuClass } from './nodeDeviceClass.ts'
import type { BufferLimits } from './unitSizing.ts'

/** What a person asks for: `auto` is WebGPU where Dawn finds an adapter, the cpu backend otherwise. */
export type NodeBackendChoice = 'auto' | 'webgpu' | 'cpu'

/**
 * The device a Node contributor computes units on. Everything a unit run needs from it, so the executor
 * (nodeContributor.ts) is the same code on both: put the job's kernels in place, guard the computation,
 * notice a lost device and make a new one.
 */
export interface NodeBackend {
  readonly name: 'webgpu' | 'cpu'
  /** The device in words, for a person: `webgpu (Dawn 0.6.2) on google/swiftshader ...` or `cpu (tfjs ...)`. */
  readonly description: string
  /** Why WebGPU is not used when `auto` fell back to the cpu backend; null otherwise. */
  readonly fallbackReason: string | null
  /** The WebGPU device's buffer limits (a job's batch is checked against them); null on the cpu backend. */
  readonly limits: BufferLimits | null
  /** The adapter and Dawn build on WebGPU (what its device class names); null on the cpu backend. */
  readonly gpu: NodeGpuClass | null
  /** The device class a unit of a job with `kernelBundle` is computed under here (nodeDeviceClass.ts). */
  deviceClass(kernelBundle: string): string
  /** Puts `spec`'s kernel bundle in place; throws UnsupportedKernelBundleError / KernelBundleBackendError. */
  prepare(spec: JobSpec): Promise<void>
  /** Runs a unit's computation so that an error the device reports meanwhile throws instead of giving wrong bits. */
  guard<T>(work: () => Promise<T>): Promise<T>
  /** Why the device was lost during the last computation, or null (always null on the cpu backend). */
  deviceLost(): Promise<string | null>
  /** After a loss: a new device and backend (models on the old one are gone: callers rebuild them). */
  recreate(): Promise<void>
  /** Lets go of the device; Node's event loop does not end while Dawn's device is alive. */
  close(): Promise<void>
}

/** `--backend webgpu` where Dawn gives no WebGPU device: the sentence says why. */
export class WebgpuUnavailableError extends Error {
  override name = 'WebgpuUnavailableError'
}

/**
 * tfjs's cpu backend, with exact mode's CPU kernels for exact-mode jobs (cpuKernels.ts): the backend a
 * Node contributor has always used, and the default of createNodeContributor.
 */
export function cpuBackend(fallbackReason: string | null = null): NodeBackend {
  return {
    name: 'cpu',
    description: `cpu (tfjs's cpu backend in Node ${process.versions.node}, ${process.arch}; exact-mode jobs with exact mode's CPU kernels)`,
    fallbackReason,
    limits: null,
    gpu: null,
    deviceClass: (kernelBundle) => nodeDeviceClass(kernelBundle),
    async prepare(spec) {
      await useCpuKernelsFor(spec, 'cpu')
    },
    guard: (work) => work(),
    deviceLost: async () => null,
    async recreate() {},
    async close() {},
  }
}

/** The version of the `webgpu` package, which pins the Dawn build. */
function dawnVersion(): string {
  try {
    return (createRequire(import.meta.url)('webgpu/package.json') as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/**
 * tfjs's webgpu backend on Dawn (the `webgpu` package; VK_ICD_FILENAMES picks the Vulkan driver, and
 * SwiftShader's where Chromium is installed and nothing is set, kernels/device.ts), set up by the very
 * function a tab uses (backend.ts: TabTrain's kernel bundle, device error and loss watch). A reason string
 * where there is no adapter or tfjs cannot start on it.
 */
async function webgpuBackend(): Promise<NodeBackend | string> {
  const gpu = await nodeGpu()
  if (isUnavailable(gpu)) return gpu.unavailable
  const adapter = await gpu.requestAdapter().catch(() => null)
  if (!adapter) {
    const icd = process.env.VK_ICD_FILENAMES
    return `Dawn found no WebGPU adapter${icd ? ` (VK_ICD_FILENAMES=${icd})` : ''}: no Vulkan driver, or libvulkan1 missing`
  }
  const restore = installNavigatorGpu(gpu)
  let info: Awaited<ReturnType<typeof selectBackend>>
  try {
    info = await selectBackend()
  } catch (error) {
    restore()
    return `tfjs's webgpu backend did not start on Dawn: ${(error as Error).message}`
  }
  if (info.backend !== 'webgpu') {
    restore()
    await tf.setBackend('cpu')
    return info.fallbackReason ?? `tfjs's webgpu backend did not start on Dawn`
  }
  const gpuClass: NodeGpuClass = { vendor: info.vendor, architecture: info.architecture, dawn: dawnVersion() }
  const adapterWords = [info.description, info.isFallbackAdapter ? 'a software adapter: expect CPU speed' : ''].filter(Boolean).join('; ')
  return {
    name: 'webgpu',
    description: `webgpu (Dawn ${gpuClass.dawn}) on ${info.vendor}/${info.architecture}${adapterWords ? ` (${adapterWords})` : ''}`,
    fallbackReason: null,
    limits: info.limits ?? null,
    gpu: gpuClass,
    deviceClass: (kernelBundle) => nodeDeviceClass(kernelBundle, gpuClass),
    async prepare(spec) {
      activateKernelBundle(spec.kernelBundle)
    },
    guard: (work) => guardGpu(work),
    deviceLost: () => gpuDeviceLost(),
    async recreate() {
      await recreateGpuBackend()
    },
    async close() {
      // At once, even with a unit cut short on the device: the process is about to exit or to go on without it.
      ;(tf.findBackend('webgpu') as WebGPUBackend | null)?.device.destroy()
      restore()
    },
  }
}

/**
 * The backend `choice` asks for. `auto`: WebGPU where Dawn finds an adapter and tfjs starts on it, the cpu
 * backend otherwise (with the reason); `webgpu`: WebGPU or WebgpuUnavailableError; `cpu`: the cpu backend.
 */
export async function selectNodeBackend(choice: NodeBackendChoice): Promise<NodeBackend> {
  if (choice === 'cpu') return cpuBackend()
  const webgpu = await webgpuBackend()
  if (typeof webgpu !== 'string') return webgpu
  if (choice === 'webgpu') throw new WebgpuUnavailableError(webgpu)
  return cpuBackend(webgpu)
}
