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
}

let gpuErrors: DeviceErrorWatch | null = null

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
        gpuErrors = watchDeviceErrors((tf.backend() as WebGPUBackend).device)
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
