import * as tf from '@tensorflow/tfjs'
import type { LabelledSet } from '../data/idx.ts'
import {
  examplesPerUnit,
  hashTensorList,
  unitExampleIndices,
  type Hash,
  type JobSpec,
  type TensorList,
  type WorkUnit,
} from '../protocol/index.ts'
import { gatherBatch } from './batches.ts'
import { readModelWeights, setModelWeights } from './model.ts'

export interface UnitResult {
  /** Δ = θ_H − θ_0 in canonical tensor bytes, and its SHA-256 (the claim's outputHash). */
  updateBytes: Uint8Array
  outputHash: Hash
  examples: number
  /** Training loss of each inner step, for the contributor's own curve. */
  losses: number[]
  trainMs: number
  hashMs: number
}

function makeOptimizer(spec: JobSpec): tf.Optimizer {
  const { innerOptimizer, learningRate } = spec.training
  return innerOptimizer === 'adam' ? tf.train.adam(learningRate) : tf.train.sgd(learningRate)
}

/**
 * Runs one unit: H inner steps from the round's checkpoint on the unit's derived micro-batches.
 * The same function runs in a browser Worker (WebGPU or wasm) and in Node (simulated contributors),
 * so what a tab computes and what a verifier recomputes are one code path.
 */
export async function trainUnit(params: {
  spec: JobSpec
  unit: WorkUnit
  model: tf.LayersModel
  checkpoint: TensorList
  train: LabelledSet
  now?: () => number
}): Promise<UnitResult> {
  const { spec, unit, model, checkpoint, train } = params
  const now = params.now ?? (() => performance.now())
  const { batchSize, innerSteps } = spec.training
  const { inputShape, classes, scale } = spec.data
  const t0 = now()

  setModelWeights(model, checkpoint)
  const indices = unitExampleIndices({
    jobId: unit.jobId,
    seed: spec.seed,
    round: unit.round,
    unit: unit.unit,
    count: examplesPerUnit(spec.training),
    datasetSize: train.count,
  })
  const optimizer = makeOptimizer(spec)
  const lossTensors: tf.Scalar[] = []
  try {
    for (let step = 0; step < innerSteps; step++) {
      const { x, y } = gatherBatch(train, indices.subarray(step * batchSize, (step + 1) * batchSize), inputShape, classes, scale, spec.data.inputEncoding)
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar, true)
      tf.dispose([x, y])
      if (loss) lossTensors.push(loss)
    }
    const stacked = tf.stack(lossTensors)
    const losses = Array.from(await stacked.data())
    stacked.dispose()
    const after = await readModelWeights(model)
    const trainMs = now() - t0

    const t1 = now()
    const update: TensorList = {
      shapes: after.shapes,
      values: after.values.map((v, i) => {
        const before = checkpoint.values[i]!
        const delta = new Float32Array(v.length)
        for (let j = 0; j < v.length; j++) delta[j] = v[j]! - before[j]!
        return delta
      }),
    }
    const { bytes, hash } = hashTensorList(update)
    return { updateBytes: bytes, outputHash: hash, examples: indices.length, losses, trainMs, hashMs: now() - t1 }
  } finally {
    tf.dispose(lossTensors)
    optimizer.dispose()
  }
}
