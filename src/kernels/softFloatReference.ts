/**
 * The CPU model of `softFloat.ts`, bit for bit, and float64 references to state its accuracy.
 *
 * The model leans on one fact: a float32 `+ - * / sqrt` computed in float64 and rounded once to float32
 * (Math.fround) is the correctly rounded float32 result, because float64 has 53 ≥ 2·24 + 2 bits of
 * significand (double rounding is innocuous for these operations). So each soft-float operation is
 * `canonical(Math.fround(canonical(a) op canonical(b)))`, and `sfExp` / `sfLog` are the same sequences of
 * those operations as the WGSL.
 */
import {
  EXP_FLUSH_BELOW,
  EXP_OVERFLOW_ABOVE,
  expCoefficients,
  LN2_HI,
  LN2_LO,
  logCoefficients,
  SQRT2_MANTISSA_FIELD,
} from './softFloat.ts'

const scratch = new Float32Array(1)
const scratchBits = new Uint32Array(scratch.buffer)

/** The float32 bits of a number (rounded to float32 first). */
export function f32Bits(x: number): number {
  scratch[0] = x
  return scratchBits[0]!
}

/** The number a float32 bit pattern holds. */
export function f32FromBits(bits: number): number {
  scratchBits[0] = bits >>> 0
  return scratch[0]!
}

const MIN_NORMAL = 2 ** -126

/** The canonical reading: subnormals and zeros are +0, every NaN is NaN (written as 0x7fc00000). */
export function canonicalF32(x: number): number {
  const v = Math.fround(x)
  if (Number.isNaN(v)) return NaN
  if (Math.abs(v) < MIN_NORMAL) return 0
  return v
}

const c = canonicalF32

export const sfAdd = (a: number, b: number): number => c(Math.fround(c(a) + c(b)))
export const sfSub = (a: number, b: number): number => c(Math.fround(c(a) - c(b)))
export const sfMul = (a: number, b: number): number => c(Math.fround(c(a) * c(b)))
export const sfDiv = (a: number, b: number): number => c(Math.fround(c(a) / c(b)))
export const sfSqrt = (a: number): number => c(Math.fround(Math.sqrt(c(a))))
export const sfNeg = (a: number): number => (c(a) === 0 ? 0 : -c(a))
export const sfRelu = (a: number): number => (Number.isNaN(c(a)) ? NaN : c(a) < 0 ? 0 : c(a))
export const sfMax = (a: number, b: number): number => (Number.isNaN(c(a)) || Number.isNaN(c(b)) ? NaN : Math.max(c(a), c(b)))

function roundHalfAwayFromZero(x: number): number {
  return Math.sign(x) * Math.floor(Math.abs(x) + 0.5)
}

export function sfExp(x: number): number {
  const a = c(x)
  if (Number.isNaN(a)) return NaN
  if (a === Infinity) return Infinity
  if (a === -Infinity) return 0
  if (a > Math.fround(EXP_OVERFLOW_ABOVE)) return Infinity
  if (a < Math.fround(EXP_FLUSH_BELOW)) return 0
  const n = roundHalfAwayFromZero(sfMul(a, Math.LOG2E))
  const r = sfSub(sfSub(a, sfMul(n, LN2_HI)), sfMul(n, LN2_LO))
  const [first, ...rest] = expCoefficients()
  let p = Math.fround(first!)
  for (const k of rest) p = sfAdd(sfMul(p, r), k)
  const y = sfAdd(1, sfAdd(r, sfMul(sfMul(r, r), p)))
  // Scaling by 2^n is exact while the result stays normal; below 2^-126 it is +0, past the range infinite.
  const scaled = y * 2 ** n
  if (Math.abs(scaled) < MIN_NORMAL) return 0
  if (Math.abs(scaled) > 3.4028234663852886e38) return Infinity
  return scaled
}

export function sfLog(x: number): number {
  const a = c(x)
  if (Number.isNaN(a)) return NaN
  if (a === 0) return -Infinity
  if (a < 0) return NaN
  if (a === Infinity) return Infinity
  const bits = f32Bits(a)
  let k = ((bits >>> 23) & 0xff) - 127
  let m = f32FromBits((bits & 0x7fffff) | 0x3f800000)
  if ((bits & 0x7fffff) > SQRT2_MANTISSA_FIELD) {
    m /= 2
    k += 1
  }
  const f = sfSub(m, 1)
  const s = sfDiv(f, sfAdd(2, f))
  const z = sfMul(s, s)
  const [first, ...rest] = logCoefficients()
  let p = Math.fround(first!)
  for (const k2 of rest) p = sfAdd(sfMul(p, z), k2)
  const twoS = sfAdd(s, s)
  const log1p = sfAdd(twoS, sfMul(sfMul(twoS, z), p))
  if (k === 0) return log1p
  return sfAdd(sfMul(k, LN2_HI), sfAdd(sfMul(k, LN2_LO), log1p))
}

/** The canonical bits a soft-float result is written with (NaN as 0x7fc00000). */
export function canonicalBits(x: number): number {
  return Number.isNaN(x) ? 0x7fc00000 : f32Bits(c(x))
}

/**
 * Distance in float32 units in the last place between a float32 result and a float64 reference, measured
 * in the reference's binade (so 0.5 means correctly rounded).
 */
export function ulpError(result: number, reference: number): number {
  if (Number.isNaN(result) || Number.isNaN(reference)) return Number.isNaN(result) && Number.isNaN(reference) ? 0 : Infinity
  if (!Number.isFinite(reference) || !Number.isFinite(result)) return result === reference ? 0 : Infinity
  const magnitude = Math.max(Math.abs(reference), MIN_NORMAL)
  const ulp = 2 ** (Math.floor(Math.log2(magnitude)) - 23)
  return Math.abs(result - reference) / ulp
}
