import { installNavigatorGpu, isUnavailable, nodeGpu, type GpuUnavailable } from '../device.ts'

export interface InstalledWebgpu {
  /** Removes `navigator` again (Node will not exit while Dawn's GPU object is reachable from it). */
  restore(): void
}

/**
 * Gives tfjs-backend-webgpu what a browser would: `navigator.gpu` from Dawn. Must run BEFORE
 * `@tensorflow/tfjs-backend-webgpu` is imported, because the backend registers itself at import only
 * when `navigator.gpu` exists. Test-only: the site gets WebGPU from the browser.
 */
export async function installNodeWebgpuForTfjs(): Promise<InstalledWebgpu | GpuUnavailable> {
  const gpu = await nodeGpu()
  if (isUnavailable(gpu)) return gpu
  const adapter = await gpu.requestAdapter().catch(() => null)
  if (!adapter) return { unavailable: `no WebGPU adapter (VK_ICD_FILENAMES=${process.env.VK_ICD_FILENAMES ?? ''})` }
  return { restore: installNavigatorGpu(gpu) }
}
