/**
 * CPU references for the kernels: float64 results to bound a kernel's error, and a float32 emulation of
 * the deterministic kernel's exact summation order (to see whether an implementation contracts
 * multiply-adds; informational, since WGSL allows it).
 */
import type { MatMulActivation } from './matmulDeterministic.ts'

export interface MatMulOperands {
  a: Float32Array
  b: Float32Array
  bias?: Float32Array
  batchA: number
  batchB: number
  m: number
  n: number
  k: number
  transposeA: boolean
  transposeB: boolean
  activation: MatMulActivation
}

/** 2^-24: unit roundoff of float32 round-to-nearest. */
export const F32_UNIT_ROUNDOFF = 2 ** -24

function at(x: MatMulOperands, batch: number) {
  const baseA = x.batchA === 1 ? 0 : batch * x.m * x.k
  const baseB = x.batchB === 1 ? 0 : batch * x.k * x.n
  const aAt = (row: number, k: number) => x.a[baseA + (x.transposeA ? k * x.m + row : row * x.k + k)]!
  const bAt = (k: number, col: number) => x.b[baseB + (x.transposeB ? col * x.k + k : k * x.n + col)]!
  return { aAt, bAt }
}

function batchOf(x: MatMulOperands): number {
  return Math.max(x.batchA, x.batchB)
}

export interface MatMulReference {
  /** The exact result rounded once to float64 per output (plenty against float32 errors). */
  value: Float64Array
  /**
   * Allowed |kernel − value| per output: (K + 2) · 2^-23 · (Σ_k |a_k b_k| + |bias|). A float32 sum of K
   * rounded products in any order, with or without fused multiply-adds, then one rounded bias add, errs
   * by at most γ_{K+2} · (Σ|a b| + |bias|) with γ_n = n·u/(1 − n·u), u = 2^-24 (Higham, Accuracy and
   * Stability, §3.1); 2^-23 instead of 2^-24 covers the 1/(1 − n·u) factor for any K below 2^22. ReLU is
   * 1-Lipschitz, so it cannot enlarge an error.
   */
  bound: Float64Array
}

export function matmulReference(x: MatMulOperands): MatMulReference {
  const batch = batchOf(x)
  const size = batch * x.m * x.n
  const value = new Float64Array(size)
  const bound = new Float64Array(size)
  const factor = (x.k + 2) * 2 * F32_UNIT_ROUNDOFF
  for (let t = 0; t < batch; t++) {
    const { aAt, bAt } = at(x, t)
    for (let row = 0; row < x.m; row++) {
      for (let col = 0; col < x.n; col++) {
        let sum = 0
        let magnitude = 0
        for (let k = 0; k < x.k; k++) {
          const p = aAt(row, k) * bAt(k, col)
          sum += p
          magnitude += Math.abs(p)
        }
        if (x.bias) {
          sum += x.bias[col]!
          magnitude += Math.abs(x.bias[col]!)
        }
        const i = (t * x.m + row) * x.n + col
        value[i] = x.activation === 'relu' && sum < 0 ? 0 : sum
        bound[i] = factor * magnitude
      }
    }
  }
  return { value, bound }
}

/**
 * The deterministic kernel's arithmetic in float32, unfused: acc = fl(acc + fl(a·b)) for k = 0..K-1,
 * then fl(acc + bias), then relu. Equal bits to the GPU mean the implementation neither fused nor
 * reassociated.
 */
export function matmulF32Sequential(x: MatMulOperands): Float32Array {
  const batch = batchOf(x)
  const out = new Float32Array(batch * x.m * x.n)
  const f = Math.fround
  for (let t = 0; t < batch; t++) {
    const { aAt, bAt } = at(x, t)
    for (let row = 0; row < x.m; row++) {
      for (let col = 0; col < x.n; col++) {
        let acc = 0
        for (let k = 0; k < x.k; k++) acc = f(acc + f(aAt(row, k) * bAt(k, col)))
        if (x.bias) acc = f(acc + x.bias[col]!)
        out[(t * x.m + row) * x.n + col] = x.activation === 'relu' && acc < 0 ? 0 : acc
      }
    }
  }
  return out
}

export interface ErrorReport {
  maxAbs: number
  /** Largest |actual − ref| / |ref| over outputs with |ref| > 0. */
  maxRel: number
  /** Largest error as a fraction of its bound: ≤ 1 means within the bound everywhere. */
  maxBoundRatio: number
  /** Outputs whose error exceeds their bound, or that are not finite where the reference is. */
  violations: number
}

export function compareWithReference(actual: ArrayLike<number>, ref: MatMulReference): ErrorReport {
  let maxAbs = 0
  let maxRel = 0
  let maxBoundRatio = 0
  let violations = 0
  for (let i = 0; i < ref.value.length; i++) {
    const r = ref.value[i]!
    const err = Math.abs(actual[i]! - r)
    if (!(err <= ref.bound[i]!)) violations++
    if (err > maxAbs) maxAbs = err
    if (r !== 0 && err / Math.abs(r) > maxRel) maxRel = err / Math.abs(r)
    const ratio = ref.bound[i]! > 0 ? err / ref.bound[i]! : err > 0 ? Infinity : 0
    if (ratio > maxBoundRatio) maxBoundRatio = ratio
  }
  return { maxAbs, maxRel, maxBoundRatio, violations }
}

/** Deterministic test data in [-1, 1): xorshift32 from a seed, so pinned digests stay valid. */
export function seededFloats(count: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1
  const out = new Float32Array(count)
  for (let i = 0; i < count; i++) {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    out[i] = s / 2 ** 31 - 1
  }
  return out
}
