import { sameShapes, type TensorList, type TrainingConfig } from '../protocol/index.ts'
import { applyAveragedUpdate, type WeightedUpdate } from './aggregate.ts'

/** μ of the `nesterov` outer optimizer when the spec leaves it out (DiLoCo's value). */
export const DEFAULT_OUTER_MOMENTUM = 0.9

export interface OuterStepResult {
  /** The next round's checkpoint. */
  next: TensorList
  /** The momentum buffer to store with it (float32); null for `average`, which keeps none. */
  momentum: TensorList | null
}

/**
 * One outer step: the round's accepted updates (weighted by examples) turned into the next checkpoint by
 * the job's outer optimizer.
 *
 * - `average`: exactly `applyAveragedUpdate` (C' = C + lr · mean Δ), no momentum.
 * - `nesterov` (DiLoCo): pseudo-gradient g = −mean Δ; m' = μ·m + g (m = 0 before the first round);
 *   C' = C − lr · (g + μ·m').
 *
 * A verifier and a rebuilt round must reproduce these bits, so the order is part of the protocol: the
 * mean is computed as `applyAveragedUpdate` computes it (each weight divided by W first, products summed
 * in float64 in the caller's order), m' and C' are computed in float64 from that sum, and each is rounded
 * once to float32. With μ = 0 `nesterov` gives `average`'s bits.
 */
export function outerStep(params: {
  checkpoint: TensorList
  momentum: TensorList | null
  updates: WeightedUpdate[]
  training: TrainingConfig
}): OuterStepResult {
  const { checkpoint, momentum, updates, training } = params
  const lr = training.outerLearningRate
  if (training.outerOptimizer === 'average') return { next: applyAveragedUpdate(checkpoint, updates, lr), momentum: null }

  const mu = training.outerMomentum ?? DEFAULT_OUTER_MOMENTUM
  if (updates.length === 0) throw new RangeError('cannot average zero updates')
  const totalWeight = updates.reduce((n, u) => n + u.examples, 0)
  if (!(totalWeight > 0)) throw new RangeError('updates carry no examples')
  for (const { update } of updates) {
    if (!sameShapes(update.shapes, checkpoint.shapes)) throw new RangeError('update shapes differ from the checkpoint')
  }
  if (momentum && !sameShapes(momentum.shapes, checkpoint.shapes)) throw new RangeError('momentum shapes differ from the checkpoint')

  const nextValues: Float32Array[] = []
  const momentumValues: Float32Array[] = []
  checkpoint.values.forEach((base, t) => {
    const sum = new Float64Array(base.length)
    for (const { update, examples } of updates) {
      const delta = update.values[t]!
      const w = examples / totalWeight
      for (let j = 0; j < sum.length; j++) sum[j]! += w * delta[j]!
    }
    const previous = momentum?.values[t]
    const next = new Float32Array(base.length)
    const m = new Float32Array(base.length)
    for (let j = 0; j < base.length; j++) {
      const g = -sum[j]!
      const mNext = mu * (previous ? previous[j]! : 0) + g
      m[j] = mNext
      next[j] = base[j]! - lr * (g + mu * mNext)
    }
    nextValues.push(next)
    momentumValues.push(m)
  })
  const shapes = () => checkpoint.shapes.map((s) => [...s])
  return { next: { shapes: shapes(), values: nextValues }, momentum: { shapes: shapes(), values: momentumValues } }
}
