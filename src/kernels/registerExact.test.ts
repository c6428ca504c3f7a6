import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { isUnavailable } from './device.ts'
import { matmulExactReference } from './exactReference.ts'
import { exactBundleId } from './matmulExact.ts'
import { registerDeterministicKernels } from './register.ts'
import {
  EXACT_KERNEL_BUNDLE,
  ExactKernelError,
  ExactKernelRegistrationError,
  exactBiasRelu,
  exactKernelBundleId,
  registerExactKernels,
  type ExactKernels,
} from './registerExact.ts'
import { seededFloats } from './reference.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`exact kernel registration tests skipped: ${unavailable}`)

let kernels: ExactKernels | null = null
const stockBatchMatMul = unavailable ? undefined : tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc
const stockFused = unavailable ? undefined : tf.getKernel('_FusedMatMul', 'webgpu')?.kernelFunc

afterAll(async () => {
  kernels?.restore()
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

function bits(x: Float32Array): Buffer {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength)
}

/** Row-major transpose of a [rows, cols] matrix (an exact copy). */
function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length)
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j]!
  return out
}

/** Some zeros, a subnormal, mixed magnitudes: what the limb split must treat exactly. */
function awkward(n: number, seed: number): Float32Array {
  const x = seededFloats(n, seed)
  for (let i = 0; i < n; i += 7) x[i] = 0
  if (n > 3) x[3] = 1e-40
  if (n > 5) x[5] = x[5]! * 1024
  return x
}

describe('exact bundle id', () => {
  it('carries the exact arithmetic id and changes with the scheme', () => {
    expect(EXACT_KERNEL_BUNDLE.includes(exactBundleId())).toBe(true)
    expect(exactKernelBundleId({ limbs: 3, minPairOrder: 0 })).not.toBe(EXACT_KERNEL_BUNDLE)
  })
})

describe.skipIf(unavailable !== null)('exact matmul registered in tfjs-webgpu (Node, Dawn)', () => {
  it('refuses while the deterministic kernels are active, and registers idempotently after', () => {
    const det = registerDeterministicKernels()
    expect(() => registerExactKernels()).toThrow(ExactKernelRegistrationError)
    // Refusing left the deterministic registration as it was.
    expect(registerDeterministicKernels()).toBe(det)
    det.restore()
    expect(tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc).toBe(stockBatchMatMul)
    kernels = registerExactKernels()
    expect(registerExactKernels()).toBe(kernels)
    expect(kernels.bundleId).toBe(EXACT_KERNEL_BUNDLE)
  })

  it('tf.matMul and tf.fused.matMul give matmulExactReference bits (MNIST shapes, transposes, bias, relu)', async () => {
    kernels ??= registerExactKernels()
    // The MNIST preset (batch 32, 784-64-10) forward, and its backward products.
    const cases: Array<{ m: number; k: number; n: number; tA: boolean; tB: boolean; bias: boolean; relu: boolean }> = [
      { m: 32, k: 784, n: 64, tA: false, tB: false, bias: true, relu: true },
      { m: 32, k: 64, n: 10, tA: false, tB: false, bias: true, relu: false },
      { m: 64, k: 32, n: 10, tA: true, tB: false, bias: false, relu: false }, // dW2 = h^T @ dY
      { m: 32, k: 10, n: 64, tA: false, tB: true, bias: false, relu: false }, // dh = dY @ W2^T
      { m: 33, k: 37, n: 29, tA: true, tB: true, bias: true, relu: true },
      { m: 5, k: 1, n: 3, tA: false, tB: false, bias: false, relu: true },
    ]
    for (const { m, k, n, tA, tB, bias, relu } of cases) {
      const a = awkward(m * k, m + 3 * k)
      const b = awkward(k * n, 7 * k + n)
      const bv = awkward(n, n + 1)
      const aOp = tA ? transpose(a, k, m) : a // a is stored [k, m] when transposed
      const bOp = tB ? transpose(b, n, k) : b
      const want = exactBiasRelu(matmulExactReference(aOp, bOp, m, k, n), n, bias ? bv : undefined, relu ? 'relu' : 'linear')
      const ta = tf.tensor2d(a, tA ? [k, m] : [m, k])
      const tb = tf.tensor2d(b, tB ? [n, k] : [k, n])
      const tbias = tf.tensor1d(bv)
      const c =
        bias || relu
          ? tf.fused.matMul({ a: ta, b: tb, transposeA: tA, transposeB: tB, ...(bias ? { bias: tbias } : {}), activation: relu ? 'relu' : 'linear' })
          : tf.matMul(ta, tb, tA, tB)
      expect(c.shape).toEqual([m, n])
      const got = (await c.data()) as Float32Array
      tf.dispose([ta, tb, tbias, c])
      expect(bits(got).equals(bits(want)), `case ${JSON.stringify({ m, k, n, tA, tB, bias, relu })}`).toBe(true)
    }
    expect(kernels.counts.BatchMatMul.exact).toBeGreaterThan(0)
    expect(kernels.counts._FusedMatMul.exact).toBeGreaterThan(0)
  })

  it('frees its intermediate buffers (limbs, exponents)', async () => {
    kernels ??= registerExactKernels()
    const backend = tf.backend()
    const before = backend.numDataIds()
    const a = tf.tensor2d(seededFloats(12 * 20, 5), [12, 20])
    const b = tf.tensor2d(seededFloats(20 * 6, 6), [20, 6])
    const c = tf.matMul(a, b, false, false)
    await c.data()
    tf.dispose([a, b, c])
    await tf.nextFrame()
    expect(backend.numDataIds()).toBe(before)
  })

  it('rank 3: batch-1 broadcast on either side and full batches, with transposes', async () => {
    kernels ??= registerExactKernels()
    const cases = [
      { ba: 2, bb: 1, m: 5, k: 7, n: 3, tA: false, tB: false },
      { ba: 1, bb: 3, m: 4, k: 6, n: 5, tA: true, tB: false },
      { ba: 3, bb: 3, m: 4, k: 9, n: 2, tA: false, tB: true },
    ]
    for (const { ba, bb, m, k, n, tA, tB } of cases) {
      const batch = Math.max(ba, bb)
      const a = awkward(ba * m * k, ba + m + k)
      const b = awkward(bb * k * n, bb + k + n + 1)
      const ta = tf.tensor3d(a, tA ? [ba, k, m] : [ba, m, k])
      const tb = tf.tensor3d(b, tB ? [bb, n, k] : [bb, k, n])
      const c = tf.matMul(ta, tb, tA, tB)
      expect(c.shape).toEqual([batch, m, n])
      const got = (await c.data()) as Float32Array
      tf.dispose([ta, tb, c])
      for (let i = 0; i < batch; i++) {
        const ai = a.subarray((ba === 1 ? 0 : i) * m * k, ((ba === 1 ? 0 : i) + 1) * m * k)
        const bi = b.subarray((bb === 1 ? 0 : i) * k * n, ((bb === 1 ? 0 : i) + 1) * k * n)
        const want = matmulExactReference(tA ? transpose(ai, k, m) : ai.slice(), tB ? transpose(bi, n, k) : bi.slice(), m, k, n)
        expect(bits(got.slice(i * m * n, (i + 1) * m * n)).equals(bits(want)), `batch ${i} of ${JSON.stringify({ ba, bb, tA, tB })}`).toBe(true)
      }
    }
  })

  it('non-finite inputs give NaN exactly where their row or column is used, exact bits elsewhere', async () => {
    kernels ??= registerExactKernels()
    const m = 4
    const k = 6
    const n = 3
    const a = seededFloats(m * k, 11)
    const b = seededFloats(k * n, 12)
    const a2 = a.slice()
    a2[1 * k + 2] = Infinity
    const b2 = b.slice()
    b2[4 * n + 2] = NaN
    const c = tf.matMul(tf.tensor2d(a2, [m, k]), tf.tensor2d(b2, [k, n]))
    const got = (await c.data()) as Float32Array
    c.dispose()
    const want = matmulExactReference(a, b, m, k, n)
    const u = new Uint32Array(got.buffer)
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        if (i === 1 || j === 2) expect(u[i * n + j]).toBe(0x7fc00000)
        else expect(got[i * n + j]).toBe(want[i * n + j])
      }
    }
  })

  it('refuses float32 ops it has no exact form for, lets int32 through, and puts them back on restore', async () => {
    kernels ??= registerExactKernels()
    const x = tf.tensor1d([0.5, -0.25])
    expect(() => tf.tanh(x)).toThrow(ExactKernelError)
    expect(() => tf.tanh(x)).toThrow(/Tanh has no exact form/)
    expect(Array.from(await tf.maximum(tf.tensor1d([1, 5], 'int32'), tf.tensor1d([3, 2], 'int32')).data())).toEqual([3, 5])
    // Copies are exact: a slice of float32 values passes.
    expect(Array.from(await tf.slice(x, [1], [1]).data())).toEqual([-0.25])
    kernels.restore()
    kernels = null
    const tanh = await tf.tanh(x).data()
    expect(tanh[0]).toBeCloseTo(Math.tanh(0.5), 6)
  })

  it('throws on calls it does not cover; with fallback stock they go to the previous kernel', async () => {
    kernels ??= registerExactKernels()
    const a = tf.tensor2d(seededFloats(6, 1), [2, 3])
    const b = tf.tensor2d(seededFloats(12, 2), [3, 4])
    expect(() => tf.fused.matMul({ a, b, activation: 'sigmoid' })).toThrow(ExactKernelError)
    kernels.restore()
    kernels = null
    expect(tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc).toBe(stockBatchMatMul)
    expect(tf.getKernel('_FusedMatMul', 'webgpu')?.kernelFunc).toBe(stockFused)
    const lenient = registerExactKernels({ fallback: 'stock' })
    const fused = tf.fused.matMul({ a, b, activation: 'sigmoid' })
    const composed = tf.sigmoid(tf.matMul(a, b))
    const [got, want] = await Promise.all([fused.data(), composed.data()])
    tf.dispose([a, b, fused, composed])
    expect(lenient.counts._FusedMatMul.stock).toBe(1)
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 6)
    lenient.restore()
    lenient.restore()
    expect(tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc).toBe(stockBatchMatMul)
    expect(tf.getKernel('_FusedMatMul', 'webgpu')?.kernelFunc).toBe(stockFused)
  })
})
