import { existsSync } from 'node:fs'

/**
 * A WebGPU device in Node through Dawn's `webgpu` package, for kernel tests and benchmarks. Browsers get
 * their device from tfjs; this module exists because CI has no browser in the unit tests, and Dawn on
 * SwiftShader gives results bit for bit equal to headless Chromium's (ENVIRONMENT.md).
 */

/** Debian's chromium package ships SwiftShader's Vulkan driver here; CI installs it. */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json'

export interface NodeGpu {
  gpu: GPU
  adapter: GPUAdapter
  device: GPUDevice
  info: { vendor: string; architecture: string }
  /** Destroys the device; without it Dawn keeps Node's event loop alive. */
  release(): Promise<void>
}

export interface GpuUnavailable {
  /** Why there is no device: for a test's skip message. */
  unavailable: string
}

interface DawnModule {
  create(options: string[]): GPU
  globals: object
}

let dawn: Promise<DawnModule | { unavailable: string }> | null = null

/**
 * Loads Dawn once per process. The ICD variable must be set before the native module loads, since the
 * Vulkan loader reads it at that moment. An explicit value from the environment wins, and SwiftShader is
 * the default only where it is installed: pointing the loader at a missing file would hide a real GPU's
 * driver. (To test a real GPU on a machine that also has Chromium, set VK_ICD_FILENAMES to its ICD.)
 */
export function loadDawn(): Promise<DawnModule | { unavailable: string }> {
  dawn ??= (async () => {
    if (process.env.VK_ICD_FILENAMES === undefined && existsSync(SWIFTSHADER_ICD)) {
      process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD
    }
    try {
      const mod = (await import('webgpu')) as unknown as DawnModule
      // GPUBufferUsage, GPUMapMode and friends: tfjs-backend-webgpu reads them as globals.
      Object.assign(globalThis, mod.globals)
      return mod
    } catch (error) {
      return { unavailable: `Dawn's webgpu package did not load: ${String(error)}` }
    }
  })()
  return dawn
}

export function isUnavailable<T extends object>(value: T | GpuUnavailable): value is GpuUnavailable {
  return 'unavailable' in value
}

/** A Dawn GPU object, or why there is none. */
export async function nodeGpu(): Promise<GPU | GpuUnavailable> {
  const mod = await loadDawn()
  if ('unavailable' in mod) return mod
  return mod.create([])
}

export async function acquireNodeGpu(): Promise<NodeGpu | GpuUnavailable> {
  const gpu = await nodeGpu()
  if (isUnavailable(gpu)) return gpu
  const adapter = await gpu.requestAdapter().catch(() => null)
  if (!adapter) {
    return {
      unavailable: `no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? ''}; needs libvulkan1 and a Vulkan driver)`,
    }
  }
  let device: GPUDevice
  try {
    // Default limits on purpose: a kernel that runs here runs on every conforming device.
    device = await adapter.requestDevice()
  } catch (error) {
    return { unavailable: `the adapter refused a device: ${String(error)}` }
  }
  const info = { vendor: adapter.info.vendor, architecture: adapter.info.architecture }
  let released = false
  return {
    gpu,
    adapter,
    device,
    info,
    async release() {
      if (released) return
      released = true
      await device.queue.onSubmittedWorkDone()
      device.destroy()
    },
  }
}

/**
 * Gives tfjs-backend-webgpu what a browser would: `navigator.gpu` from Dawn. Before the backend is imported,
 * which registers itself only where `navigator.gpu` exists. Returns how to take it out again (Node will not
 * exit while Dawn's GPU object is reachable from it). Used by the headless contributor and the kernel tests.
 */
export function installNavigatorGpu(gpu: GPU): () => void {
  const g = globalThis as { navigator?: unknown }
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, 'navigator')
  const previous = g.navigator
  // Node 21+ has a read-only global navigator; define rather than assign so both work.
  Object.defineProperty(globalThis, 'navigator', {
    value: { ...(typeof previous === 'object' && previous ? previous : {}), gpu },
    configurable: true,
    writable: true,
  })
  return () => {
    if (descriptor) Object.defineProperty(globalThis, 'navigator', descriptor)
    else delete g.navigator
  }
}
