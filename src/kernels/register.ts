/**
 * Puts TabTrain's deterministic matmul in place of tfjs-backend-webgpu's `BatchMatMul` and
 * `_FusedMatMul` (what tfjs-layers' Dense runs forward, and its gradients run backward). The stock
 * implementation picks among four programs by vendor, adapter and size, one of which adds with float
 * atomics; this one always runs the same program (matmulDeterministic.ts) on the backend's own buffers.
 * Likewise `Sum` and `Max`: stock tfjs-webgpu picks its reduction tree's width from the adapter's
 * `maxComputeWorkgroupSizeX` from 32768 elements on; these fold in a fixed order at every size
 * (fixedOrderReduce.ts, f32 arithmetic). Int32 reductions go to stock (integer sums are exact).
 *
 * Cases outside what the kernel implements (activations other than linear and relu, PReLU weights,
 * non-float32 operands, a bias that is not one value per output column, empty or very large batches)
 * go to the stock kernel, which config.ts pins to its atomics-free tiled program.
 */
import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu'
import {
  checkMatMulDims,
  matmulCoreWgsl,
  matmulDispatch,
  matmulUniformValues,
  MATMUL_UNIFORM_FIELDS,
  MATMUL_WORKGROUP_SIZE,
  variantKey,
  type MatMulDims,
  type MatMulVariant,
} from './matmulDeterministic.ts'
import { MAX_WORKGROUPS_PER_DIMENSION } from './program.ts'
import { matMulCallOf, reinstateKernels, replaceWebgpuKernels, type MatMulCall } from './tfjsKernels.ts'
import { fixedOrderReduceKernel } from './fixedOrderReduce.ts'

type TensorInfo = tf.TensorInfo
type KernelFunc = tf.KernelConfig['kernelFunc']

export const OVERRIDDEN_KERNELS = ['BatchMatMul', '_FusedMatMul'] as const
export const DETERMINISTIC_REDUCE_KERNELS = ['Sum', 'Max'] as const

export interface DeterministicKernels {
  /** Calls by kernel name: how many ran the deterministic program and how many went to stock. */
  counts: Record<(typeof OVERRIDDEN_KERNELS)[number] | (typeof DETERMINISTIC_REDUCE_KERNELS)[number], { deterministic: number; stock: number }>
  /** Puts the stock kernels back. */
  restore(): void
}

export class KernelRegistrationError extends Error {
  override name = 'KernelRegistrationError'
}

let active: DeterministicKernels | null = null

/** Shapes as the kernel sees them, or null when the call is outside what the kernel covers. */
function plan(call: MatMulCall): { dims: MatMulDims; variant: MatMulVariant; a3: number[]; b3: number[]; outShape: number[] } | null {
  const { a, b, bias, transposeA, transposeB, activation } = call
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || (bias && bias.dtype !== 'float32')) return null
  if (a.shape.length < 2 || b.shape.length < 2) return null
  const ra = a.shape.length
  const rb = b.shape.length
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!
  if (k !== kb) return null // stock raises tfjs's own shape error
  const outerA = a.shape.slice(0, -2)
  const outerB = b.shape.slice(0, -2)
  let outer: number[]
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB)
  } catch {
    return null
  }
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1)
  const dims: MatMulDims = { batch: size(outer), batchA: size(outerA), batchB: size(outerB), m, n, k }
  // Flattening outer dimensions is only a broadcast when each operand's batch is 1 or all of it.
  if ((dims.batchA !== 1 && dims.batchA !== dims.batch) || (dims.batchB !== 1 && dims.batchB !== dims.batch)) return null
  if (dims.batch > MAX_WORKGROUPS_PER_DIMENSION || [m, n, k, dims.batch].some((d) => d < 1)) return null
  if (bias && (size(bias.shape) !== n || bias.shape.slice(0, -1).some((d) => d !== 1))) return null
  try {
    checkMatMulDims(dims)
  } catch {
    return null
  }
  return {
    dims,
    variant: { transposeA, transposeB, bias: bias !== undefined, activation },
    a3: transposeA ? [dims.batchA, k, m] : [dims.batchA, m, k],
    b3: transposeB ? [dims.batchB, n, k] : [dims.batchB, k, n],
    outShape: [...outer, m, n],
  }
}

/** A view of the same GPU data under another shape: what tfjs-webgpu's Reshape does, without a ref count. */
function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype }
}

/** The tfjs program: the backend's preamble declares bindings and `_start`; the body is the shared core. */
export function tfjsMatMulProgram(variant: MatMulVariant, dims: MatMulDims): WebGPUProgram {
  const [x, y, z] = matmulDispatch(dims)
  const [wx, wy, wz] = MATMUL_WORKGROUP_SIZE
  return {
    variableNames: variant.bias ? ['A', 'B', 'bias'] : ['A', 'B'],
    outputShape: [dims.batch, dims.m, dims.n],
    // Not flat, so the backend's entry point calls `main()` and keeps the grid as given.
    dispatchLayout: { x: [2], y: [1], z: [0] },
    dispatch: [x, y, z],
    workgroupSize: [wx, wy, wz],
    uniforms: MATMUL_UNIFORM_FIELDS.map((f) => `${f} : i32,`).join(' '),
    shaderKey: variantKey(variant),
    getUserCode: () => matmulCoreWgsl(variant),
  }
}

function runOnBackend(backend: WebGPUBackend, call: MatMulCall, p: NonNullable<ReturnType<typeof plan>>): TensorInfo {
  const inputs = [view(call.a, p.a3), view(call.b, p.b3), ...(call.bias ? [view(call.bias, [p.dims.n])] : [])]
  const uniforms = matmulUniformValues(p.dims).map((value) => ({ type: 'int32', data: [value] }))
  const out = backend.runWebGPUProgram(tfjsMatMulProgram(p.variant, p.dims), inputs, 'float32', uniforms)
  return view(out, p.outShape)
}

/**
 * Replaces the webgpu backend's BatchMatMul and _FusedMatMul. Call after `@tensorflow/tfjs-backend-webgpu`
 * is imported (its import registers the stock kernels). Idempotent: a second call returns the first handle.
 */
export function registerDeterministicKernels(): DeterministicKernels {
  if (active) return active
  const stock = new Map<string, tf.KernelConfig>()
  for (const name of [...OVERRIDDEN_KERNELS, ...DETERMINISTIC_REDUCE_KERNELS]) {
    const config = tf.getKernel(name, 'webgpu')
    if (!config) throw new KernelRegistrationError(`no stock ${name} kernel on webgpu: import @tensorflow/tfjs-backend-webgpu first`)
    stock.set(name, config)
  }
  const counts: DeterministicKernels['counts'] = {
    BatchMatMul: { deterministic: 0, stock: 0 },
    _FusedMatMul: { deterministic: 0, stock: 0 },
    Sum: { deterministic: 0, stock: 0 },
    Max: { deterministic: 0, stock: 0 },
  }

  const run = (name: (typeof OVERRIDDEN_KERNELS)[number]): KernelFunc => (args) => {
    const call = matMulCallOf(name, args)
    const p = typeof call === 'string' ? null : plan(call)
    if (typeof call === 'string' || !p) {
      counts[name].stock++
      return stock.get(name)!.kernelFunc(args)
    }
    counts[name].deterministic++
    return runOnBackend(args.backend as WebGPUBackend, call, p)
  }
  const batchMatMul = run('BatchMatMul')
  const fusedMatMul = run('_FusedMatMul')

  const reduce = (name: (typeof DETERMINISTIC_REDUCE_KERNELS)[number]): KernelFunc =>
    fixedOrderReduceKernel(name, 'float', stock.get(name)!.kernelFunc, (ran) => counts[name][ran === 'fixed' ? 'deterministic' : 'stock']++)

  replaceWebgpuKernels([
    ['BatchMatMul', batchMatMul],
    ['_FusedMatMul', fusedMatMul],
    ['Sum', reduce('Sum')],
    ['Max', reduce('Max')],
  ])

  const handle: DeterministicKernels = {
    counts,
    restore() {
      if (active !== handle) return
      reinstateKernels(stock.values())
      active = null
    },
  }
  active = handle
  return handle
}
