import * as tf from '@tensorflow/tfjs'
import { EXACT_KERNEL_BUNDLE, knownKernelBundles, UnsupportedKernelBundleError } from '../kernels/config.ts'
import { registerExactCpuKernels, type ExactCpuKernels } from '../kernels/exactCpu.ts'
import type { JobSpec } from '../protocol/index.ts'

/** The process's tfjs backend cannot compute the job's kernel bundle. */
export class KernelBundleBackendError extends Error {
  override name = 'KernelBundleBackendError'
}

let exactCpu: ExactCpuKernels | null = null

/**
 * Puts in place the kernels a contributor without WebGPU computes a job's units with, and returns the
 * backend they run on. Exact mode is one arithmetic on every implementation and its CPU form (exactCpu.ts)
 * is one of them, so an exact-mode job runs on tfjs's `cpu` backend with exact mode's CPU kernels and gives
 * the bits a GPU gives. Any other job runs on `fallback` (wasm in a tab, cpu in Node) with tfjs's own
 * kernels, as before; the device class names that backend, which keeps those results apart from GPU ones.
 */
export async function useCpuKernelsFor(spec: JobSpec, fallback: 'wasm' | 'cpu'): Promise<'wasm' | 'cpu'> {
  if (!knownKernelBundles().includes(spec.kernelBundle)) throw new UnsupportedKernelBundleError(spec.kernelBundle)
  if (spec.kernelBundle === EXACT_KERNEL_BUNDLE) {
    if (tf.getBackend() !== 'cpu' && !(await tf.setBackend('cpu'))) {
      throw new KernelBundleBackendError(`exact mode without WebGPU runs on tfjs's cpu backend, which did not start`)
    }
    exactCpu ??= registerExactCpuKernels()
    return 'cpu'
  }
  exactCpu?.restore()
  exactCpu = null
  if (tf.getBackend() !== fallback && !(await tf.setBackend(fallback))) {
    throw new KernelBundleBackendError(`the ${fallback} backend did not start`)
  }
  return fallback
}
