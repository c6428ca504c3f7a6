import { describe, expect, it } from 'vitest'
import { hashTensorList, type TensorList } from '../protocol/index.ts'
import { applyAveragedUpdate } from './aggregate.ts'

const list = (...values: number[][]): TensorList => ({
  shapes: values.map((v) => [v.length]),
  values: values.map((v) => new Float32Array(v)),
})

describe('applyAveragedUpdate', () => {
  const checkpoint = list([1, 2, 3], [10])

  it('adds the example-weighted mean of the updates, scaled by the learning rate', () => {
    const next = applyAveragedUpdate(
      checkpoint,
      [
        { update: list([1, 0, -1], [4]), examples: 1 },
        { update: list([4, 3, 2], [-4]), examples: 3 },
      ],
      0.5,
    )
    // mean = ([1,0,-1]*1 + [4,3,2]*3) / 4 = [3.25, 2.25, 1.25]; [4*1 - 4*3] / 4 = -2
    expect(Array.from(next.values[0]!)).toEqual([1 + 0.5 * 3.25, 2 + 0.5 * 2.25, 3 + 0.5 * 1.25])
    expect(Array.from(next.values[1]!)).toEqual([10 - 0.5 * 2])
    expect(next.shapes).toEqual(checkpoint.shapes)
    expect(next.values[0]).toBeInstanceOf(Float32Array)
  })

  it('with one update and rate 1 applies that update', () => {
    const next = applyAveragedUpdate(checkpoint, [{ update: list([0.5, 0.25, -3], [1]), examples: 320 }], 1)
    expect(Array.from(next.values[0]!)).toEqual([1.5, 2.25, 0])
    expect(Array.from(next.values[1]!)).toEqual([11])
  })

  it('sums in float64 and rounds once to float32', () => {
    // (1 + 1e-8 - 1) / 3: a float32 running sum loses the 1e-8 (it is below half an ulp of 1/3) and gives 0.
    const updates = [[1], [1e-8], [-1]].map((v) => ({ update: list(v), examples: 1 }))
    const next = applyAveragedUpdate(list([0]), updates, 1)
    const value = next.values[0]![0]!
    expect(value).not.toBe(0)
    expect(Math.abs(value - 1e-8 / 3)).toBeLessThan(1e-12)
    let float32Sum = 0
    for (const { update } of updates) float32Sum = Math.fround(float32Sum + Math.fround(update.values[0]![0]! / 3))
    expect(float32Sum).toBe(0)
  })

  it('is deterministic for the same inputs and does not modify them', () => {
    const updates = [
      { update: list([0.1, 0.2, 0.3], [0.4]), examples: 2 },
      { update: list([-0.3, 0.7, 1e-5], [2]), examples: 5 },
    ]
    const before = hashTensorList(checkpoint).hash
    const beforeUpdates = updates.map((u) => hashTensorList(u.update).hash)
    const a = hashTensorList(applyAveragedUpdate(checkpoint, updates, 0.7)).hash
    const b = hashTensorList(applyAveragedUpdate(checkpoint, updates, 0.7)).hash
    expect(a).toBe(b)
    expect(hashTensorList(checkpoint).hash).toBe(before)
    expect(updates.map((u) => hashTensorList(u.update).hash)).toEqual(beforeUpdates)
    const next = applyAveragedUpdate(checkpoint, updates, 0.7)
    next.values[0]![0] = 99
    expect(checkpoint.values[0]![0]).toBe(1)
  })

  it('refuses zero updates, zero total weight and mismatched shapes', () => {
    expect(() => applyAveragedUpdate(checkpoint, [], 1)).toThrow(/zero updates/)
    expect(() => applyAveragedUpdate(checkpoint, [{ update: list([1, 1, 1], [1]), examples: 0 }], 1)).toThrow(/no examples/)
    expect(() => applyAveragedUpdate(checkpoint, [{ update: list([1, 1, 1]), examples: 1 }], 1)).toThrow(/shapes differ/)
    expect(() => applyAveragedUpdate(checkpoint, [{ update: list([1, 1], [1]), examples: 1 }], 1)).toThrow(RangeError)
  })
})
