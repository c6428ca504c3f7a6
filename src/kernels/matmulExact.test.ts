import { createHash } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import {
  DEFAULT_EXACT_SCHEME,
  EXACT_MAX_K,
  ExactMatmulError,
  exactErrorBound,
  limbAt,
  mantissaBits,
  matmulExactReference,
  matmulF64,
  prepareA,
  roundToF32Bits,
  type ExactScheme,
} from './exactReference.ts'
import { acquireNodeGpu, isUnavailable } from './device.ts'
import { ExactMatmul, exactBundleId, exactMatmulWgsl, hasDot4 } from './matmulExact.ts'

// Dawn's `webgpu` package (SwiftShader where no other Vulkan driver is named). The returned object holds
// Dawn's GPU instance: if the garbage collector took it while the device lives, the process would abort.
const node = await acquireNodeGpu()
const device = isUnavailable(node) ? undefined : node.device
const dot4 = isUnavailable(node) ? false : hasDot4(node.gpu.wgslLanguageFeatures)
if (isUnavailable(node)) console.warn(`matmulExact GPU tests skipped: ${node.unavailable}`)
else console.info(`matmulExact GPU tests on ${node.info.vendor}/${node.info.architecture}, dot4I8Packed: ${dot4}`)
afterAll(async () => {
  if (!isUnavailable(node)) await node.release()
})

/** mulberry32: a seeded generator whose values are exact dyadic rationals (no transcendental functions),
 * so the inputs behind pinned digests are the same on every machine. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

/** Uniform in [-1, 1), float32-exact. */
function uniform(n: number, seed: number): Float32Array {
  const r = rng(seed)
  return Float32Array.from({ length: n }, () => r() * 2 - 1)
}

/** Signs and magnitudes spread over [2^-100, 2^100] (about 1e-30..1e30), by exact powers of two. */
function mixed(n: number, seed: number, span = 100): Float32Array {
  const r = rng(seed)
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * 2 ** Math.floor((r() * 2 - 1) * span))
}

const bitsOf = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer, x.byteOffset, x.length)
const sha256 = (x: Float32Array): string =>
  createHash('sha256').update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength)).digest('hex')

/** Index of the first output whose bits differ, or -1. */
function firstDifference(x: Float32Array, y: Float32Array): number {
  const a = bitsOf(x)
  const b = bitsOf(y)
  if (a.length !== b.length) return 0
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i
  return -1
}

/** Max of |C - C64| / (K · amax_i · bmax_j) and the count of bound violations, over finite normal results. */
function accuracy(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  k: number,
  n: number,
  scheme: ExactScheme,
): { maxScaled: number; maxRelToAbs: number; violations: number } {
  const exact = matmulF64(a, b, m, k, n)
  const absProduct = matmulF64(a.map(Math.abs), b.map(Math.abs), m, k, n)
  let maxScaled = 0
  let maxRelToAbs = 0
  let violations = 0
  for (let i = 0; i < m; i++) {
    let amax = 0
    for (let kk = 0; kk < k; kk++) amax = Math.max(amax, Math.abs(a[i * k + kk]!))
    for (let j = 0; j < n; j++) {
      let bmax = 0
      for (let kk = 0; kk < k; kk++) bmax = Math.max(bmax, Math.abs(b[kk * n + j]!))
      const x = exact[i * n + j]!
      const y = c[i * n + j]!
      if (Math.abs(x) > 3.4028234663852886e38 * (1 - 2 ** -25)) {
        if (y !== Math.sign(x) * Infinity && Math.abs(x) > 3.4028235677973366e38) violations++
        continue
      }
      const err = Math.abs(x - y)
      if (!(err <= exactErrorBound(scheme, k, amax, bmax, x))) violations++
      if (amax > 0 && bmax > 0) maxScaled = Math.max(maxScaled, err / (k * amax * bmax))
      const abs = absProduct[i * n + j]!
      if (abs > 0) maxRelToAbs = Math.max(maxRelToAbs, err / abs)
    }
  }
  return { maxScaled, maxRelToAbs, violations }
}

// [M, K, N]: the preset MLP's forward, a small head, a backward-like transposed product, odd sizes, K = 1.
const SHAPES: Array<readonly [number, number, number]> = [
  [32, 784, 64],
  [32, 64, 10],
  [784, 32, 64],
  [5, 13, 7],
  [3, 1, 4],
  [1, 6, 1],
]

// SHA-256 of the output bits of the fixed input below ([8x37]@[37x5], seeds 11/12, default scheme).
const PINNED = { m: 8, k: 37, n: 5, sha256: '34ea5950893d1c7b8c41ebc86dc752ba9f6e4620c13d79becccca47546c8de28' }
const pinnedInput = (): [Float32Array, Float32Array] => [uniform(8 * 37, 11), mixed(37 * 5, 12, 20)]

describe('exact matmul: CPU model', () => {
  it('mantissas split into limbs that add back up, within half a unit of the input', () => {
    const a = mixed(6 * 50, 1, 30)
    a[7] = 0
    a[8] = -0
    a[9] = 1e-40 // subnormal: flushed to zero
    for (const limbs of [1, 2, 3]) {
      const op = prepareA(a, 6, 50, limbs)
      const w = mantissaBits(limbs)
      for (let g = 0; g < 6; g++) {
        const e = op.exponents[g]!
        for (let kk = 0; kk < 50; kk++) {
          const mant = op.mantissas[g * 50 + kk]!
          let sum = 0
          for (let p = 0; p < limbs; p++) sum += limbAt(op, p, g, kk) * 256 ** p
          expect(sum).toBe(mant)
          expect(Math.abs(mant)).toBeLessThanOrEqual(2 ** w)
          const x = g * 50 + kk === 9 ? 0 : a[g * 50 + kk]!
          expect(Math.abs(x - mant * 2 ** (e - w + 1))).toBeLessThanOrEqual(2 ** (e - w))
        }
      }
    }
    expect(prepareA(a, 6, 50, 3).mantissas[9]).toBe(0)
  })

  it('rounds 64-bit sums to float32 like a single correct rounding', () => {
    const r = rng(5)
    for (let t = 0; t < 20000; t++) {
      // |S| < 2^53 and S · 2^x in the normal range: Math.fround of the exact double is the correct rounding.
      const s = BigInt(Math.floor((r() * 2 - 1) * 2 ** Math.floor(r() * 53)))
      const x = Math.floor(r() * 120) - 60
      const want = Math.fround(Number(s) * 2 ** x)
      const got = new Float32Array(new Uint32Array([roundToF32Bits(s, x)]).buffer)[0]!
      expect(Object.is(got, want === 0 ? 0 : want)).toBe(true)
    }
    // Ties go to even; results past the float32 range become infinities; below the normal range, +0.
    expect(roundToF32Bits((1n << 24n) + 1n, 0)).toBe(0x4b800000) // 2^24 + 1 -> 2^24
    expect(roundToF32Bits((1n << 24n) + 3n, 0)).toBe(0x4b800002) // 2^24 + 3 -> 2^24 + 4
    expect(roundToF32Bits(-1n, 128)).toBe(0xff800000)
    expect(roundToF32Bits(1n, -127)).toBe(0)
    expect(roundToF32Bits(-1n, -126)).toBe(0x80800000)
  })

  it('stays within the stated bound of the float64 product', () => {
    const scheme = DEFAULT_EXACT_SCHEME
    const cases: Array<[string, Float32Array, Float32Array, number, number, number]> = [
      ['uniform', uniform(16 * 300, 2), uniform(300 * 9, 3), 16, 300, 9],
      ['mixed', mixed(9 * 40, 4), mixed(40 * 6, 5, 20), 9, 40, 6],
    ]
    for (const [name, a, b, m, k, n] of cases) {
      const c = matmulExactReference(a, b, m, k, n, scheme)
      const acc = accuracy(a, b, c, m, k, n, scheme)
      console.info(`exact matmul ${name} ${m}x${k}x${n}: max |err|/(K·amax·bmax) = ${acc.maxScaled.toExponential(2)}, ` +
        `max |err|/(|A|@|B|) = ${acc.maxRelToAbs.toExponential(2)}`)
      expect(acc.violations).toBe(0)
    }
  })

  it('fewer limbs and dropped pairs stay within their own bounds', () => {
    const a = uniform(7 * 64, 6)
    const b = uniform(64 * 5, 7)
    for (const scheme of [{ limbs: 1, minPairOrder: 0 }, { limbs: 2, minPairOrder: 1 }, { limbs: 3, minPairOrder: 0 },
      { limbs: 3, minPairOrder: 2 }]) {
      const c = matmulExactReference(a, b, 7, 64, 5, scheme)
      expect(accuracy(a, b, c, 7, 64, 5, scheme).violations).toBe(0)
    }
  })

  it('pins the digest of a fixed input', () => {
    const [a, b] = pinnedInput()
    expect(sha256(matmulExactReference(a, b, PINNED.m, PINNED.k, PINNED.n))).toBe(PINNED.sha256)
  })

  it('rejects what it cannot do exactly, with ExactMatmulError', () => {
    const one = new Float32Array([1])
    expect(() => matmulExactReference(new Float32Array([Infinity]), one, 1, 1, 1)).toThrow(ExactMatmulError)
    expect(() => matmulExactReference(new Float32Array([NaN]), one, 1, 1, 1)).toThrow(ExactMatmulError)
    expect(() => matmulExactReference(one, one, 1, 2, 1)).toThrow(ExactMatmulError)
    const big = EXACT_MAX_K + 1
    expect(() => matmulExactReference(new Float32Array(big), new Float32Array(big), 1, big, 1)).toThrow(ExactMatmulError)
    expect(() => exactMatmulWgsl({ limbs: 4, minPairOrder: 0 }, true)).toThrow(ExactMatmulError)
    expect(exactBundleId()).toBe('exact-matmul/v1/limbs=3/minPairOrder=1')
  })
})

describe.skipIf(!device)('exact matmul: WebGPU kernel equals the CPU model bit for bit', () => {
  const dev = device as GPUDevice
  const kernel = () => new ExactMatmul(dev, { dot4 })

  it.each(SHAPES)('M=%i K=%i N=%i', async (m, k, n) => {
    const a = uniform(m * k, m * 1000 + k)
    const b = uniform(k * n, k * 1000 + n)
    const got = await kernel().run(a, b, m, k, n)
    expect(firstDifference(got, matmulExactReference(a, b, m, k, n))).toBe(-1)
  })

  it('2x2 blocks per invocation give the same bits', async () => {
    const blocked = new ExactMatmul(dev, { dot4, block: 2 })
    for (const [m, k, n] of [[5, 13, 7], [32, 64, 10], [784, 32, 64], [1, 6, 1]] as const) {
      const a = mixed(m * k, m + k, 20)
      const b = uniform(k * n, k + n)
      expect(firstDifference(await blocked.run(a, b, m, k, n), matmulExactReference(a, b, m, k, n))).toBe(-1)
    }
  })

  it('zero rows and columns, negatives, mixed magnitudes 1e-30..1e30 with overflow and underflow', async () => {
    const [m, k, n] = [9, 23, 11]
    const a = mixed(m * k, 21)
    const b = mixed(k * n, 22)
    a.fill(0, 2 * k, 3 * k) // row 2 all zero
    a.fill(-0, 5 * k, 6 * k) // row 5 all negative zero
    for (let kk = 0; kk < k; kk++) b[kk * n + 4] = 0 // column 4 all zero
    a[0] = 1e-42 // subnormal
    for (let t = 0; t < k; t++) a[7 * k + t] = -Math.abs(a[7 * k + t]!) // row 7 all negative
    const got = await kernel().run(a, b, m, k, n)
    const want = matmulExactReference(a, b, m, k, n)
    expect(firstDifference(got, want)).toBe(-1)
    const values = Array.from(got)
    expect(values.some((v) => !Number.isFinite(v))).toBe(true)
    expect(values.some((v) => v === 0)).toBe(true)
    for (let j = 0; j < n; j++) expect(Object.is(got[2 * n + j], 0) && Object.is(got[5 * n + j], 0)).toBe(true)
  })

  it('moderate mixed magnitudes: bit-exact and within the bound', async () => {
    const [m, k, n] = [12, 70, 9]
    const a = mixed(m * k, 31)
    const b = mixed(k * n, 32, 20)
    const got = await kernel().run(a, b, m, k, n)
    expect(firstDifference(got, matmulExactReference(a, b, m, k, n))).toBe(-1)
    expect(accuracy(a, b, got, m, k, n, DEFAULT_EXACT_SCHEME).violations).toBe(0)
  })

  it('the i32 fallback (no dot4I8Packed) and other schemes give the model\'s bits too', async () => {
    const [m, k, n] = [6, 45, 10]
    const a = mixed(m * k, 41, 10)
    const b = uniform(k * n, 42)
    for (const scheme of [{ limbs: 3, minPairOrder: 1 }, { limbs: 3, minPairOrder: 0 }, { limbs: 2, minPairOrder: 0 },
      { limbs: 1, minPairOrder: 0 }]) {
      const want = matmulExactReference(a, b, m, k, n, scheme)
      for (const useDot4 of dot4 ? [true, false] : [false]) {
        const got = await new ExactMatmul(dev, { ...scheme, dot4: useDot4 }).run(a, b, m, k, n)
        expect(firstDifference(got, want)).toBe(-1)
      }
    }
  })

  it('splits into limbs on the GPU exactly as the TypeScript preprocessing does', async () => {
    const [m, k, n] = [7, 29, 6]
    const a = mixed(m * k, 51)
    const b = mixed(k * n, 52)
    a[3] = 1e-41 // subnormal, flushed by both
    a.fill(0, k, 2 * k)
    b[5] = -3e-39
    const want = matmulExactReference(a, b, m, k, n)
    for (const scheme of [{ limbs: 3, minPairOrder: 1 }, { limbs: 2, minPairOrder: 0 }, { limbs: 1, minPairOrder: 0 }]) {
      const k3 = new ExactMatmul(dev, { ...scheme, dot4 })
      const model = matmulExactReference(a, b, m, k, n, scheme)
      expect(firstDifference(await k3.run(a, b, m, k, n, 'gpu'), model)).toBe(-1)
      expect(firstDifference(await k3.run(a, b, m, k, n, 'cpu'), model)).toBe(-1)
    }
    expect(firstDifference(await kernel().run(a, b, m, k, n, 'gpu'), want)).toBe(-1)
    const bad = a.slice()
    bad[10] = Infinity
    await expect(kernel().run(bad, b, m, k, n, 'gpu')).rejects.toThrow(ExactMatmulError)
    bad[10] = NaN
    await expect(kernel().run(bad, b, m, k, n, 'gpu')).rejects.toThrow(ExactMatmulError)
    await expect(kernel().run(a, b, m, k + 1, n)).rejects.toThrow(ExactMatmulError)
  })

  it('same inputs twice give the same bytes, and the pinned digest', async () => {
    const [a, b] = pinnedInput()
    const k1 = kernel()
    const job = k1.upload(a, b, PINNED.m, PINNED.k, PINNED.n)
    job.submit()
    const first = await job.read()
    job.submit()
    const second = await job.read()
    job.destroy()
    const third = await kernel().run(a, b, PINNED.m, PINNED.k, PINNED.n)
    expect(sha256(second)).toBe(sha256(first))
    expect(sha256(third)).toBe(sha256(first))
    expect(sha256(first)).toBe(PINNED.sha256)
  })
})
