import * as tf from '@tensorflow/tfjs'
import type { LabelledSet } from '../data/idx.ts'

/** Gathers the given rows into an input tensor scaled to floats and a one-hot label tensor. */
export function gatherBatch(
  set: LabelledSet,
  indices: ArrayLike<number>,
  inputShape: readonly number[],
  classes: number,
  scale: number,
): { x: tf.Tensor; y: tf.Tensor } {
  const n = indices.length
  const size = set.exampleSize
  const x = new Float32Array(n * size)
  const labels = new Int32Array(n)
  for (let r = 0; r < n; r++) {
    const row = indices[r]!
    const src = set.images.subarray(row * size, (row + 1) * size)
    for (let j = 0; j < size; j++) x[r * size + j] = src[j]! / scale
    labels[r] = set.labels[row]!
  }
  return tf.tidy(() => ({
    x: tf.tensor(x, [n, ...inputShape]),
    y: tf.oneHot(tf.tensor1d(labels, 'int32'), classes),
  }))
}
