import { afterAll, describe, expect, it } from 'vitest'
import { sha256Hex } from '../protocol/index.ts'
import { acquireNodeGpu, isUnavailable } from './device.ts'
import { runSoftFloat, softFloatWgsl, type SoftFloatOp } from './softFloat.ts'
import {
  canonicalBits,
  f32Bits,
  f32FromBits,
  sfAdd,
  sfDiv,
  sfExp,
  sfLog,
  sfMax,
  sfMul,
  sfNeg,
  sfRelu,
  sfSqrt,
  sfSub,
  ulpError,
} from './softFloatReference.ts'

const acquired = await acquireNodeGpu()
if (isUnavailable(acquired)) console.warn(`soft-float GPU tests skipped: ${acquired.unavailable}`)
const gpu = isUnavailable(acquired) ? null : acquired

afterAll(async () => {
  await gpu?.release()
})

/** A reproducible stream of u32 (xorshift32): the tests' inputs are the same on every run. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s
  }
}

/** Values where float arithmetic has its corner cases. */
const SPECIAL_BITS = [
  0x00000000, 0x80000000, // ±0
  0x00000001, 0x807fffff, 0x00400000, // subnormals
  0x00800000, 0x80800000, 0x00800001, 0x00ffffff, // smallest normals
  0x7f7fffff, 0xff7fffff, 0x7f000000, // largest
  0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, // Inf, NaN (quiet, signalling, negative)
  f32Bits(1), f32Bits(-1), f32Bits(2), f32Bits(0.5), f32Bits(3), f32Bits(1 / 3), f32Bits(Math.PI),
  f32Bits(1 + 2 ** -23), f32Bits(1 - 2 ** -24), f32Bits(2 ** -63), f32Bits(2 ** 63), f32Bits(1e-20), f32Bits(1e20),
  f32Bits(88.7), f32Bits(-87.3), f32Bits(-103), f32Bits(89), f32Bits(0.69314718), f32Bits(1.41421354), f32Bits(0.70710677),
]

function randomFloatBits(next: () => number, count: number): number[] {
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    // Half arbitrary bit patterns (every exponent, NaNs, subnormals), half moderate magnitudes.
    if (i % 2 === 0) out.push(next())
    else out.push((next() & 0x807fffff) | ((107 + (next() % 40)) << 23))
  }
  return out
}

interface Inputs {
  a: Uint32Array
  b: Uint32Array
}

/** Every pair of special values, random pairs, and near-cancelling pairs (b within a few ULPs of ±a). */
function binaryInputs(seed: number, randomCount: number): Inputs {
  const next = xorshift(seed)
  const a: number[] = []
  const b: number[] = []
  for (const x of SPECIAL_BITS) {
    for (const y of SPECIAL_BITS) {
      a.push(x)
      b.push(y)
    }
  }
  const xs = randomFloatBits(next, randomCount)
  const ys = randomFloatBits(next, randomCount)
  for (let i = 0; i < randomCount; i++) {
    a.push(xs[i]!)
    b.push(ys[i]!)
    // Close magnitudes: cancellation in add/sub, quotients near 1, products near the rounding boundary.
    a.push(xs[i]!)
    b.push(((xs[i]! + (next() % 64) - 32) ^ (next() & 0x80000000)) >>> 0)
    // Results that land near the subnormal boundary.
    a.push(((next() & 0x807fffff) | ((1 + (next() % 20)) << 23)) >>> 0)
    b.push(((next() & 0x807fffff) | ((100 + (next() % 60)) << 23)) >>> 0)
  }
  return { a: new Uint32Array(a), b: new Uint32Array(b) }
}

function unaryInputs(seed: number, randomCount: number, extra: number[] = []): Uint32Array {
  return new Uint32Array([...SPECIAL_BITS, ...extra, ...randomFloatBits(xorshift(seed), randomCount)])
}

const binaryModels: Record<string, (a: number, b: number) => number> = { add: sfAdd, sub: sfSub, mul: sfMul, div: sfDiv, max: sfMax }
const unaryModels: Record<string, (a: number) => number> = { sqrt: sfSqrt, exp: sfExp, log: sfLog, neg: sfNeg, relu: sfRelu }

function hex(x: number): string {
  return `0x${(x >>> 0).toString(16).padStart(8, '0')}`
}

/** Indices where the GPU's bits differ from the model's, described for the failure message. */
function mismatches(op: string, got: Uint32Array, expected: (i: number) => number, describe: (i: number) => string): string[] {
  const out: string[] = []
  for (let i = 0; i < got.length && out.length < 8; i++) {
    const want = expected(i)
    if (got[i] !== want) out.push(`${op}(${describe(i)}): got ${hex(got[i]!)}, model ${hex(want)}`)
  }
  return out
}

describe('the soft-float library without a GPU', () => {
  it('the WGSL text is pinned: a change to the arithmetic changes this digest and the exact bundle id', () => {
    // Update deliberately, together with every pinned exact-mode hash, when the arithmetic changes.
    expect(sha256Hex(new TextEncoder().encode(softFloatWgsl())).slice(2, 18)).toBe('236ccf1430b6ab17')
  })

  it('models IEEE float32 with flush to +0: subnormal and negative-zero results read as +0', () => {
    expect(canonicalBits(sfMul(2 ** -70, 2 ** -70))).toBe(0)
    expect(canonicalBits(sfMul(-1, 0))).toBe(0)
    expect(canonicalBits(sfAdd(f32FromBits(0x00000001), 1))).toBe(f32Bits(1))
    expect(canonicalBits(sfDiv(1, 3))).toBe(f32Bits(1 / 3))
    expect(canonicalBits(sfSqrt(-1))).toBe(0x7fc00000)
    // (1 − 2^-24)·2^-126 lies halfway between the largest subnormal and 2^-126 on IEEE's grid, so it rounds
    // (to even) up to 2^-126; flushing before rounding would give +0.
    expect(canonicalBits(sfMul(f32FromBits(0x3f7fffff), f32FromBits(0x00800000)))).toBe(0x00800000)
  })

  it('exp and log stay within 2 ULP of float64 on normal results (model only)', () => {
    const next = xorshift(7)
    let worstExp = 0
    let worstLog = 0
    for (let i = 0; i < 200_000; i++) {
      const x = f32FromBits((next() & 0x807fffff) | ((100 + (next() % 34)) << 23))
      const e = Math.exp(x)
      if (e > 2 ** -126 && e < 3.4e38) worstExp = Math.max(worstExp, ulpError(sfExp(x), e))
      const y = Math.abs(f32FromBits(next()))
      if (y >= 2 ** -126 && Number.isFinite(y)) worstLog = Math.max(worstLog, ulpError(sfLog(y), Math.log(y)))
    }
    console.log(`soft-float accuracy against float64: exp ${worstExp.toFixed(3)} ULP, log ${worstLog.toFixed(3)} ULP (max over 200k)`)
    expect(worstExp).toBeLessThanOrEqual(2)
    expect(worstLog).toBeLessThanOrEqual(2)
  })
})

describe.skipIf(gpu === null)('the soft-float library on WebGPU (Node, Dawn) gives the model\'s bits', () => {
  for (const op of Object.keys(binaryModels) as SoftFloatOp[]) {
    it(`${op}: every special pair and 30k random and near-cancelling pairs, bit for bit`, async () => {
      const { a, b } = binaryInputs(op.length * 7919, 10_000)
      const got = await runSoftFloat(gpu!.device, op, a, b)
      const model = binaryModels[op]!
      const bad = mismatches(op, got, (i) => canonicalBits(model(f32FromBits(a[i]!), f32FromBits(b[i]!))), (i) => `${hex(a[i]!)}, ${hex(b[i]!)}`)
      expect(bad, bad.join('\n')).toEqual([])
    })
  }

  for (const op of Object.keys(unaryModels) as SoftFloatOp[]) {
    it(`${op}: special values and 50k random values, bit for bit`, async () => {
      const extra: number[] = []
      // exp near the overflow and flush limits; log near 1 (where its relative error is hardest).
      for (let i = -200; i <= 200; i++) extra.push(f32Bits(88.72 + i * 1e-4), f32Bits(-87.33 + i * 1e-4), f32Bits(1 + i * 2 ** -20))
      const a = unaryInputs(op.length * 104729, 50_000, extra)
      const got = await runSoftFloat(gpu!.device, op, a)
      const model = unaryModels[op]!
      const bad = mismatches(op, got, (i) => canonicalBits(model(f32FromBits(a[i]!))), (i) => hex(a[i]!))
      expect(bad, bad.join('\n')).toEqual([])
    })
  }
})
