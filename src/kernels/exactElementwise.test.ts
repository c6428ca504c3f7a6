import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { isUnavailable } from './device.ts'
import { EXACT_ELEMENTWISE_OPS, exactElementwiseModel, type ExactElementwiseKernel } from './exactElementwise.ts'
import { EXACT_REDUCE_OPS, exactReduceModel, type ExactReduceKernel } from './fixedOrderReduce.ts'
import { seededFloats } from './reference.ts'
import { registerExactKernels } from './registerExact.ts'
import { canonicalBits } from './softFloatReference.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`exact element-wise kernel tests skipped: ${unavailable}`)

const exact = unavailable ? null : registerExactKernels()

afterAll(async () => {
  exact?.restore()
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

/** Seeded values of every magnitude class a training step meets, plus the awkward ones. */
function values(count: number, seed: number): Float32Array {
  const out = seededFloats(count, seed)
  const awkward = [0, -0, 1e-40, -1e-40, 1.1754944e-38, 1, -1, 1e30, -1e30, 88.7, -87.4, 1 + 2 ** -23, 3e38, Infinity, -Infinity, NaN]
  for (let i = 0; i < out.length; i++) {
    if (i % 5 === 0) out[i] = awkward[(i / 5) % awkward.length]!
    else if (i % 5 === 1) out[i] = out[i]! * 2 ** ((i % 40) - 20)
  }
  return out
}

function bitsOf(x: Float32Array): number[] {
  return Array.from(x, canonicalBits)
}

/** Broadcast b of shape [rows, 1], [cols], [] or [rows, cols] against a [rows, cols] output. */
function broadcastTo(b: Float32Array, shape: number[], rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const index = shape.length === 0 ? 0 : shape.length === 1 ? c : (shape[0] === 1 ? 0 : r) * shape[1]! + (shape[1] === 1 ? 0 : c)
      out[r * cols + c] = b[index]!
    }
  }
  return out
}

describe.skipIf(unavailable !== null)('exact-mode element-wise kernels in tfjs (Node, Dawn) give the CPU model\'s bits', () => {
  const rows = 37
  const cols = 29
  const names = Object.keys(EXACT_ELEMENTWISE_OPS) as ExactElementwiseKernel[]

  for (const name of names) {
    const op = EXACT_ELEMENTWISE_OPS[name]
    const shapes: number[][] = op.kind === 'binary' ? [[rows, cols], [cols], [rows, 1], []] : [[rows, cols]]
    for (const bShape of shapes) {
      it(`${name}${op.kind === 'binary' ? ` with b of shape [${bShape.join(', ')}]` : ''}`, async () => {
        const a = values(rows * cols, name.length)
        // Log and Sqrt mostly see positive inputs in training; give them both signs anyway.
        const b = values(Math.max(1, bShape.reduce((p, d) => p * d, 1)), name.length + 100)
        const before = exact!.counts[name].exact
        const attrs: tf.NamedAttrMap = name === 'Step' ? { alpha: 0.25 } : {}
        const out =
          op.kind === 'binary'
            ? tf.engine().runKernel(name, { a: tf.tensor2d(a, [rows, cols]), b: tf.tensor(b, bShape) })
            : tf.engine().runKernel(name, { x: tf.tensor2d(a, [rows, cols]) }, attrs)
        const got = (await (out as tf.Tensor).data()) as Float32Array
        expect(exact!.counts[name].exact).toBe(before + 1)
        const model = exactElementwiseModel(name, a, op.kind === 'binary' ? broadcastTo(b, bShape, rows, cols) : undefined, attrs)
        expect(bitsOf(got)).toEqual(bitsOf(model))
      })
    }
  }

  it('int32 arithmetic goes to the stock kernel (exact on every implementation already)', async () => {
    const before = exact!.counts.Add.stock
    const sum = tf.add(tf.tensor1d([1, 2, 3], 'int32'), tf.tensor1d([10, 20, 30], 'int32'))
    expect(Array.from(await sum.data())).toEqual([11, 22, 33])
    expect(exact!.counts.Add.stock).toBe(before + 1)
  })

  const reductions: Array<{ shape: number[]; axes: number[]; keepDims: boolean }> = [
    { shape: [32, 10], axes: [1], keepDims: true }, // log-sum-exp over the classes
    { shape: [32, 64], axes: [0], keepDims: false }, // a bias gradient over the batch
    { shape: [32, 10], axes: [0, 1], keepDims: false }, // the loss
    { shape: [3, 5, 7], axes: [2, 0], keepDims: false }, // axes named out of order, not innermost
    { shape: [4, 5000], axes: [1], keepDims: false }, // a long row
  ]
  for (const name of Object.keys(EXACT_REDUCE_OPS) as ExactReduceKernel[]) {
    for (const r of reductions) {
      it(`${name} of [${r.shape.join(', ')}] over axes [${r.axes.join(', ')}]${r.keepDims ? ' keeping dims' : ''}`, async () => {
        const size = r.shape.reduce((p, d) => p * d, 1)
        // Finite values here: one NaN or Inf would make the whole row non-finite and hide the order.
        const x = seededFloats(size, size + r.axes.length).map((v, i) => v * 2 ** ((i % 30) - 15))
        const before = exact!.counts[name].exact
        const out = name === 'Sum' ? tf.sum(tf.tensor(x, r.shape), r.axes, r.keepDims) : tf.max(tf.tensor(x, r.shape), r.axes, r.keepDims)
        const keptShape = r.shape.map((d, i) => (r.axes.includes(i) ? 1 : d)).filter((d, i) => r.keepDims || !r.axes.includes(i))
        expect(out.shape).toEqual(keptShape)
        expect(exact!.counts[name].exact).toBe(before + 1)
        const got = (await out.data()) as Float32Array
        expect(bitsOf(got)).toEqual(bitsOf(exactReduceModel(name, x, r.shape, r.axes)))
        // And close to the float64 value: the sequential sum's bound (n − 1)·2^-24·Σ|x| per output.
        if (name === 'Sum') {
          const n = r.axes.reduce((p, a) => p * r.shape[a]!, 1)
          const truth = exactSum64(x, r.shape, r.axes)
          const magnitude = exactSum64(x.map(Math.abs), r.shape, r.axes)
          for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - truth[i]!)).toBeLessThanOrEqual((n - 1) * 2 ** -24 * magnitude[i]!)
        }
      })
    }
  }
})

/** The float64 sums for the accuracy bound. */
function exactSum64(x: Float32Array, shape: number[], axes: number[]): Float64Array {
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i))
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((p, d) => p * d, 1))
  const outStrides = kept.map((_, j) => kept.slice(j + 1).reduce((p, i) => p * shape[i]!, 1))
  const out = new Float64Array(kept.reduce((p, i) => p * shape[i]!, 1))
  for (let offset = 0; offset < x.length; offset++) {
    let o = 0
    kept.forEach((axis, j) => {
      o += (Math.floor(offset / strides[axis]!) % shape[axis]!) * outStrides[j]!
    })
    out[o]! += x[offset]!
  }
  return out
}
