import { describe, expect, it } from 'vitest'
import { formatDeviceClass } from './deviceClass.ts'
import { seededU32Stream, unitExampleIndices } from './exampleIndices.ts'
import type { Hash } from './hash.ts'

const jobId = `0x${'11'.repeat(32)}` as Hash
const base = { jobId, seed: 7, round: 0, unit: 0, count: 8, datasetSize: 8000 }
const list = (params: Partial<typeof base>) => Array.from(unitExampleIndices({ ...base, ...params }))

describe('unitExampleIndices', () => {
  it('pins the first values for fixed parameters (a verifier must read the same batches)', () => {
    expect(list({})).toEqual([3854, 4281, 4469, 1906, 7234, 6731, 2840, 5344])
    expect(list({ round: 1, unit: 2 })).toEqual([1354, 4707, 3869, 7072, 891, 1807, 5274, 6189])
  })

  it('is deterministic', () => {
    const params = { ...base, count: 1000 }
    expect(unitExampleIndices(params)).toEqual(unitExampleIndices(params))
  })

  it('a longer draw starts with the shorter one', () => {
    expect(list({ count: 100 }).slice(0, 8)).toEqual(list({}))
  })

  it('differs across unit, round, seed and job', () => {
    const reference = list({ count: 32 })
    const others = [
      list({ count: 32, unit: 1 }),
      list({ count: 32, round: 1 }),
      list({ count: 32, seed: 8 }),
      list({ count: 32, jobId: `0x${'12'.repeat(32)}` as Hash }),
      // The label is `<round>/<unit>`: swapping them must not collide.
      list({ count: 32, round: 1, unit: 0 }),
      list({ count: 32, round: 0, unit: 1 }),
    ]
    for (const other of others) expect(other).not.toEqual(reference)
    expect(list({ count: 32, round: 1, unit: 2 })).not.toEqual(list({ count: 32, round: 2, unit: 1 }))
  })

  it('stays within [0, datasetSize) and covers the range roughly uniformly', () => {
    const datasetSize = 10
    const draws = unitExampleIndices({ ...base, count: 20_000, datasetSize })
    expect(draws).toBeInstanceOf(Uint32Array)
    expect(draws).toHaveLength(20_000)
    const counts = new Array<number>(datasetSize).fill(0)
    for (const i of draws) {
      expect(i).toBeLessThan(datasetSize)
      counts[i]! += 1
    }
    for (const c of counts) {
      expect(c).toBeGreaterThan(1700)
      expect(c).toBeLessThan(2300)
    }
  })

  it('works for large and odd data set sizes', () => {
    for (const datasetSize of [1, 3, 60_000, 10_000_000]) {
      const draws = unitExampleIndices({ ...base, count: 500, datasetSize })
      expect(Math.max(...draws)).toBeLessThan(datasetSize)
      if (datasetSize === 1) expect(new Set(draws)).toEqual(new Set([0]))
      else expect(new Set(draws).size).toBeGreaterThan(1)
    }
  })

  it('returns an empty array for count 0 and rejects an empty data set', () => {
    expect(unitExampleIndices({ ...base, count: 0 })).toHaveLength(0)
    expect(() => unitExampleIndices({ ...base, datasetSize: 0 })).toThrow(RangeError)
  })
})

describe('seededU32Stream', () => {
  it('is a deterministic stream of u32 values per label', () => {
    const a = seededU32Stream('label')
    const b = seededU32Stream('label')
    const c = seededU32Stream('label2')
    const xs = Array.from({ length: 64 }, () => a())
    expect(Array.from({ length: 64 }, () => b())).toEqual(xs)
    expect(Array.from({ length: 64 }, () => c())).not.toEqual(xs)
    for (const x of xs) {
      expect(Number.isInteger(x)).toBe(true)
      expect(x).toBeGreaterThanOrEqual(0)
      expect(x).toBeLessThanOrEqual(0xffff_ffff)
    }
    expect(new Set(xs).size).toBe(64)
  })
})

describe('formatDeviceClass', () => {
  it('joins the parts and normalises vendor, architecture and engine', () => {
    expect(
      formatDeviceClass({ backend: 'webgpu', vendor: 'NVIDIA Corp', architecture: ' Ampere ', engine: 'Chrome 130', kernelBundle: 'k1' }),
    ).toBe('webgpu|nvidia-corp/ampere|chrome-130|k1')
  })

  it('fills blanks with "unknown" and keeps the separator out of the parts', () => {
    expect(formatDeviceClass({ backend: 'cpu', vendor: '', architecture: '  ', engine: 'a|b', kernelBundle: 'k' })).toBe(
      'cpu|unknown/unknown|a-b|k',
    )
  })
})
