/**
 * Sum and Max on tfjs's WebGPU backend in a fixed order: one invocation per output folds the reduced
 * elements in row-major index order. The order is fixed by the shape alone, never by the adapter's workgroup
 * limits (tfjs-webgpu's own ReduceProgram picks its tree width from `maxComputeWorkgroupSizeX` from 32768
 * elements on), and no atomics are involved. Two arithmetics:
 * - `soft` (exact mode): each step is the soft-float `sf_add` / `sf_max` (softFloat.ts), so the result has the
 *   same bits on every implementation. CPU model: `exactReduceModel`.
 * - `float` (the default bundle): each step is WGSL's f32 `+` / `max`, so the result has the same bits run to
 *   run on one implementation (as the default bundle's matmul does).
 *
 * Accuracy: a sequential float32 sum, |error| ≤ (n−1)·2^-24·Σ|x| (the standard bound). The preset sums 10 and
 * 32 elements; a model summing far longer rows would want a fixed pairwise tree here instead (same
 * determinism, log n error growth) at the cost of a second pass.
 *
 * Like tfjs, the reduced axes are first moved innermost by tfjs's Transpose (a pure copy, exact).
 */
import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu'
import { flatDispatch } from './tfjsKernels.ts'
import { softFloatWgsl } from './softFloat.ts'
import { sfAdd, sfMax } from './softFloatReference.ts'

export const EXACT_REDUCE_VERSION = 1
export const FLOAT_REDUCE_VERSION = 1

export type ReduceArithmetic = 'soft' | 'float'

const WORKGROUP = 64

export const EXACT_REDUCE_OPS = {
  Sum: { fold: 'sf_add', start: '0u', model: sfAdd, startValue: 0, floatStep: 'acc + v' },
  Max: { fold: 'sf_max', start: '0xff800000u', model: sfMax, startValue: -Infinity, floatStep: 'max(acc, v)' },
} as const

export type ExactReduceKernel = keyof typeof EXACT_REDUCE_OPS

/** The float arithmetic's fold: bits in and out, WGSL's f32 operations in between. */
export function floatReduceWgsl(name: ExactReduceKernel): string {
  const op = EXACT_REDUCE_OPS[name]
  return /* wgsl */ `
fn main(index: i32) {
  if (index < uniforms.size) {
    let base = index * uniforms.reduceSize;
    // A var, not a constant: bitcasting the constant -inf bits is a shader creation error in WGSL.
    var startBits = ${op.start};
    var acc = bitcast<f32>(startBits);
    for (var k = 0; k < uniforms.reduceSize; k++) {
      let v = X[base + k];
      acc = ${op.floatStep};
    }
    setOutputAtIndex(index, acc);
  }
}
`
}

export function exactReduceWgsl(name: ExactReduceKernel): string {
  const op = EXACT_REDUCE_OPS[name]
  return /* wgsl */ `${softFloatWgsl()}
fn main(index: i32) {
  if (index < uniforms.size) {
    let base = index * uniforms.reduceSize;
    var acc = ${op.start};
    for (var k = 0; k < uniforms.reduceSize; k++) {
      acc = ${op.fold}(acc, bitcast<u32>(X[base + k]));
    }
    setOutputAtIndex(index, bitcast<f32>(acc));
  }
}
`
}

/** The axes argument of tfjs's Sum (`axis`) or Max (`reductionIndices`). */
function axesOf(name: ExactReduceKernel, attrs: Record<string, unknown>): number | number[] {
  return (name === 'Sum' ? attrs.axis : attrs.reductionIndices) as number | number[]
}

/**
 * Reduces a float32 tensor over the kernel's axes; `transpose` is the backend's Transpose kernel (called
 * directly, as tfjs-webgpu's own reductions do).
 */
export function runFixedOrderReduce(
  backend: WebGPUBackend,
  name: ExactReduceKernel,
  x: tf.TensorInfo,
  attrs: Record<string, unknown>,
  transpose: tf.KernelConfig['kernelFunc'],
  arithmetic: ReduceArithmetic,
): tf.TensorInfo {
  const rank = x.shape.length
  // Sorted: the fold order is the row-major order of the reduced axes, whatever order they were named in.
  const axes = tf.util.parseAxisParam(axesOf(name, attrs), x.shape).sort((a, b) => a - b)
  const permutation = tf.backend_util.getAxesPermutation(axes, rank)
  let innermost = axes
  let input = x
  if (permutation !== null) {
    input = transpose({ inputs: { x }, backend, attrs: { perm: permutation } }) as tf.TensorInfo
    innermost = tf.backend_util.getInnerMostAxes(axes.length, rank)
  }
  const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(input.shape, innermost)
  const reduceSize = tf.util.sizeFromShape(reduceShape)
  const outSize = tf.util.sizeFromShape(outShape)
  const flatOut = [outSize]
  const program: WebGPUProgram = {
    variableNames: ['X'],
    outputShape: flatOut,
    ...flatDispatch(flatOut, WORKGROUP),
    workgroupSize: [WORKGROUP, 1, 1],
    size: true,
    uniforms: 'reduceSize : i32,',
    shaderKey: arithmetic === 'soft' ? `exactReduce/v${EXACT_REDUCE_VERSION}/${name}` : `floatReduce/v${FLOAT_REDUCE_VERSION}/${name}`,
    getUserCode: () => (arithmetic === 'soft' ? exactReduceWgsl(name) : floatReduceWgsl(name)),
  }
  const flatIn: tf.TensorInfo = { dataId: input.dataId, shape: [outSize * reduceSize], dtype: input.dtype }
  const out = backend.runWebGPUProgram(program, [flatIn], 'float32', [{ type: 'int32', data: [reduceSize] }])
  if (input !== x) backend.disposeData(input.dataId)
  const shape = attrs.keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape
  return { dataId: out.dataId, shape, dtype: 'float32' }
}

/**
 * The CPU model: `x` of `shape` reduced over `axes`, in the kernel's order (reduced axes innermost,
 * row-major, folded from the first element). Returns the output in row-major order of the kept axes.
 */
export function exactReduceModel(name: ExactReduceKernel, x: Float32Array, shape: number[], axes: number[]): Float32Array {
  const op = EXACT_REDUCE_OPS[name]
  const rank = shape.length
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i))
  const order = [...kept, ...axes.slice().sort((a, b) => a - b)]
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((p, d) => p * d, 1))
  const outSize = kept.reduce((p, i) => p * shape[i]!, 1)
  const reduceSize = axes.reduce((p, i) => p * shape[i]!, 1)
  const out = new Float32Array(outSize)
  const dims = order.map((i) => shape[i]!)
  for (let o = 0; o < outSize; o++) {
    let acc: number = op.startValue
    for (let r = 0; r < reduceSize; r++) {
      // Coordinates in the permuted order, then the source offset.
      let flat = o * reduceSize + r
      let offset = 0
      for (let d = rank - 1; d >= 0; d--) {
        const coordinate = flat % dims[d]!
        flat = Math.floor(flat / dims[d]!)
        offset += coordinate * strides[order[d]!]!
      }
      acc = op.model(acc, x[offset]!)
    }
    out[o] = acc
  }
  return out
}

/**
 * The tfjs kernel function for Sum or Max: float32 through the fixed-order program in `arithmetic`, other
 * dtypes (integer sums are exact everywhere) through `stock`; `onCall` counts which ran.
 */
export function fixedOrderReduceKernel(
  name: ExactReduceKernel,
  arithmetic: ReduceArithmetic,
  stock: tf.KernelConfig['kernelFunc'],
  onCall: (ran: 'fixed' | 'stock') => void,
): tf.KernelConfig['kernelFunc'] {
  const transpose = tf.getKernel('Transpose', 'webgpu')!.kernelFunc
  return (args) => {
    const x = (args.inputs as Record<string, tf.TensorInfo>).x!
    if (x.dtype !== 'float32') {
      onCall('stock')
      return stock(args)
    }
    onCall('fixed')
    return runFixedOrderReduce(args.backend as WebGPUBackend, name, x, args.attrs as Record<string, unknown>, transpose, arithmetic)
  }
}
