import { describe, expect, it } from 'vitest'
import { hashTensorList, seededU32Stream, type TensorList, type TrainingConfig } from '../protocol/index.ts'
import { applyAveragedUpdate, type WeightedUpdate } from './aggregate.ts'
import { outerStep } from './outerOptimizer.ts'

const list = (...values: number[][]): TensorList => ({
  shapes: values.map((v) => [v.length]),
  values: values.map((v) => new Float32Array(v)),
})

const training = (overrides: Partial<TrainingConfig> = {}): TrainingConfig => ({
  innerOptimizer: 'adam',
  learningRate: 0.003,
  batchSize: 32,
  innerSteps: 10,
  unitsPerRound: 4,
  rounds: 40,
  outerOptimizer: 'nesterov',
  outerLearningRate: 0.5,
  leaseTtlSeconds: 120,
  ...overrides,
})

/** Seeded values in [-1, 1), so the pinned digests below need no stored fixtures. */
function seededList(shapes: number[][], label: string, scale = 1): TensorList {
  const next = seededU32Stream(label)
  return {
    shapes,
    values: shapes.map((s) => Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => scale * (2 * (next() / 0x1_0000_0000) - 1))),
  }
}

describe('outerStep', () => {
  const checkpoint = list([1, 2, 3], [10])
  const updates: WeightedUpdate[] = [
    { update: list([1, 0, -1], [4]), examples: 1 },
    { update: list([4, 3, 2], [-4]), examples: 3 },
  ]

  it('average is applyAveragedUpdate, bit for bit, and keeps no momentum', () => {
    const out = outerStep({ checkpoint, momentum: null, updates, training: training({ outerOptimizer: 'average', outerLearningRate: 0.7 }) })
    expect(out.momentum).toBeNull()
    expect(hashTensorList(out.next).hash).toBe(hashTensorList(applyAveragedUpdate(checkpoint, updates, 0.7)).hash)
  })

  it('nesterov: the first round steps lr·(1+μ)·mean Δ and stores momentum −mean Δ', () => {
    // mean Δ = [3.25, 2.25, 1.25], [-2]; g = −mean; m' = g; C' = C − lr·(g + μ·g) = C + lr·(1+μ)·mean.
    const out = outerStep({ checkpoint, momentum: null, updates, training: training({ outerLearningRate: 0.5, outerMomentum: 0.5 }) })
    expect(Array.from(out.momentum!.values[0]!)).toEqual([-3.25, -2.25, -1.25])
    expect(Array.from(out.momentum!.values[1]!)).toEqual([2])
    expect(Array.from(out.next.values[0]!)).toEqual([1 + 0.75 * 3.25, 2 + 0.75 * 2.25, 3 + 0.75 * 1.25])
    expect(Array.from(out.next.values[1]!)).toEqual([10 - 0.75 * 2])
    expect(out.next.shapes).toEqual(checkpoint.shapes)
    expect(out.momentum!.shapes).toEqual(checkpoint.shapes)
    expect(out.next.values[0]).toBeInstanceOf(Float32Array)
    expect(out.momentum!.values[0]).toBeInstanceOf(Float32Array)
  })

  it('nesterov: a later round carries the stored momentum', () => {
    const momentum = list([1, 0, -2], [0.5])
    const one = [{ update: list([2, -2, 0], [1]), examples: 8 }]
    const out = outerStep({ checkpoint, momentum, updates: one, training: training({ outerLearningRate: 0.5, outerMomentum: 0.5 }) })
    // g = [-2, 2, 0], [-1]; m' = 0.5·m + g = [-1.5, 2, -1], [-0.75]; C' = C − 0.5·(g + 0.5·m').
    expect(Array.from(out.momentum!.values[0]!)).toEqual([-1.5, 2, -1])
    expect(Array.from(out.momentum!.values[1]!)).toEqual([-0.75])
    expect(Array.from(out.next.values[0]!)).toEqual([1 - 0.5 * (-2 - 0.75), 2 - 0.5 * (2 + 1), 3 - 0.5 * (0 - 0.5)])
    expect(Array.from(out.next.values[1]!)).toEqual([10 - 0.5 * (-1 - 0.375)])
  })

  it('nesterov with μ = 0 gives average\'s bits; μ defaults to 0.9', () => {
    const zero = outerStep({ checkpoint, momentum: null, updates, training: training({ outerMomentum: 0 }) })
    expect(hashTensorList(zero.next).hash).toBe(hashTensorList(applyAveragedUpdate(checkpoint, updates, 0.5)).hash)
    const byDefault = outerStep({ checkpoint, momentum: null, updates, training: training() })
    const explicit = outerStep({ checkpoint, momentum: null, updates, training: training({ outerMomentum: 0.9 }) })
    expect(hashTensorList(byDefault.next).hash).toBe(hashTensorList(explicit.next).hash)
    expect(byDefault.next.values[1]![0]).toBe(Math.fround(10 - 0.5 * 1.9 * 2))
  })

  it('sums in float64 and rounds once to float32', () => {
    // (1 + 1e-8 − 1) / 3 survives only in a float64 sum, as in applyAveragedUpdate.
    const tiny = [[1], [1e-8], [-1]].map((v) => ({ update: list(v), examples: 1 }))
    const out = outerStep({ checkpoint: list([0]), momentum: null, updates: tiny, training: training({ outerLearningRate: 1, outerMomentum: 0.5 }) })
    expect(out.momentum!.values[0]![0]).toBe(Math.fround(-1e-8 / 3))
    expect(out.next.values[0]![0]).toBe(Math.fround(1.5 * (1e-8 / 3)))
  })

  it('is deterministic: pinned digests of the next checkpoint and the momentum, inputs left as they were', () => {
    const shapes = [[16, 8], [8], [8, 3], [3]]
    const base = seededList(shapes, 'tabtrain/test/outer/checkpoint')
    const prior = seededList(shapes, 'tabtrain/test/outer/momentum', 0.01)
    const weighted = [32, 320, 17].map((examples, i) => ({ update: seededList(shapes, `tabtrain/test/outer/update/${i}`, 0.05), examples }))
    const before = [base, prior, ...weighted.map((u) => u.update)].map((l) => hashTensorList(l).hash)
    const config = training({ outerLearningRate: 0.7, outerMomentum: 0.9 })
    const first = outerStep({ checkpoint: base, momentum: null, updates: weighted, training: config })
    const second = outerStep({ checkpoint: first.next, momentum: first.momentum, updates: weighted, training: config })
    const carried = outerStep({ checkpoint: base, momentum: prior, updates: weighted, training: config })
    const again = outerStep({ checkpoint: base, momentum: prior, updates: weighted, training: config })
    const digests = {
      firstNext: hashTensorList(first.next).hash,
      firstMomentum: hashTensorList(first.momentum!).hash,
      secondNext: hashTensorList(second.next).hash,
      secondMomentum: hashTensorList(second.momentum!).hash,
      carriedNext: hashTensorList(carried.next).hash,
      carriedMomentum: hashTensorList(carried.momentum!).hash,
    }
    expect(digests).toMatchInlineSnapshot(`
      {
        "carriedMomentum": "0xce63f9ba55720eafd076b008a0bbaf8a09c20ba049e54dd00d8b2aa882175dc6",
        "carriedNext": "0x23224565874df03ff8f8bca1b0aa4d5c44c643d3eed40d186930229b351bff1a",
        "firstMomentum": "0x83bf6ee7df1d29bfda4104ce57c96cce812ecd713e6146af3322e83498cb35b8",
        "firstNext": "0x30dd9b875212d56581199a96e317eb44d4e1d706120ddd279ef6a2e2618fdb40",
        "secondMomentum": "0x2f8b056a069f077ccef7c5b774f52dfda40b4f9dbba1ad31e71d11613a861b46",
        "secondNext": "0xc2c5edbcdc9e7e6277209144ffe3f4e7317bac772adac7479e4d6bd1c279442f",
      }
    `)
    expect(hashTensorList(again.next).hash).toBe(digests.carriedNext)
    expect(hashTensorList(again.momentum!).hash).toBe(digests.carriedMomentum)
    expect([base, prior, ...weighted.map((u) => u.update)].map((l) => hashTensorList(l).hash)).toEqual(before)
    carried.next.values[0]![0] = 99
    carried.momentum!.values[0]![0] = 99
    expect(base.values[0]![0]).not.toBe(99)
    expect(prior.values[0]![0]).not.toBe(99)
  })

  it('refuses zero updates, zero total weight and mismatched shapes, as averaging does', () => {
    for (const outerOptimizer of ['average', 'nesterov'] as const) {
      const config = training({ outerOptimizer })
      const step = (u: WeightedUpdate[]) => () => outerStep({ checkpoint, momentum: null, updates: u, training: config })
      expect(step([])).toThrow(/zero updates/)
      expect(step([{ update: list([1, 1, 1], [1]), examples: 0 }])).toThrow(/no examples/)
      expect(step([{ update: list([1, 1, 1]), examples: 1 }])).toThrow(/shapes differ/)
      expect(step([{ update: list([1, 1], [1]), examples: 1 }])).toThrow(RangeError)
    }
    expect(() => outerStep({ checkpoint, momentum: list([1, 1], [1]), updates, training: training() })).toThrow(/momentum shapes differ/)
  })
})
