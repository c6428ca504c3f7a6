import * as tf from '@tensorflow/tfjs'

/**
 * Swapping kernels on a tfjs backend, shared by the deterministic and the exact registrations (WebGPU) and
 * exact mode on the CPU:
 * tfjs refuses to register a kernel name twice, so each swap unregisters first.
 */
export function replaceKernels(backendName: string, kernels: Iterable<readonly [string, tf.KernelConfig['kernelFunc']]>): void {
  for (const [kernelName, kernelFunc] of kernels) {
    tf.unregisterKernel(kernelName, backendName)
    tf.registerKernel({ kernelName, backendName, kernelFunc })
  }
}

export function replaceWebgpuKernels(kernels: Iterable<readonly [string, tf.KernelConfig['kernelFunc']]>): void {
  replaceKernels('webgpu', kernels)
}

/** Puts back kernels saved with `tf.getKernel` before a replacement. */
export function reinstateKernels(configs: Iterable<tf.KernelConfig>): void {
  for (const config of configs) {
    tf.unregisterKernel(config.kernelName, config.backendName)
    tf.registerKernel(config)
  }
}

/** A BatchMatMul or _FusedMatMul call as both TabTrain matmuls see it. */
export interface MatMulCall {
  a: tf.TensorInfo
  b: tf.TensorInfo
  bias: tf.TensorInfo | undefined
  transposeA: boolean
  transposeB: boolean
  activation: 'linear' | 'relu'
}

/**
 * Reads tfjs's kernel arguments into a MatMulCall, or says why the call is outside what TabTrain's
 * matmuls implement (PReLU weights, activations other than linear and relu).
 */
export function matMulCallOf(kernelName: 'BatchMatMul' | '_FusedMatMul', args: Parameters<tf.KernelConfig['kernelFunc']>[0]): MatMulCall | string {
  const { a, b, bias, preluActivationWeights } = args.inputs as {
    a: tf.TensorInfo
    b: tf.TensorInfo
    bias?: tf.TensorInfo
    preluActivationWeights?: tf.TensorInfo
  }
  const attrs = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string | null }
  const activation = kernelName === 'BatchMatMul' ? 'linear' : (attrs.activation ?? 'linear')
  if (kernelName === '_FusedMatMul' && preluActivationWeights) return 'PReLU weights'
  if (activation !== 'linear' && activation !== 'relu') return `activation ${activation}`
  return { a, b, bias: kernelName === '_FusedMatMul' ? (bias ?? undefined) : undefined, transposeA: attrs.transposeA, transposeB: attrs.transposeB, activation }
}

/**
 * A flat dispatch over every output element, `workgroup` invocations per group: what tfjs-webgpu's own
 * element-wise programs use (its `webgpu_util` helpers are not imported as values here, because importing
 * the package registers the backend, which must wait until a GPU is installed). The backend reshapes a grid
 * past the adapter's per-dimension limit itself, and its preamble recomputes the flat index from it.
 */
export function flatDispatch(outputShape: readonly number[], workgroup: number): { dispatchLayout: { x: number[] }; dispatch: [number, number, number] } {
  const size = outputShape.reduce((p, d) => p * d, 1)
  return { dispatchLayout: { x: outputShape.map((_, i) => i) }, dispatch: [Math.ceil(size / workgroup), 1, 1] }
}
