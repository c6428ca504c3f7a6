import * as tf from '@tensorflow/tfjs'

/**
 * Swapping kernels on tfjs's WebGPU backend, shared by the deterministic and the exact registrations:
 * tfjs refuses to register a kernel name twice, so each swap unregisters first.
 */
export function replaceWebgpuKernels(kernels: Iterable<readonly [string, tf.KernelConfig['kernelFunc']]>): void {
  for (const [kernelName, kernelFunc] of kernels) {
    tf.unregisterKernel(kernelName, 'webgpu')
    tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc })
  }
}

/** Puts back kernels saved with `tf.getKernel` before a replacement. */
export function reinstateKernels(configs: Iterable<tf.KernelConfig>): void {
  for (const config of configs) {
    tf.unregisterKernel(config.kernelName, config.backendName)
    tf.registerKernel(config)
  }
}
