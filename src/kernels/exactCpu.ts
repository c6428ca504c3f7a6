/**
 * Exact mode on tfjs's CPU backend: the CPU model of every exact kernel (matmulExactReference and
 * exactBiasRelu, the soft-float element-wise models, the fixed-order reductions) registered as tfjs `cpu`
 * kernels, so an exact-mode unit can be computed without any GPU and gives the same bits as on WebGPU.
 *
 * Why: exact mode's promise is that a unit's bits are a function of the arithmetic's definition, not of the
 * implementation that runs it. This is a second implementation of that definition, in JavaScript on a CPU
 * with no WGSL compiler anywhere, and the tests hold a whole training unit run here to the hash it has on
 * WebGPU. It also lets a checker without a GPU (a coordinator, a referee) re-execute exact-mode units.
 *
 * Speed is not the point: the matmul model sums limb products per output in JavaScript and recombines them
 * in BigInt. A 2-step preset unit takes seconds.
 */
import * as tf from '@tensorflow/tfjs'
import { EXACT_ELEMENTWISE_OPS, type ExactElementwiseKernel } from './exactElementwise.ts'
import { EXACT_REDUCE_OPS, exactReduceModel, type ExactReduceKernel } from './fixedOrderReduce.ts'
import { DEFAULT_EXACT_SCHEME, matmulExactReference } from './exactReference.ts'
import { exactBiasRelu } from './registerExact.ts'
import { matMulCallOf, reinstateKernels, replaceKernels } from './tfjsKernels.ts'

type TensorInfo = tf.TensorInfo
type KernelFunc = tf.KernelConfig['kernelFunc']

interface CpuBackend {
  readSync(dataId: object): tf.backend_util.BackendValues
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: tf.backend_util.BackendValues): TensorInfo
}

const NAN = Number.NaN

function read(backend: CpuBackend, t: TensorInfo): Float32Array {
  return backend.readSync(t.dataId) as Float32Array
}

/** The flat index into an input of `inShape` for each output element of `outShape` (tfjs broadcasting). */
function broadcastIndex(inShape: number[], outShape: number[]): (outIndex: number) => number {
  const rankDiff = outShape.length - inShape.length
  const outStrides = tf.util.computeStrides(outShape)
  const inStrides = tf.util.computeStrides(inShape)
  return (outIndex) => {
    let rest = outIndex
    let index = 0
    for (let d = 0; d < outShape.length; d++) {
      const stride = d < outShape.length - 1 ? outStrides[d]! : 1
      const coordinate = Math.floor(rest / stride)
      rest -= coordinate * stride
      const inDim = d - rankDiff
      if (inDim >= 0 && inShape[inDim] !== 1) index += coordinate * (inDim < inShape.length - 1 ? inStrides[inDim]! : 1)
    }
    return index
  }
}

function elementwise(name: ExactElementwiseKernel): KernelFunc {
  const op = EXACT_ELEMENTWISE_OPS[name]
  return (args) => {
    const backend = args.backend as unknown as CpuBackend
    const named = args.inputs as Record<string, TensorInfo>
    if (op.kind === 'binary') {
      const { a, b } = named as { a: TensorInfo; b: TensorInfo }
      const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape)
      const [av, bv] = [read(backend, a), read(backend, b)]
      const [ai, bi] = [broadcastIndex(a.shape, shape), broadcastIndex(b.shape, shape)]
      const out = new Float32Array(tf.util.sizeFromShape(shape))
      for (let i = 0; i < out.length; i++) out[i] = op.model(av[ai(i)]!, bv[bi(i)]!)
      return backend.makeTensorInfo(shape, 'float32', out)
    }
    const x = named.x!
    const xv = read(backend, x)
    const attrs = (args.attrs ?? {}) as Record<string, unknown>
    return backend.makeTensorInfo(x.shape, 'float32', Float32Array.from(xv, (v) => op.model(v, attrs)))
  }
}

function reduce(name: ExactReduceKernel): KernelFunc {
  return (args) => {
    const backend = args.backend as unknown as CpuBackend
    const x = (args.inputs as Record<string, TensorInfo>).x!
    const attrs = args.attrs as Record<string, unknown>
    const axes = tf.util.parseAxisParam((name === 'Sum' ? attrs.axis : attrs.reductionIndices) as number | number[], x.shape).sort((p, q) => p - q)
    const out = exactReduceModel(name, read(backend, x), x.shape, axes)
    const kept = x.shape.filter((_, i) => !axes.includes(i))
    const shape = attrs.keepDims ? tf.backend_util.expandShapeToKeepDim(kept, axes) : kept
    return backend.makeTensorInfo(shape, 'float32', out)
  }
}

/** Element (row, k) of op(A) for one batch, given A's stored layout. */
function operandView(values: Float32Array, base: number, rows: number, k: number, transposed: boolean): Float32Array {
  const out = new Float32Array(rows * k)
  for (let r = 0; r < rows; r++) for (let kk = 0; kk < k; kk++) out[r * k + kk] = values[base + (transposed ? kk * rows + r : r * k + kk)]!
  return out
}

/** The exact matmul's CPU model with the WebGPU kernel's rule for non-finite inputs (NaN where they are used). */
function exactMatmulWithNonFinite(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const badRows = new Set<number>()
  const badCols = new Set<number>()
  const finiteA = a.map((v, i) => (Number.isFinite(v) ? v : (badRows.add(Math.floor(i / k)), 0)))
  const finiteB = b.map((v, i) => (Number.isFinite(v) ? v : (badCols.add(i % n), 0)))
  const c = matmulExactReference(finiteA, finiteB, m, k, n, DEFAULT_EXACT_SCHEME)
  if (badRows.size + badCols.size > 0) {
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) if (badRows.has(i) || badCols.has(j)) c[i * n + j] = NAN
  }
  return c
}

function matmul(kernelName: 'BatchMatMul' | '_FusedMatMul', stock: KernelFunc): KernelFunc {
  return (args) => {
    const call = matMulCallOf(kernelName, args)
    if (typeof call === 'string' || call.a.dtype !== 'float32' || call.b.dtype !== 'float32') return stock(args)
    const backend = args.backend as unknown as CpuBackend
    const { a, b, transposeA, transposeB } = call
    const ra = a.shape.length
    const rb = b.shape.length
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!
    const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!
    const outer = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2))
    const batch = tf.util.sizeFromShape(outer)
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2))
    const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2))
    const [av, bv] = [read(backend, a), read(backend, b)]
    const biasValues = call.bias ? read(backend, call.bias) : undefined
    const out = new Float32Array(batch * m * n)
    for (let t = 0; t < batch; t++) {
      const opA = operandView(av, (batchA === 1 ? 0 : t) * m * k, m, k, transposeA)
      // op(B) as [k, n]: stored [k, n], or [n, k] when transposed (then its rows are op(B)'s columns).
      const rowsOfBt = operandView(bv, (batchB === 1 ? 0 : t) * k * n, n, k, !transposeB)
      const opB = new Float32Array(k * n)
      for (let j = 0; j < n; j++) for (let kk = 0; kk < k; kk++) opB[kk * n + j] = rowsOfBt[j * k + kk]!
      const c = exactBiasRelu(exactMatmulWithNonFinite(opA, opB, m, k, n), n, biasValues, call.activation)
      out.set(c, t * m * n)
    }
    return backend.makeTensorInfo([...outer, m, n], 'float32', out)
  }
}

export interface ExactCpuKernels {
  /** Puts tfjs's own CPU kernels back. */
  restore(): void
}

/**
 * Registers exact mode's CPU models as tfjs `cpu` kernels. Float32 calls compute exact-mode bits; other
 * dtypes go to tfjs's CPU kernels (integer arithmetic is exact everywhere).
 */
export function registerExactCpuKernels(): ExactCpuKernels {
  const names = ['BatchMatMul', '_FusedMatMul', ...Object.keys(EXACT_ELEMENTWISE_OPS), ...Object.keys(EXACT_REDUCE_OPS)]
  const stock = names.map((name) => {
    const config = tf.getKernel(name, 'cpu')
    if (!config) throw new Error(`no ${name} kernel on the cpu backend`)
    return config
  })
  const stockFunc = (name: string) => stock.find((c) => c.kernelName === name)!.kernelFunc
  const floatOnly = (name: string, exact: KernelFunc): KernelFunc => (args) => {
    const inputs = Object.values(args.inputs as Record<string, TensorInfo | undefined>)
    return inputs.every((t) => !t || t.dtype === 'float32') ? exact(args) : stockFunc(name)(args)
  }
  replaceKernels('cpu', [
    ['BatchMatMul', matmul('BatchMatMul', stockFunc('BatchMatMul'))],
    ['_FusedMatMul', matmul('_FusedMatMul', stockFunc('_FusedMatMul'))],
    ...(Object.keys(EXACT_ELEMENTWISE_OPS) as ExactElementwiseKernel[]).map((name) => [name, floatOnly(name, elementwise(name))] as const),
    ...(Object.keys(EXACT_REDUCE_OPS) as ExactReduceKernel[]).map((name) => [name, floatOnly(name, reduce(name))] as const),
  ])
  let restored = false
  return {
    restore() {
      if (restored) return
      restored = true
      reinstateKernels(stock)
    },
  }
}
