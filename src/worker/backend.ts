import * as tf from '@tensorflow/tfjs'
import { formatDeviceClass, type DeviceClassParts } from '../protocol/index.ts'
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu'
import { activateKernelBundle, KERNEL_BUNDLE } from '../kernels/config.ts'
import { watchDeviceErrors, type DeviceErrorWatch } from '../kernels/gpuErrors.ts'

export interface DeviceInfo {
  backend: 'webgpu' | 'wasm' | 'cpu'
  vendor: string
  architecture: string
  description: string
  isFallbackAdapter: boolean
  engine: string
  /** The device class under the default kernel bundle; a unit reports the class of its job's bundle. */
  deviceClass: string
  /** Everything in the device class except the kernel bundle, which each job names for itself. */
  classParts: Omit<DeviceClassParts, 'kernelBundle'>
  /** Why WebGPU was not used, when it was not. */
  fallbackReason?: string
  /** The WebGPU device's buffer limits, in bytes (unitSizing.ts checks a job's batch against them); absent off WebGPU. */
  limits?: { maxStorageBufferBindingSize: number; maxBufferSize: number }
}

let gpuErrors: DeviceErrorWatch | null = null
/** The device tfjs computes on, and why it was lost once it is (null while it is fine). */
let gpuDevice: GPUDevice | null = null
let lostReason: string | null = null

/** Starts watching tfjs's current WebGPU device: its uncaptured errors and its loss. */
function watchDevice(device: GPUDevice): void {
  gpuDevice = device
  lostReason = null
  gpuErrors = watchDeviceErrors(device)
  void device.lost.then((info) => {
    // A replaced device being destroyed is no news; only the current one's loss is.
    if (gpuDevice === device) lostReason = `${info.reason}${info.message ? `: ${info.message}` : ''}`
  })
}

/**
 * Why the WebGPU device was lost (driver reset, GPU removed, the browser reclaiming it, a destroy), or null
 * while it is fine (and always off WebGPU). Waits a task first: the loss is delivered as one.
 */
export async function gpuDeviceLost(): Promise<string | null> {
  if (!gpuDevice) return null
  await new Promise((resolve) => setTimeout(resolve, 0))
  return lostReason
}

/** Re-creating the WebGPU backend after a device loss failed: no unit can run on this Worker's GPU now. */
export class DeviceRecreateError extends Error {
  override name = 'DeviceRecreateError'
}

/**
 * After a device loss: a new device and a new tfjs WebGPU backend on it, through the factory tfjs-webgpu
 * registered (removeBackend drops it with the broken backend, so it is registered again). Tensors of the
 * old backend are gone: callers rebuild their models. The kernel bundle's kernels stay registered, and
 * their pipelines are cached per device, so they compile again for the new one.
 */
export async function recreateGpuBackend(): Promise<void> {
  const registry = (tf.engine() as unknown as { registryFactory: Record<string, { factory: () => tf.KernelBackend | Promise<tf.KernelBackend>; priority: number }> }).registryFactory
  const entry = registry['webgpu']
  if (!entry) throw new DeviceRecreateError('tfjs has no WebGPU backend to re-create')
  tf.removeBackend('webgpu')
  tf.registerBackend('webgpu', entry.factory, entry.priority)
  if (!(await tf.setBackend('webgpu'))) throw new DeviceRecreateError('the browser gave no new WebGPU device after the old one was lost')
  await tf.ready()
  watchDevice((tf.backend() as WebGPUBackend).device)
}

/**
 * Runs a unit's computation so that any error the WebGPU device reports meanwhile throws
 * GpuComputationError instead of yielding silently wrong output (gpuErrors.ts). On other backends, as is.
 */
export function guardGpu<T>(work: () => Promise<T>): Promise<T> {
  return gpuErrors ? gpuErrors.guard(work) : work()
}

/** Browser engine and major version from the user agent, e.g. `chromium-156`. */
export function browserEngine(userAgent: string): string {
  const chrome = /Chrom(?:e|ium)\/(\d+)/.exec(userAgent)
  if (chrome) return `chromium-${chrome[1]}`
  const firefox = /Firefox\/(\d+)/.exec(userAgent)
  if (firefox) return `firefox-${firefox[1]}`
  const safari = /Version\/(\d+).*Safari/.exec(userAgent)
  if (safari) return `safari-${safari[1]}`
  return 'unknown'
}

/**
 * WebGPU when an adapter exists (tfjs-webgpu with TabTrain's kernel bundle in place, config.ts),
 * the wasm backend otherwise. The wasm binaries are loaded only on that path.
 */
export async function selectBackend(wasmPaths?: Record<string, string>): Promise<DeviceInfo> {
  const engine = typeof navigator !== 'undefined' ? browserEngine(navigator.userAgent) : 'unknown'
  let fallbackReason = 'this browser has no WebGPU (navigator.gpu is missing)'
  const gpu = typeof navigator !== 'undefined' ? (navigator as Navigator & { gpu?: GPU }).gpu : undefined
  if (gpu) {
    const adapter = await gpu.requestAdapter().catch(() => null)
    if (adapter) {
      await import('@tensorflow/tfjs-backend-webgpu')
      activateKernelBundle()
      if (await tf.setBackend('webgpu')) {
        await tf.ready()
        const device = (tf.backend() as WebGPUBackend).device
        watchDevice(device)
        const info = adapter.info
        const parts = { backend: 'webgpu', vendor: info.vendor, architecture: info.architecture, engine, kernelBundle: KERNEL_BUNDLE }
        return {
          backend: 'webgpu',
          vendor: info.vendor || 'unknown',
          architecture: info.architecture || 'unknown',
          description: info.description || '',
          isFallbackAdapter: Boolean((adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? info.isFallbackAdapter),
          engine,
          deviceClass: formatDeviceClass(parts),
          classParts: { backend: parts.backend, vendor: parts.vendor, architecture: parts.architecture, engine },
          limits: { maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize, maxBufferSize: device.limits.maxBufferSize },
        }
      }
      fallbackReason = 'tfjs could not initialise its WebGPU backend'
    } else {
      fallbackReason = 'navigator.gpu found no adapter'
    }
  }
  const wasm = await import('@tensorflow/tfjs-backend-wasm')
  if (wasmPaths) wasm.setWasmPaths(wasmPaths)
  const backend = (await tf.setBackend('wasm')) ? 'wasm' : 'cpu'
  if (backend === 'cpu') await tf.setBackend('cpu')
  await tf.ready()
  const parts = { backend, vendor: 'cpu', architecture: backend, engine, kernelBundle: KERNEL_BUNDLE }
  return {
    backend,
    vendor: 'cpu',
    architecture: backend,
    description: '',
    isFallbackAdapter: false,
    engine,
    deviceClass: formatDeviceClass(parts),
    classParts: { backend, vendor: 'cpu', architecture: backend, engine },
    fallbackReason,
  }
}
