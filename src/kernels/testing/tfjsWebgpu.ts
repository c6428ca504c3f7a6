import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu'
import { configureTfjsWebgpu } from '../config.ts'
import { isUnavailable, type GpuUnavailable } from '../device.ts'
import { watchDeviceErrors } from '../gpuErrors.ts'
import { installNodeWebgpuForTfjs } from './nodeWebgpuForTfjs.ts'

export interface TfjsWebgpu {
  backend: WebGPUBackend
  /**
   * WebGPU errors nobody caught (a shader that does not compile, an invalid dispatch). tfjs does not check
   * for them: a program that fails to compile leaves its output buffer as it was, and the op "succeeds" with
   * zeros. Collected here so the tests fail instead.
   */
  uncapturedErrors: string[]
  /** Destroys the backend's device and removes `navigator`, so the test process can exit. Throws if any
   * uncaptured WebGPU error happened. */
  teardown(): Promise<void>
}

export class UncapturedWebgpuError extends Error {
  override name = 'UncapturedWebgpuError'
}

/**
 * tfjs on its WebGPU backend in Node, configured as a contributor's tab configures it (config.ts).
 * Test-only.
 */
export async function setupTfjsWebgpu(): Promise<TfjsWebgpu | GpuUnavailable> {
  const installed = await installNodeWebgpuForTfjs()
  if (isUnavailable(installed)) return installed
  try {
    await import('@tensorflow/tfjs-backend-webgpu')
    configureTfjsWebgpu()
    if (!(await tf.setBackend('webgpu'))) {
      installed.restore()
      return { unavailable: 'tfjs could not initialise its webgpu backend on Dawn' }
    }
    await tf.ready()
  } catch (error) {
    installed.restore()
    return { unavailable: `tfjs-backend-webgpu failed to start: ${String(error)}` }
  }
  const backend = tf.backend() as WebGPUBackend
  const watch = watchDeviceErrors(backend.device)
  const uncapturedErrors = watch.messages as string[]
  return {
    backend,
    uncapturedErrors,
    async teardown() {
      const device = backend.device
      await device.queue.onSubmittedWorkDone()
      tf.removeBackend('webgpu')
      device.destroy()
      installed.restore()
      if (uncapturedErrors.length > 0) {
        throw new UncapturedWebgpuError(`${uncapturedErrors.length} uncaught WebGPU error(s) during the tests, first: ${uncapturedErrors[0]}`)
      }
    },
  }
}
