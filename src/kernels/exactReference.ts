/**
 * Exact-mode matmul (Ozaki-style integer limbs): the operand preprocessing in TypeScript (the GPU does the
 * same in `exactPrepWgsl`; tests hold both to the same bits) and a CPU model of the whole algorithm that the
 * WGSL kernel in `matmulExact.ts` must match bit for bit. The model takes a different route to the same numbers on purpose (BigInt sums, BigInt rounding),
 * so that a shared mistake in the GPU's 64-bit emulation or its rounding cannot hide.
 *
 * The scheme, for C = A @ B with A [M,K] and B [K,N] float32:
 * - Each row i of A gets the exponent e_i = max over the row of the unbiased exponent of |a_ik| (read from
 *   the bits, no float arithmetic); each column j of B likewise f_j.
 * - Every element becomes an integer mantissa m = RNE(a · 2^(W-1-e)), W = 8·L - 2 for L limbs, so
 *   |m| <= 2^W. (W = 8L-1 would not fit: L signed 8-bit limbs reach only 127·(256^L-1)/255 < 2^(8L-1).)
 *   Subnormal inputs are flushed to zero here, explicitly: WGSL lets implementations flush them, so no
 *   result may depend on them. Inf and NaN are rejected (ExactMatmulError).
 * - m is split into L balanced base-256 digits in [-128, 127]: m = sum_p d_p · 256^p.
 * - For each kept limb pair (p, q), P_pq[i,j] = sum_k dA_p[i,k] · dB_q[k,j] is summed exactly in i32:
 *   |d_p · d_q| <= 2^14, so K <= 2^16 keeps |P_pq| <= 2^30 < 2^31.
 * - S = sum_pq P_pq · 2^(8(p+q)) is an exact signed 64-bit integer (|S| <= K · 2^(2W) = 2^60 for L = 3
 *   and K = 2^16), and C_ij = S · 2^(e_i + f_j - 2(W-1)) rounded once to float32, round-to-nearest-even.
 *   Results below the normal range become +0 (flush, as for inputs); above it, ±Inf. Every zero is +0.
 * - Pairs with p + q < minPairOrder are dropped (the low-order ones: cheaper, less accurate).
 *
 * Error bound (per output, against exact real arithmetic on the float32 inputs; amax_i = max_k |a_ik|,
 * bmax_j = max_k |b_kj|): each mantissa is off by at most 2^-W · amax (half a unit of 2^(e-W+1)), a dropped
 * pair adds at most 2^14 · 2^(8(p+q)) units of 2^(e+f-2W+2) per k, and the final rounding 2^-24 relative:
 *   |C - Ĉ| <= K · amax_i · bmax_j · (2^(1-W) + 2^-2W + drop) + 2^-24 · |C| (+ 2^-126 for a flushed result).
 * See `exactErrorBound`.
 */

export class ExactMatmulError extends Error {
  override readonly name = 'ExactMatmulError'
}

/** Largest K: keeps every limb-pair sum inside i32 (K · 128 · 128 <= 2^30). */
export const EXACT_MAX_K = 1 << 16

export interface ExactScheme {
  /** Number of signed 8-bit limbs per mantissa (1..3; 3 limbs = 22-bit mantissas, W = 22). */
  readonly limbs: number
  /** Limb pairs (p, q) with p + q < minPairOrder are dropped (0 keeps all L^2 pairs). */
  readonly minPairOrder: number
}

/** Default: 3 limbs (22-bit mantissas) and every pair but (0, 0), whose share is below 2^-28 of amax·bmax
 * per k, far under the 2^-21 that the mantissa rounding already costs. */
export const DEFAULT_EXACT_SCHEME: ExactScheme = { limbs: 3, minPairOrder: 1 }

export function mantissaBits(limbs: number): number {
  return 8 * limbs - 2
}

export function checkScheme(scheme: ExactScheme): void {
  const { limbs, minPairOrder } = scheme
  // 4 limbs (W = 30) would need |S| <= K · 2^60, past 64 bits for any useful K.
  if (!Number.isInteger(limbs) || limbs < 1 || limbs > 3) {
    throw new ExactMatmulError(`limbs must be 1, 2 or 3, got ${limbs}`)
  }
  if (!Number.isInteger(minPairOrder) || minPairOrder < 0 || minPairOrder > 2 * (limbs - 1)) {
    throw new ExactMatmulError(`minPairOrder must be an integer in [0, ${2 * (limbs - 1)}], got ${minPairOrder}`)
  }
}

/** The limb pairs the scheme keeps, most significant first (a fixed order; integer sums ignore it anyway). */
export function keptPairs(scheme: ExactScheme): Array<readonly [number, number]> {
  const pairs: Array<readonly [number, number]> = []
  for (let p = scheme.limbs - 1; p >= 0; p--) {
    for (let q = scheme.limbs - 1; q >= 0; q--) {
      if (p + q >= scheme.minPairOrder) pairs.push([p, q])
    }
  }
  return pairs
}

export function checkShape(m: number, k: number, n: number, aLength: number, bLength: number): void {
  for (const [name, v] of [['M', m], ['K', k], ['N', n]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new ExactMatmulError(`${name} must be a positive integer, got ${v}`)
  }
  if (k > EXACT_MAX_K) throw new ExactMatmulError(`K = ${k} exceeds ${EXACT_MAX_K}: limb sums could overflow i32`)
  if (aLength !== m * k) throw new ExactMatmulError(`A has ${aLength} elements, expected ${m}x${k}`)
  if (bLength !== k * n) throw new ExactMatmulError(`B has ${bLength} elements, expected ${k}x${n}`)
}

/**
 * One operand in limb form. `groups` are A's rows or B's columns; `packed` holds, for limb p, group g and
 * word w, the four signed bytes of elements 4w..4w+3 along K (element 4w in the low byte, as `pack4xI8`
 * lays them out), zero-padded past K: index (p · groups + g) · kWords + w.
 */
export interface ExactOperand {
  readonly groups: number
  readonly k: number
  readonly kWords: number
  /** Shared exponent per group (unbiased; 0 for an all-zero group, whose mantissas are all 0). */
  readonly exponents: Int32Array
  readonly packed: Uint32Array
  /** The integer mantissas, [groups, k], for the CPU model and tests. */
  readonly mantissas: Int32Array
}

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** Round-to-nearest-even of s / 2^r for a non-negative integer s < 2^31 and r >= 0, in exact double math. */
function rneShift(s: number, r: number): number {
  if (r === 0) return s
  if (r >= 32) return 0
  const unit = 2 ** r
  const q = Math.floor(s / unit)
  const rem = s - q * unit
  const half = unit / 2
  if (rem > half || (rem === half && q % 2 === 1)) return q + 1
  return q
}

/**
 * Splits an operand into limbs. `value(g, k)` gives element k of group g (a row of A or a column of B).
 * Integer and bit operations only; every intermediate is an integer below 2^31, exact in a double.
 */
export function prepareOperand(
  groups: number,
  k: number,
  value: (g: number, k: number) => number,
  limbs: number,
): ExactOperand {
  const w = mantissaBits(limbs)
  const kWords = Math.ceil(k / 4)
  const exponents = new Int32Array(groups)
  const mantissas = new Int32Array(groups * k)
  const packed = new Uint32Array(limbs * groups * kWords)
  const expField = new Int32Array(k)
  const sig = new Int32Array(k)
  const neg = new Uint8Array(k)
  for (let g = 0; g < groups; g++) {
    let maxE = -1 // biased exponent field; -1 = no nonzero normal element
    for (let kk = 0; kk < k; kk++) {
      f32[0] = value(g, kk)
      const bits = u32[0]!
      const ef = (bits >>> 23) & 0xff
      if (ef === 0xff) throw new ExactMatmulError(`non-finite input (group ${g}, k ${kk})`)
      expField[kk] = ef
      // Subnormals (field 0) flush to zero: their significand is ignored.
      sig[kk] = ef === 0 ? 0 : (bits & 0x7fffff) | 0x800000
      neg[kk] = bits >>> 31
      if (ef !== 0 && ef > maxE) maxE = ef
    }
    const e = maxE < 0 ? 0 : maxE - 127
    exponents[g] = e
    for (let kk = 0; kk < k; kk++) {
      const s = sig[kk]!
      let m = 0
      if (s !== 0) {
        // a = s · 2^(E-23), m = a · 2^(W-1-e) = s · 2^(E - e + W - 24)
        const shift = expField[kk]! - 127 - e + w - 24
        m = shift >= 0 ? s * 2 ** shift : rneShift(s, -shift)
        if (neg[kk]) m = -m
      }
      mantissas[g * k + kk] = m
      let rest = m
      for (let p = 0; p < limbs; p++) {
        let d = ((rest % 256) + 256) % 256
        if (d >= 128) d -= 256
        rest = (rest - d) / 256
        const idx = (p * groups + g) * kWords + (kk >> 2)
        packed[idx] = (packed[idx]! | ((d & 0xff) << (8 * (kk & 3)))) >>> 0
      }
      if (rest !== 0) throw new ExactMatmulError(`internal: mantissa ${m} does not fit ${limbs} limbs`)
    }
  }
  return { groups, k, kWords, exponents, packed, mantissas }
}

export function prepareA(a: Float32Array, m: number, k: number, limbs: number): ExactOperand {
  return prepareOperand(m, k, (i, kk) => a[i * k + kk]!, limbs)
}

export function prepareB(b: Float32Array, k: number, n: number, limbs: number): ExactOperand {
  return prepareOperand(n, k, (j, kk) => b[kk * n + j]!, limbs)
}

/** Signed limb p of element (g, kk), read back from the packed words. */
export function limbAt(op: ExactOperand, p: number, g: number, kk: number): number {
  const word = op.packed[(p * op.groups + g) * op.kWords + (kk >> 2)]!
  return ((word >>> (8 * (kk & 3))) << 24) >> 24
}

/** float32 bits of S · 2^x, rounded to nearest even; +0 for zero and for results below 2^-126. */
export function roundToF32Bits(s: bigint, x: number): number {
  if (s === 0n) return 0
  const negative = s < 0n
  const mag = negative ? -s : s
  const pos = mag.toString(2).length - 1
  let sig: bigint
  if (pos > 23) {
    const sh = BigInt(pos - 23)
    sig = mag >> sh
    const rem = mag - (sig << sh)
    const half = 1n << (sh - 1n)
    if (rem > half || (rem === half && (sig & 1n) === 1n)) sig += 1n
  } else {
    sig = mag << BigInt(23 - pos)
  }
  let exp = pos + x
  if (sig === 1n << 24n) {
    sig >>= 1n
    exp += 1
  }
  const biased = exp + 127
  if (biased <= 0) return 0
  const sign = negative ? 0x80000000 : 0
  if (biased >= 255) return (sign | 0x7f800000) >>> 0
  return (sign | (biased << 23) | (Number(sig) & 0x7fffff)) >>> 0
}

/** The CPU model of the exact kernel: the same bits the GPU must produce. */
export function matmulExactReference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  scheme: ExactScheme = DEFAULT_EXACT_SCHEME,
): Float32Array {
  checkScheme(scheme)
  checkShape(m, k, n, a.length, b.length)
  const w = mantissaBits(scheme.limbs)
  const A = prepareA(a, m, k, scheme.limbs)
  const B = prepareB(b, k, n, scheme.limbs)
  const pairs = keptPairs(scheme)
  // Unpacked limbs, [limb][group][k], so the inner loop is plain integer multiply-adds.
  const unpack = (op: ExactOperand): Int32Array[] =>
    Array.from({ length: scheme.limbs }, (_, p) => {
      const out = new Int32Array(op.groups * k)
      for (let g = 0; g < op.groups; g++) for (let kk = 0; kk < k; kk++) out[g * k + kk] = limbAt(op, p, g, kk)
      return out
    })
  const al = unpack(A)
  const bl = unpack(B)
  const bits = new Uint32Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0n
      for (const [p, q] of pairs) {
        const ap = al[p]!
        const bq = bl[q]!
        let acc = 0 // |acc| <= K · 2^14 <= 2^30: exact in a double
        for (let kk = 0; kk < k; kk++) acc += ap[i * k + kk]! * bq[j * k + kk]!
        s += BigInt(acc) << BigInt(8 * (p + q))
      }
      bits[i * n + j] = roundToF32Bits(s, A.exponents[i]! + B.exponents[j]! - 2 * (w - 1))
    }
  }
  return new Float32Array(bits.buffer)
}

/** Plain float64 matmul of the float32 inputs, for accuracy checks. */
export function matmulF64(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let kk = 0; kk < k; kk++) {
      const av = a[i * k + kk]!
      if (av === 0) continue
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + av * b[kk * n + j]!
    }
  }
  return c
}

/**
 * The stated error bound for output (i, j) against the float64 product (see the module comment), given
 * amax_i and bmax_j (max |.| over the row of A and the column of B). A small float64 slack covers the
 * float64 reference's own rounding.
 */
export function exactErrorBound(
  scheme: ExactScheme,
  k: number,
  amax: number,
  bmax: number,
  exact: number,
): number {
  const w = mantissaBits(scheme.limbs)
  let drop = 0
  for (let p = 0; p < scheme.limbs; p++) {
    for (let q = 0; q < scheme.limbs; q++) {
      if (p + q < scheme.minPairOrder) drop += 2 ** 14 * 2 ** (8 * (p + q))
    }
  }
  // A mantissa unit is 2^(e-W+1) <= amax · 2^(1-W) (amax >= 2^e), so rounding costs half of it per element;
  // a product of two rounded elements is off by at most amax·bmax·(2^-W + 2^-W + 2^-2W).
  const perK = 2 ** (1 - w) + 2 ** (-2 * w) + drop * 2 ** (2 - 2 * w)
  return k * amax * bmax * perK * (1 + 1e-9) + 2 ** -24 * Math.abs(exact) * (1 + 1e-9) + 2 ** -126
}
