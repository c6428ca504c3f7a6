import * as tf from '@tensorflow/tfjs'
import type { LabelledSet } from '../data/idx.ts'
import type { JobSpec } from '../protocol/index.ts'
import { gatherBatch } from './batches.ts'

export interface Evaluation {
  loss: number
  accuracy: number
  examples: number
}

/** Mean softmax cross-entropy and accuracy over a whole labelled set, in batches to bound memory. */
export async function evaluateModel(model: tf.LayersModel, spec: JobSpec, set: LabelledSet, batchSize = 500): Promise<Evaluation> {
  let lossSum = 0
  let correct = 0
  for (let start = 0; start < set.count; start += batchSize) {
    const end = Math.min(set.count, start + batchSize)
    const indices = Array.from({ length: end - start }, (_, i) => start + i)
    const { x, y } = gatherBatch(set, indices, spec.data.inputShape, spec.data.classes, spec.data.scale, spec.data.inputEncoding)
    const [lossTotal, hits] = tf.tidy(() => {
      const logits = model.apply(x) as tf.Tensor
      const losses = tf.losses.softmaxCrossEntropy(y, logits, undefined, undefined, tf.Reduction.NONE)
      const hit = tf.equal(tf.argMax(logits, -1), tf.argMax(y, -1))
      return [tf.sum(losses), tf.sum(tf.cast(hit, 'int32'))]
    })
    lossSum += (await lossTotal!.data())[0]!
    correct += (await hits!.data())[0]!
    tf.dispose([x, y, lossTotal!, hits!])
  }
  return { loss: lossSum / set.count, accuracy: correct / set.count, examples: set.count }
}
