import { sameShapes, type TensorList } from '../protocol/index.ts'

export interface WeightedUpdate {
  update: TensorList
  examples: number
}

/**
 * Outer step of the `average` optimizer: C_{r+1} = C_r + lr · Σ (wᵢ/W)·Δᵢ with W = Σ wᵢ, weighted by
 * examples. The order is part of the protocol, since a verifier must reproduce the checkpoint's bits:
 * each weight is divided by W first, the products are summed in float64 in the caller's order (units by
 * index), and the result is rounded once to float32 after adding lr times the sum to C_r in float64.
 */
export function applyAveragedUpdate(checkpoint: TensorList, updates: WeightedUpdate[], learningRate: number): TensorList {
  if (updates.length === 0) throw new RangeError('cannot average zero updates')
  const totalWeight = updates.reduce((n, u) => n + u.examples, 0)
  if (!(totalWeight > 0)) throw new RangeError('updates carry no examples')
  for (const { update } of updates) {
    if (!sameShapes(update.shapes, checkpoint.shapes)) throw new RangeError('update shapes differ from the checkpoint')
  }
  const values = checkpoint.values.map((base, t) => {
    const sum = new Float64Array(base.length)
    for (const { update, examples } of updates) {
      const delta = update.values[t]!
      const w = examples / totalWeight
      for (let j = 0; j < sum.length; j++) sum[j]! += w * delta[j]!
    }
    const out = new Float32Array(base.length)
    for (let j = 0; j < out.length; j++) out[j] = base[j]! + learningRate * sum[j]!
    return out
  })
  return { shapes: checkpoint.shapes.map((s) => [...s]), values }
}
