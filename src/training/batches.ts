import * as tf from '@tensorflow/tfjs'
import type { LabelledSet } from '../data/idx.ts'
import type { InputEncoding } from '../protocol/index.ts'

/**
 * Gathers the given rows into an input tensor and a one-hot label tensor. Stored values (uint8 pixels or
 * float32 features) are divided by `scale`; with a one-hot `encoding` each stored item is an integer id
 * expanded here, on the CPU, to `depth` floats (exactly 0 or 1), so the model's first layer is a plain
 * matmul and no GPU gather or scatter runs.
 */
export function gatherBatch(
  set: LabelledSet,
  indices: ArrayLike<number>,
  inputShape: readonly number[],
  classes: number,
  scale: number,
  encoding?: InputEncoding,
): { x: tf.Tensor; y: tf.Tensor } {
  const n = indices.length
  const size = set.exampleSize
  const labels = new Int32Array(n)
  let x: Float32Array
  if (encoding) {
    const depth = encoding.depth
    x = new Float32Array(n * size * depth)
    for (let r = 0; r < n; r++) {
      const row = indices[r]!
      for (let j = 0; j < size; j++) {
        const id = set.images[row * size + j]!
        // Ids were checked against the vocabulary when the data set was made; an id out of range stays all-zero.
        if (id < depth) x[(r * size + j) * depth + id] = 1
      }
      labels[r] = set.labels[row]!
    }
  } else {
    x = new Float32Array(n * size)
    for (let r = 0; r < n; r++) {
      const row = indices[r]!
      const src = set.images.subarray(row * size, (row + 1) * size)
      for (let j = 0; j < size; j++) x[r * size + j] = src[j]! / scale
      labels[r] = set.labels[row]!
    }
  }
  return tf.tidy(() => ({
    x: tf.tensor(x, [n, ...inputShape]),
    y: tf.oneHot(tf.tensor1d(labels, 'int32'), classes),
  }))
}
