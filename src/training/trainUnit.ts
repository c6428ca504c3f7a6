import * as tf from '@tensorflow/tfjs'
import type { LabelledSet } from '../data/idx.ts'
import {
  unitExamples,
  unitInnerSteps,
  encodeUpdate,
  sha256Hex,
  unitExampleIndices,
  type Hash,
  type JobSpec,
  type TensorList,
  type WorkUnit,
} from '../protocol/index.ts'
import { gatherBatch } from './batches.ts'
import { modelWeightShapes, setModelWeights } from './model.ts'

export interface UnitResult {
  /** Δ = θ_H − θ_0 encoded as the job's compression says (updateCodec.ts), and its SHA-256 (the claim's outputHash). */
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
  const { batchSize } = spec.training
  // The unit's own H when the coordinator sized it to the contributor's device; the job's otherwise.
  const innerSteps = unitInnerSteps(unit, spec.training)
  const { inputShape, classes, scale } = spec.data
  const t0 = now()

  setModelWeights(model, checkpoint)
  // θ_0 stays on the device, so Δ is computed there and read back alone (not θ_H to subtract θ_0 here).
  const start = model.weights.map((w) => tf.clone(w.read()))
  const indices = unitExampleIndices({
    jobId: unit.jobId,
    seed: spec.seed,
    round: unit.round,
    unit: unit.unit,
    count: unitExamples(unit, spec.training),
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
    // One read back from the device for the whole unit: the step losses and Δ = θ_H − θ_0, concatenated.
    // Subtraction is correctly rounded in IEEE float32 on every backend, so Δ has the bits the host computed.
    const readback = tf.tidy(() =>
      tf.concat([tf.stack(lossTensors), ...model.weights.map((w, i) => tf.sub(w.read(), start[i]!).reshape([-1]))]),
    )
    const flat = (await readback.data()) as Float32Array
    readback.dispose()
    const losses = Array.from(flat.subarray(0, lossTensors.length))
    const trainMs = now() - t0

    const t1 = now()
    const shapes = modelWeightShapes(model)
    let offset = lossTensors.length
    const update: TensorList = {
      shapes,
      values: shapes.map((shape) => {
        const size = shape.reduce((a, b) => a * b, 1)
        const delta = flat.slice(offset, offset + size)
        offset += size
        return delta
      }),
    }
    const bytes = encodeUpdate(spec.training.compression, update)
    return { updateBytes: bytes, outputHash: sha256Hex(bytes), examples: indices.length, losses, trainMs, hashMs: now() - t1 }
  } finally {
    tf.dispose(lossTensors)
    tf.dispose(start)
    optimizer.dispose()
  }
}
