/**
 * The kernel self-test: every op the MNIST preset dispatches (docs/kernels.md, "What the unit dispatched"),
 * run through tfjs on whatever `webgpu` backend is active (Dawn in Node, the browser's WebGPU in a page),
 * under each kernel bundle this build has. Each case is checked against a float64 CPU reference within a
 * stated bound, run twice (same bits both times), and summarised by a digest of its output bits that tests
 * pin (kernelSuiteDigests.ts), so Node and Chromium can be compared without sharing a process.
 *
 * Browser-safe: no node: imports. Where to edit:
 * - TOLERANCES: the bound of every case, per bundle, with why;
 * - CASES: inputs, the tfjs call and the float64 reference of every case;
 * - kernelSuiteDigests.ts: the pinned digests (re-pin with `PRINT_DIGESTS=1`, see kernelSuite.test.ts).
 */
import * as tf from '@tensorflow/tfjs'
import { sha256Hex, type Hash } from '../protocol/hash.ts'
import { encodeTensorList } from '../protocol/tensorBytes.ts'
import { activateKernelBundle, EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE, knownKernelBundles } from './config.ts'
import { matmulReference, seededFloats } from './reference.ts'

// ---------------------------------------------------------------------------------------------------------
// Float32 facts the bounds are stated in
// ---------------------------------------------------------------------------------------------------------

/** Smallest normal float32, 2^-126: below it WGSL lets an implementation flush a value to zero. */
export const F32_MIN_NORMAL = 2 ** -126

/**
 * One unit in the last place of float32 at the magnitude of `x` (a float64): the spacing of float32
 * values in the binade holding |x|, 2^-149 in the subnormal range. Infinity past the float32 range.
 */
export function ulp32(x: number): number {
  const a = Math.abs(x)
  if (a < F32_MIN_NORMAL) return 2 ** -149
  if (a >= 2 ** 128) return Infinity
  let e = Math.floor(Math.log2(a))
  // log2 may round across a power of two; settle the binade exactly.
  if (2 ** e > a) e--
  else if (2 ** (e + 1) <= a) e++
  return 2 ** (e - 23)
}

function flushSubnormal(x: number): number {
  return Math.abs(x) < F32_MIN_NORMAL ? 0 : x
}

// ---------------------------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------------------------

/** What a tolerance needs to know about one output element to size its bound. */
export interface ElementContext {
  /** float64 reference value of this element. */
  ref: number
  /** Index of the element in its output. */
  index: number
  /** The case's inputs (float32 as given to the GPU). */
  inputs: Float32Array[]
  /** Largest |reference| over this output: the scale of a normwise relative error. */
  refMax: number
  /** Per-element bound the reference computed (matmul, sum: Higham's bound); undefined otherwise. */
  refBound: number | undefined
}

/**
 * A stated error bound: the error of an element is |actual − ref| / unitSize, and a case passes when
 * its largest error is at most `bound`. `unit` names what the number counts, `why` where it comes from.
 */
export interface Tolerance {
  unit: 'ulp' | 'of bound' | 'rel (normwise)'
  bound: number
  why: string
  unitSize(element: ElementContext): number
}

/** |actual − ref| ≤ n ULP of float32 at the reference's magnitude. */
function ulps(n: number, why: string): Tolerance {
  return { unit: 'ulp', bound: n, why, unitSize: ({ ref }) => ulp32(ref) }
}

/** The error as a fraction of a per-element bound: passes at ≤ 1. */
function perElement(why: string, allowed: (element: ElementContext) => number): Tolerance {
  return { unit: 'of bound', bound: 1, why, unitSize: allowed }
}

/** max |actual − ref| / max |ref| per output: for composite ops whose outputs cancel towards zero. */
function normwise(rel: number, why: string): Tolerance {
  return { unit: 'rel (normwise)', bound: rel, why, unitSize: ({ refMax }) => refMax }
}

/** The Higham bound the reference computed for each element (matmulReference, sumReference). */
const HIGHAM = perElement(
  'Higham: a float32 sum of K terms in any order, fused or not, errs by at most (K + 2) · 2^-23 · Σ|terms| (reference.ts)',
  ({ refBound }) => refBound ?? 0,
)

const CORRECTLY_ROUNDED = ulps(0.5, 'WGSL requires x + y, x − y, x · y to be correctly rounded (round to nearest): 0.5 ULP')
const EXACT = ulps(0, 'a comparison, select or sign flip: exact')

/** The element-wise bounds the kernel bundles share today, from the WGSL spec's accuracy table. */
const WGSL_DIVISION = ulps(2.5, 'WGSL: x / y within 2.5 ULP for |y| in [2^-126, 2^126]')
const WGSL_SQRT = ulps(
  5,
  'WGSL: sqrt is "inherited from 1.0 / inverseSqrt(x)": inverseSqrt 2 ULP, then a 2.5 ULP division, ≈ 4.5 ULP',
)
const WGSL_EXP = perElement('WGSL: exp(x) within 3 + 2·|x| ULP', ({ ref, index, inputs }) => (3 + 2 * Math.abs(inputs[0]![index]!)) * ulp32(ref))
const WGSL_LOG = perElement('WGSL: log(x) within 3 ULP, or 2^-21 absolute for x in [0.5, 2]', ({ ref, index, inputs }) => {
  const x = inputs[0]![index]!
  return x >= 0.5 && x <= 2 ? 2 ** -21 : 3 * ulp32(ref)
})

/**
 * Exact mode's soft-float kernels (softFloat.ts): add, sub, mul, div and sqrt are IEEE round-to-nearest-even
 * in integers, so they are held to 0.5 ULP whatever WGSL would allow a float instruction.
 */
const SOFT_FLOAT_ROUNDED = ulps(0.5, 'exact mode: soft-float IEEE round to nearest even (softFloat.ts), subnormal results flushed to +0')
const SOFT_FLOAT_EXP = ulps(2, 'exact mode: soft-float exp, Cody–Waite reduction and a degree-7 Taylor polynomial in rounded ops; 0.89 ULP measured here')
const SOFT_FLOAT_LOG = ulps(2, 'exact mode: soft-float log, atanh series to s⁹ in rounded ops; 1.07 ULP measured here')

/**
 * Every case's bound, per bundle, in one place. `any` holds for every bundle unless the bundle has its own
 * entry (bundles are named by their role, see bundleRole). Exact mode's element-wise ops are soft float
 * (softFloat.ts), so their `exact` entries are tighter than what WGSL promises a float instruction.
 */
export const TOLERANCES: Record<string, { any: Tolerance } & Partial<Record<BundleRole, Tolerance>>> = {
  'matmul fused bias+relu 32x784 @ 784x64': { any: HIGHAM },
  'matmul fused bias 32x64 @ 64x10': { any: HIGHAM },
  'matmul grad dW1 32x784^T @ 32x64': { any: HIGHAM },
  'matmul grad dW2 32x64^T @ 32x10': { any: HIGHAM },
  'matmul grad dh 32x10 @ 64x10^T': { any: HIGHAM },
  'add bias broadcast [32,10] + [10]': { any: CORRECTLY_ROUNDED, exact: SOFT_FLOAT_ROUNDED },
  'add same shape [32,64]': { any: CORRECTLY_ROUNDED, exact: SOFT_FLOAT_ROUNDED },
  'sub row broadcast [32,10] - [32,1]': { any: CORRECTLY_ROUNDED, exact: SOFT_FLOAT_ROUNDED },
  'multiply same shape [32,64]': { any: CORRECTLY_ROUNDED, exact: SOFT_FLOAT_ROUNDED },
  'multiply by scalar [32,64] · c': { any: CORRECTLY_ROUNDED, exact: SOFT_FLOAT_ROUNDED },
  'realdiv row broadcast [32,10] / [32,1]': { any: WGSL_DIVISION, exact: SOFT_FLOAT_ROUNDED },
  'realdiv same shape [32,64]': { any: WGSL_DIVISION, exact: SOFT_FLOAT_ROUNDED },
  'square [32,64]': { any: CORRECTLY_ROUNDED, exact: SOFT_FLOAT_ROUNDED },
  'sqrt [32,64]': { any: WGSL_SQRT, exact: SOFT_FLOAT_ROUNDED },
  'exp [32,64]': { any: WGSL_EXP, exact: SOFT_FLOAT_EXP },
  'log [32,64]': { any: WGSL_LOG, exact: SOFT_FLOAT_LOG },
  'relu [32,64]': { any: EXACT },
  'step [32,64]': { any: EXACT },
  'neg [32,64]': { any: EXACT },
  'max over classes [32,10] axis 1': { any: EXACT },
  'sum over classes [32,10] axis 1': { any: HIGHAM },
  'sum over batch [32,64] axis 0': { any: HIGHAM },
  'softmax cross-entropy loss and gradient [32,10]': {
    any: normwise(
      2 ** -17,
      'composite (Max, Sub, Exp, Sum, Log, RealDiv, Neg): exp at |x| ≤ 16 is within 35 ULP ≈ 2^-18.9, log 2^-21, ' +
        'division 2.5 ULP, the 10-term sums a few ULP; 2^-17 covers their sum',
    ),
  },
  'adam two steps [784,64]': {
    any: normwise(
      2 ** -20,
      'per weight: a few correctly rounded ops, a 5 ULP sqrt and two 2.5 ULP divisions in an update of size lr ≤ |w|; ' +
        '16 ULP of the largest weight covers them',
    ),
  },
}

// ---------------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------------

/** Subnormal float32 (about 1e-40): WGSL lets an implementation flush it to zero, on input or output. */
const SUBNORMAL = Math.fround(1e-40)
const TINY = Math.fround(1e-30)
/** Large, but small enough that a product of two of the edge values stays finite. */
const LARGE = Math.fround(1e18)
const ONE_PLUS_ULP = 1 + 2 ** -23
const ONE_MINUS_HALF_ULP = 1 - 2 ** -24

/** Seeded values in [-1, 1) times a seeded power of two in [2^-span, 2^span]: many binades, no edge. */
function spreadFloats(count: number, seed: number, span: number): Float32Array {
  const mantissas = seededFloats(count, seed)
  const exponents = seededFloats(count, seed ^ 0x5bd1e995)
  return mantissas.map((m, i) => m * 2 ** Math.round(exponents[i]! * span))
}

interface InputSpec {
  shape: number[]
  /** Ordinary values for this input, from its seed. */
  values(count: number): Float32Array
  /** Edge values written over the first elements, so they meet the other input's edges pairwise. */
  edges?: number[]
}

function makeInput(spec: InputSpec): Float32Array {
  const count = spec.shape.reduce((a, b) => a * b, 1)
  const out = spec.values(count)
  spec.edges?.forEach((x, i) => (out[i] = x))
  return out
}

const signed = (seed: number, span = 6) => (count: number) => spreadFloats(count, seed, span)
const positive = (seed: number, span = 6) => (count: number) => spreadFloats(count, seed, span).map((x) => Math.abs(x) + 2 ** -20)
const uniform = (seed: number, scale: number) => (count: number) => seededFloats(count, seed).map((x) => x * scale)

/** One-hot labels for `rows` examples of `classes` classes, from a seed. */
function oneHotLabels(rows: number, classes: number, seed: number): (count: number) => Float32Array {
  return () => {
    const picks = seededFloats(rows, seed)
    const out = new Float32Array(rows * classes)
    picks.forEach((p, row) => (out[row * classes + Math.min(classes - 1, Math.floor(((p + 1) / 2) * classes))] = 1))
    return out
  }
}

// ---------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------

/** One float64 output of a reference: values, and per-element bounds where the reference computes them. */
export interface ReferenceOutput {
  value: Float64Array
  bound?: Float64Array
}

export interface KernelCase {
  name: string
  /** The tfjs kernels the case dispatches, for the table. */
  kernels: string
  inputs: InputSpec[]
  /** The tfjs call, inside tf.tidy; returns the outputs to check and hash. */
  run(inputs: tf.Tensor[]): tf.Tensor[]
  /** float64 reference of every output. */
  reference(inputs: Float32Array[]): ReferenceOutput[]
}

/** Element-wise reference over numpy-style broadcasting of inputs with the given shapes to `outShape`. */
function elementwise(shapes: number[][], outShape: number[], f: (...xs: number[]) => number) {
  return (inputs: Float32Array[]): ReferenceOutput[] => {
    const size = outShape.reduce((a, b) => a * b, 1)
    const value = new Float64Array(size)
    const index = new Array<number>(outShape.length)
    for (let flat = 0; flat < size; flat++) {
      let rest = flat
      for (let d = outShape.length - 1; d >= 0; d--) {
        index[d] = rest % outShape[d]!
        rest = Math.floor(rest / outShape[d]!)
      }
      const args = inputs.map((input, k) => {
        const shape = shapes[k]!
        let offset = 0
        for (let d = 0; d < shape.length; d++) {
          const outDim = index[outShape.length - shape.length + d]!
          offset = offset * shape[d]! + (shape[d] === 1 ? 0 : outDim)
        }
        return input[offset]!
      })
      value[flat] = f(...args)
    }
    return [{ value }]
  }
}

/** float64 sum of a [rows, cols] matrix over one axis, with Higham's bound per output. */
function sumReference(x: Float32Array, rows: number, cols: number, axis: 0 | 1): ReferenceOutput {
  const outer = axis === 0 ? cols : rows
  const inner = axis === 0 ? rows : cols
  const value = new Float64Array(outer)
  const bound = new Float64Array(outer)
  for (let o = 0; o < outer; o++) {
    let sum = 0
    let magnitude = 0
    for (let i = 0; i < inner; i++) {
      const v = axis === 0 ? x[i * cols + o]! : x[o * cols + i]!
      sum += v
      magnitude += Math.abs(v)
    }
    value[o] = sum
    bound[o] = (inner + 2) * 2 ** -23 * magnitude
  }
  return { value, bound }
}

interface MatMulCaseSpec {
  name: string
  /** Shapes of a and b as stored (before the transposes). */
  aShape: [number, number]
  bShape: [number, number]
  transposeA: boolean
  transposeB: boolean
  bias: boolean
  activation: 'linear' | 'relu'
  seed: number
}

/** A matmul as the preset runs it: Dense's fused forward, or one of the gradients tfjs takes of it. */
function matmulCase(spec: MatMulCaseSpec): KernelCase {
  const m = spec.transposeA ? spec.aShape[1] : spec.aShape[0]
  const k = spec.transposeA ? spec.aShape[0] : spec.aShape[1]
  const n = spec.transposeB ? spec.bShape[0] : spec.bShape[1]
  const inputs: InputSpec[] = [
    { shape: spec.aShape, values: uniform(spec.seed, 1) },
    { shape: spec.bShape, values: uniform(spec.seed + 1, 0.1) },
  ]
  if (spec.bias) inputs.push({ shape: [n], values: uniform(spec.seed + 2, 0.1) })
  return {
    name: spec.name,
    kernels: spec.bias ? '_FusedMatMul' : 'BatchMatMul',
    inputs,
    run: ([a, b, bias]) => [
      spec.bias
        ? tf.fused.matMul({ a: a!, b: b!, transposeA: spec.transposeA, transposeB: spec.transposeB, bias, activation: spec.activation })
        : tf.matMul(a!, b!, spec.transposeA, spec.transposeB),
    ],
    reference: ([a, b, bias]) => [
      matmulReference({ a: a!, b: b!, bias, batchA: 1, batchB: 1, m, n, k, transposeA: spec.transposeA, transposeB: spec.transposeB, activation: spec.activation }),
    ],
  }
}

function binaryCase(
  name: string,
  kernels: string,
  shapes: [number[], number[]],
  values: [InputSpec['values'], InputSpec['values']],
  edges: [number[], number[]],
  op: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
  f: (a: number, b: number) => number,
): KernelCase {
  const outShape = shapes[0].length >= shapes[1].length ? shapes[0] : shapes[1]
  return {
    name,
    kernels,
    inputs: [
      { shape: shapes[0], values: values[0], edges: edges[0] },
      { shape: shapes[1], values: values[1], edges: edges[1] },
    ],
    run: ([a, b]) => [op(a!, b!)],
    reference: elementwise(shapes, outShape, f),
  }
}

function unaryCase(name: string, kernels: string, values: InputSpec['values'], edges: number[], op: (x: tf.Tensor) => tf.Tensor, f: (x: number) => number): KernelCase {
  const shape = [32, 64]
  return { name, kernels, inputs: [{ shape, values, edges }], run: ([x]) => [op(x!)], reference: elementwise([shape], shape, f) }
}

/** Edge values every signed element-wise case sees (paired with the second input's edges). */
const SIGNED_EDGES = [0, -0, SUBNORMAL, -SUBNORMAL, TINY, -TINY, LARGE, -LARGE, 1, ONE_PLUS_ULP, ONE_MINUS_HALF_ULP, -2]

/** tfjs's softmaxCrossEntropy (mean over the batch) and its gradient with respect to the logits, in float64. */
function softmaxCrossEntropyReference(labels: Float32Array, logits: Float32Array, rows: number, classes: number): ReferenceOutput[] {
  let loss = 0
  const grad = new Float64Array(rows * classes)
  for (let r = 0; r < rows; r++) {
    const z = logits.subarray(r * classes, (r + 1) * classes)
    const max = Math.max(...z)
    let sumExp = 0
    for (const v of z) sumExp += Math.exp(v - max)
    const logSumExp = max + Math.log(sumExp)
    for (let c = 0; c < classes; c++) {
      const y = labels[r * classes + c]!
      loss += y * (logSumExp - z[c]!)
      grad[r * classes + c] = (Math.exp(z[c]! - logSumExp) - y) / rows
    }
  }
  return [{ value: Float64Array.of(loss / rows) }, { value: grad }]
}

const ADAM = { learningRate: 0.003, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }

/**
 * Two steps of tfjs's Adam (adam_optimizer.js) in float64, from zero moments: the second step has
 * non-zero moments and a bias correction other than the first's. Constants as tfjs passes them to float32.
 */
function adamReference(weights: Float32Array, gradients: Float32Array[]): ReferenceOutput[] {
  const f = Math.fround
  const { learningRate, beta1, beta2, epsilon } = ADAM
  const w = Float64Array.from(weights)
  const m = new Float64Array(w.length)
  const v = new Float64Array(w.length)
  let accBeta1 = f(beta1)
  let accBeta2 = f(beta2)
  for (const g of gradients) {
    for (let i = 0; i < w.length; i++) {
      m[i] = m[i]! * f(beta1) + g[i]! * f(1 - beta1)
      v[i] = v[i]! * f(beta2) + g[i]! * g[i]! * f(1 - beta2)
      const mHat = m[i]! / (1 - accBeta1)
      const vHat = v[i]! / (1 - accBeta2)
      w[i] = w[i]! - f(learningRate) * (mHat / (Math.sqrt(vHat) + f(epsilon)))
    }
    accBeta1 *= f(beta1)
    accBeta2 *= f(beta2)
  }
  return [{ value: w }]
}

export const CASES: KernelCase[] = [
  // The preset's Dense 784-64 relu and Dense 64-10 forward, batch 32, and the gradients tfjs takes of them.
  matmulCase({ name: 'matmul fused bias+relu 32x784 @ 784x64', aShape: [32, 784], bShape: [784, 64], transposeA: false, transposeB: false, bias: true, activation: 'relu', seed: 101 }),
  matmulCase({ name: 'matmul fused bias 32x64 @ 64x10', aShape: [32, 64], bShape: [64, 10], transposeA: false, transposeB: false, bias: true, activation: 'linear', seed: 111 }),
  matmulCase({ name: 'matmul grad dW1 32x784^T @ 32x64', aShape: [32, 784], bShape: [32, 64], transposeA: true, transposeB: false, bias: false, activation: 'linear', seed: 121 }),
  matmulCase({ name: 'matmul grad dW2 32x64^T @ 32x10', aShape: [32, 64], bShape: [32, 10], transposeA: true, transposeB: false, bias: false, activation: 'linear', seed: 131 }),
  matmulCase({ name: 'matmul grad dh 32x10 @ 64x10^T', aShape: [32, 10], bShape: [64, 10], transposeA: false, transposeB: true, bias: false, activation: 'linear', seed: 141 }),

  binaryCase('add bias broadcast [32,10] + [10]', 'Add', [[32, 10], [10]], [signed(201), signed(202)], [SIGNED_EDGES.slice(0, 10), [0, 0, SUBNORMAL, SUBNORMAL, -TINY, TINY, -LARGE, LARGE, 1, -1]], tf.add, (a, b) => a + b),
  binaryCase('add same shape [32,64]', 'Add', [[32, 64], [32, 64]], [signed(211), signed(212)], [SIGNED_EDGES, [0, 0, -SUBNORMAL, SUBNORMAL, TINY, 1, 1, -1, 2 ** -24, 2 ** -24, 2 ** -25, 2]], tf.add, (a, b) => a + b),
  binaryCase('sub row broadcast [32,10] - [32,1]', 'Sub', [[32, 10], [32, 1]], [signed(221), signed(222)], [SIGNED_EDGES.slice(0, 10), [0]], tf.sub, (a, b) => a - b),
  binaryCase('multiply same shape [32,64]', 'Multiply', [[32, 64], [32, 64]], [signed(231), signed(232)], [SIGNED_EDGES, [LARGE, 1, 0.5, 2, TINY, TINY, LARGE, -LARGE, ONE_PLUS_ULP, ONE_PLUS_ULP, ONE_PLUS_ULP, 2 ** -130]], tf.mul, (a, b) => a * b),
  binaryCase('multiply by scalar [32,64] · c', 'Multiply', [[32, 64], []], [signed(241), () => Float32Array.of(Math.fround(1 - 0.999))], [SIGNED_EDGES, []], tf.mul, (a, b) => a * b),
  binaryCase('realdiv row broadcast [32,10] / [32,1]', 'RealDiv', [[32, 10], [32, 1]], [signed(251), positive(252)], [SIGNED_EDGES.slice(0, 10), [3]], tf.div, (a, b) => a / b),
  binaryCase('realdiv same shape [32,64]', 'RealDiv', [[32, 64], [32, 64]], [signed(261), positive(262)], [[0, 1, LARGE, TINY, SUBNORMAL, 3, -7, 1, ONE_PLUS_ULP], [1, 3, 1e-10, 1e10, 2, 3, 7, ONE_PLUS_ULP, ONE_PLUS_ULP]], tf.div, (a, b) => a / b),

  unaryCase('square [32,64]', 'Square', signed(301), [0, -0, SUBNORMAL, TINY, -LARGE, ONE_PLUS_ULP, -1], tf.square, (x) => x * x),
  unaryCase('sqrt [32,64]', 'Sqrt', positive(311), [0, SUBNORMAL, TINY, LARGE, 1, 2, ONE_PLUS_ULP, ONE_MINUS_HALF_ULP, 4, 3e38], tf.sqrt, Math.sqrt),
  unaryCase('exp [32,64]', 'Exp', uniform(321, 12), [0, -0, TINY, SUBNORMAL, -87, 88, 1, -1, 2 ** -20], tf.exp, Math.exp),
  unaryCase('log [32,64]', 'Log', positive(331, 20), [1, ONE_PLUS_ULP, ONE_MINUS_HALF_ULP, 1 + 2 ** -10, 0.5, 2, TINY, LARGE, 3e38, F32_MIN_NORMAL], tf.log, Math.log),
  unaryCase('relu [32,64]', 'Relu', signed(341), SIGNED_EDGES, tf.relu, (x) => (x < 0 ? 0 : x)),
  // Step is what relu's gradient runs (alpha 0).
  unaryCase('step [32,64]', 'Step', signed(351), SIGNED_EDGES, (x) => tf.step(x), (x) => (x > 0 ? 1 : 0)),
  unaryCase('neg [32,64]', 'Neg', signed(361), SIGNED_EDGES, tf.neg, (x) => -x),

  {
    name: 'max over classes [32,10] axis 1',
    kernels: 'Max',
    inputs: [{ shape: [32, 10], values: signed(401), edges: [-0, 0, -SUBNORMAL, -LARGE, -TINY, -1, -2, -3, -4, -5] }],
    run: ([x]) => [tf.max(x!, 1)],
    reference: ([x]) => [{ value: Float64Array.from({ length: 32 }, (_, r) => Math.max(...x!.subarray(r * 10, r * 10 + 10))) }],
  },
  {
    name: 'sum over classes [32,10] axis 1',
    kernels: 'Sum',
    inputs: [{ shape: [32, 10], values: signed(411), edges: [LARGE, 1, -LARGE, TINY, SUBNORMAL, 0, -0, 2, 3, 4] }],
    run: ([x]) => [tf.sum(x!, 1)],
    reference: ([x]) => [sumReference(x!, 32, 10, 1)],
  },
  {
    name: 'sum over batch [32,64] axis 0',
    kernels: 'Sum (Transpose)',
    inputs: [{ shape: [32, 64], values: signed(421) }],
    run: ([x]) => [tf.sum(x!, 0)],
    reference: ([x]) => [sumReference(x!, 32, 64, 0)],
  },
  {
    name: 'softmax cross-entropy loss and gradient [32,10]',
    kernels: 'Max Sub Exp Sum Log Multiply RealDiv Neg',
    inputs: [
      { shape: [32, 10], values: oneHotLabels(32, 10, 501) },
      { shape: [32, 10], values: uniform(502, 8) },
    ],
    run: ([labels, logits]) => {
      const lossOf = (z: tf.Tensor) => tf.losses.softmaxCrossEntropy(labels!, z)
      const { value, grad } = tf.valueAndGrad(lossOf)(logits!)
      return [value, grad]
    },
    reference: ([labels, logits]) => softmaxCrossEntropyReference(labels!, logits!, 32, 10),
  },
  {
    name: 'adam two steps [784,64]',
    kernels: 'Adam: Multiply Add Square Sqrt RealDiv Sub',
    inputs: [
      { shape: [784, 64], values: uniform(601, 0.1) },
      { shape: [784, 64], values: signed(602, 10) },
      { shape: [784, 64], values: signed(603, 10) },
    ],
    run: ([weights, g1, g2]) => {
      const w = tf.variable(weights!.clone())
      const optimizer = tf.train.adam(ADAM.learningRate, ADAM.beta1, ADAM.beta2, ADAM.epsilon)
      optimizer.applyGradients([{ name: w.name, tensor: g1! }])
      optimizer.applyGradients([{ name: w.name, tensor: g2! }])
      const out = w.clone()
      optimizer.dispose()
      w.dispose()
      return [out]
    },
    reference: ([weights, g1, g2]) => adamReference(weights!, [g1!, g2!]),
  },
]

// ---------------------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------------------

/** A bundle's role: the key its bounds and pinned digests are filed under (bundle ids carry a source hash). */
export type BundleRole = 'default' | 'exact'

/** The roles of the bundles this build has (knownKernelBundles, by role). */
export function knownRoles(): string[] {
  return knownKernelBundles().map(bundleRole)
}

export function bundleRole(bundle: string): BundleRole | string {
  if (bundle === KERNEL_BUNDLE) return 'default'
  if (bundle === EXACT_KERNEL_BUNDLE) return 'exact'
  return bundle
}

export interface KernelCaseResult {
  name: string
  kernels: string
  /** `default` or `exact` (see bundleRole); `bundleId` is the full id. */
  bundle: string
  bundleId: string
  /** Largest error over all outputs, in `unit`; `Infinity` for a non-finite mismatch. */
  maxError: number
  bound: number
  unit: Tolerance['unit']
  why: string
  withinBound: boolean
  /** The second run gave the same digest as the first. */
  repeatable: boolean
  /** Within its bound and repeatable. */
  passed: boolean
  /** SHA-256 of the outputs' canonical tensor bytes (protocol/tensorBytes.ts: shapes and float32 bits). */
  digest: Hash
  /** Time of one run, shader compilation included on a first run. */
  ms: number
}

export interface KernelSuiteOptions {
  /** Bundle ids to run (default: every bundle this build has). */
  bundles?: string[]
  /** Only cases whose name contains one of these. */
  only?: string[]
  /** Called after each case, for a page that fills its table as it goes. */
  onResult?(result: KernelCaseResult): void
}

/**
 * Error of one element in units of `unitSize`, with WGSL's subnormal allowance: an implementation may
 * flush any subnormal to zero, so where the reference and the result are both below the smallest normal
 * (zero, or a subnormal of either sign) they count as equal. This is not hypothetical: SwiftShader's relu,
 * `select(a, 0.0, a < 0.0)`, compares a negative subnormal as zero and passes it through unchanged.
 * Non-finite values must match exactly.
 */
function elementError(actual: number, ref: number, unitSize: number): number {
  if (Number.isNaN(ref)) return Number.isNaN(actual) ? 0 : Infinity
  const ref32 = Math.fround(ref)
  if (!Number.isFinite(ref32) || !Number.isFinite(actual)) return actual === ref32 ? 0 : Infinity
  if (Math.abs(ref) < F32_MIN_NORMAL && Math.abs(actual) < F32_MIN_NORMAL) return 0
  const error = Math.abs(actual - ref)
  if (error === 0) return 0
  return unitSize > 0 ? error / unitSize : Infinity
}

/**
 * Largest error of the outputs. WGSL also lets an implementation flush subnormal inputs, so where an input
 * holds one, every element is also compared with the reference of the flushed inputs and the smaller
 * error counts.
 */
export function caseMaxError(kernelCase: KernelCase, tolerance: Tolerance, inputs: Float32Array[], outputs: Float32Array[]): number {
  const references = [kernelCase.reference(inputs)]
  const flushed = inputs.map((x) => x.map(flushSubnormal))
  if (flushed.some((x, k) => x.some((v, i) => v !== inputs[k]![i]))) references.push(kernelCase.reference(flushed))
  let worst = 0
  outputs.forEach((actual, o) => {
    const perReference = references.map((outs) => {
      const { value, bound } = outs[o]!
      if (value.length !== actual.length) throw new Error(`${kernelCase.name}: output ${o} has ${actual.length} values, the reference ${value.length}`)
      const refMax = value.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
      return (i: number) =>
        elementError(actual[i]!, value[i]!, tolerance.unitSize({ ref: value[i]!, index: i, inputs, refMax, refBound: bound?.[i] }))
    })
    for (let i = 0; i < actual.length; i++) {
      const error = Math.min(...perReference.map((errorAt) => errorAt(i)))
      if (!(error <= worst)) worst = error
    }
  })
  return worst
}

/** The seeded inputs of a case, edge values included: the same on every device and every run. */
export function caseInputs(kernelCase: KernelCase): Float32Array[] {
  return kernelCase.inputs.map(makeInput)
}

async function runOnce(kernelCase: KernelCase, inputs: Float32Array[]): Promise<{ outputs: Float32Array[]; digest: Hash; ms: number }> {
  const started = performance.now()
  const tensors = kernelCase.inputs.map((spec, k) => tf.tensor(inputs[k]!, spec.shape, 'float32'))
  const results = tf.tidy(() => kernelCase.run(tensors))
  try {
    const outputs = await Promise.all(results.map(async (t) => Float32Array.from((await t.data()) as Float32Array)))
    const ms = performance.now() - started
    const digest = sha256Hex(encodeTensorList({ shapes: results.map((t) => t.shape), values: outputs }))
    return { outputs, digest, ms }
  } finally {
    tf.dispose([...tensors, ...results])
  }
}

/** The tolerance of a case under a bundle role. */
export function toleranceOf(caseName: string, role: string): Tolerance {
  const entry = TOLERANCES[caseName]
  if (!entry) throw new Error(`kernel case "${caseName}" has no entry in TOLERANCES`)
  return entry[role as BundleRole] ?? entry.any
}

/**
 * Runs every case under every bundle on the active tfjs backend (which should be `webgpu`), twice each.
 * Leaves the default bundle in place afterwards. Small inputs would otherwise be computed on the CPU
 * (tfjs-webgpu hands ops on CPU-resident tensors under WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD elements to its
 * CPU kernels), so the hand-off is switched off while the suite runs: every case measures the GPU kernel.
 */
export async function runKernelSuite(options: KernelSuiteOptions = {}): Promise<KernelCaseResult[]> {
  if (tf.getBackend() !== 'webgpu') throw new Error(`the kernel suite runs on tfjs's webgpu backend; the active one is ${tf.getBackend()}`)
  const bundles = options.bundles ?? knownKernelBundles()
  const cases = CASES.filter((c) => !options.only || options.only.some((part) => c.name.includes(part)))
  const handoff = tf.env().get('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD')
  tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', 0)
  const results: KernelCaseResult[] = []
  try {
    for (const bundleId of bundles) {
      activateKernelBundle(bundleId)
      const role = bundleRole(bundleId)
      for (const kernelCase of cases) {
        const tolerance = toleranceOf(kernelCase.name, role)
        const inputs = caseInputs(kernelCase)
        const first = await runOnce(kernelCase, inputs)
        const second = await runOnce(kernelCase, inputs)
        const maxError = caseMaxError(kernelCase, tolerance, inputs, first.outputs)
        const withinBound = maxError <= tolerance.bound
        const repeatable = first.digest === second.digest
        const result: KernelCaseResult = {
          name: kernelCase.name,
          kernels: kernelCase.kernels,
          bundle: role,
          bundleId,
          maxError,
          bound: tolerance.bound,
          unit: tolerance.unit,
          why: tolerance.why,
          withinBound,
          repeatable,
          passed: withinBound && repeatable,
          digest: first.digest,
          ms: Math.min(first.ms, second.ms),
        }
        results.push(result)
        options.onResult?.(result)
      }
    }
  } finally {
    tf.env().set('WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD', handoff)
    activateKernelBundle(KERNEL_BUNDLE)
  }
  return results
}

/** The results as the pinned-digest object's shape (kernelSuiteDigests.ts): role → case → digest. */
export function digestsByBundle(results: KernelCaseResult[]): Record<string, Record<string, Hash>> {
  const out: Record<string, Record<string, Hash>> = {}
  for (const r of results) (out[r.bundle] ??= {})[r.name] = r.digest
  return out
}

/** A plain-text table of results (for test logs). */
export function formatResults(results: KernelCaseResult[]): string {
  const rows = results.map((r) =>
    [r.passed ? 'ok  ' : 'FAIL', r.bundle.padEnd(7), r.name.padEnd(48), `${formatError(r.maxError)} / ${formatBound(r.bound)} ${r.unit}`.padEnd(34), r.digest.slice(0, 18), `${r.ms.toFixed(0)} ms`].join('  '),
  )
  return rows.join('\n')
}

/** A bound as written in TOLERANCES: powers of two below 1/64 as 2^-n. */
export function formatBound(x: number): string {
  const exponent = Math.log2(x)
  if (x > 0 && x < 1 / 64 && Number.isInteger(exponent)) return `2^${exponent}`
  return String(x)
}

export function formatError(x: number): string {
  if (x === 0) return '0'
  if (!Number.isFinite(x)) return String(x)
  return x >= 0.01 && x < 1000 ? x.toFixed(3) : x.toExponential(2)
}
