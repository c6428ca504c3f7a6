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

/** L2 norm of a whole update, summed in float64 over every tensor in order. */
export function updateNorm(update: TensorList): number {
  let sum = 0
  for (const values of update.values) for (let i = 0; i < values.length; i++) sum += values[i]! * values[i]!
  return Math.sqrt(sum)
}

/**
 * Bounds each update's influence before averaging: an update whose norm exceeds the round's median norm
 * is scaled down to it. Until a unit's check settles its update may be a lie; with K updates a round's
 * median is an honest norm as long as fewer than half of them lie, so a ×100 update counts no more than
 * an honest one and noise of any size adds at most one median norm / K. Honest updates of one round have
 * similar norms, so clipping them changes the average little (the convergence runs use it too).
 *
 * Deterministic, as the averaging is: norms in float64 in unit order, the median of an even count is the
 * mean of the two middle norms, and each scaled value is rounded once to float32. So a verifier
 * reproduces the checkpoint's bits and a rebuilt round gives the same bits a first close would. Fewer
 * than three updates have no median that one liar cannot move, so they are averaged as they are.
 */
export function clipToMedianNorm(updates: WeightedUpdate[]): { updates: WeightedUpdate[]; clipped: number } {
  if (updates.length < 3) return { updates, clipped: 0 }
  const norms = updates.map((u) => updateNorm(u.update))
  const sorted = [...norms].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  let clipped = 0
  const out = updates.map((u, i) => {
    const norm = norms[i]!
    if (!(norm > median) || median === 0) return u
    clipped += 1
    const scale = median / norm
    return {
      examples: u.examples,
      update: { shapes: u.update.shapes, values: u.update.values.map((v) => Float32Array.from(v, (x) => x * scale)) },
    }
  })
  return { updates: out, clipped }
}
