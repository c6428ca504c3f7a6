import * as tf from '@tensorflow/tfjs'
import { hashTensorList, parseJobSpec } from '../../src/protocol/index.ts'
import { KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import { mnistSplits, seededGlorotWeights, type PresetBlobs } from './mnist.ts'
import type { PresetBuildOptions } from './options.ts'

/**
 * 8 filters of 3x3 (relu) → 2x2 max pooling → dense 1352-10: 13,610 weights, a quarter of the dense
 * preset's, and the smallest convolutional model that is clearly one. Conv2D and MaxPool run tfjs-webgpu's
 * own programs, which are deterministic within a device class (docs/kernels.md) but have no exact form,
 * so this preset runs on the default bundle only.
 */
export function mnistConvTopology(): Record<string, unknown> {
  const model = tf.sequential({
    name: 'mnist_cnn',
    layers: [
      // Explicit names, so the topology (and the spec hash) does not depend on tfjs's process-wide counters.
      tf.layers.conv2d({ name: 'conv', filters: 8, kernelSize: 3, activation: 'relu', inputShape: [28, 28, 1] }),
      tf.layers.maxPooling2d({ name: 'pool', poolSize: 2 }),
      tf.layers.flatten({ name: 'flatten' }),
      tf.layers.dense({ name: 'logits', units: 10 }),
    ],
  })
  const json = model.toJSON(undefined, false) as unknown as Record<string, unknown>
  model.dispose()
  return json
}

export async function buildMnistConvPreset(options: PresetBuildOptions): Promise<PresetBlobs> {
  const { blobs, trainSplit, heldOutSplit, train, heldOut } = await mnistSplits()
  const initial = hashTensorList(seededGlorotWeights([[3, 3, 1, 8], [8], [1352, 10], [10]], 'tabtrain/preset/mnist-cnn/v1'))
  blobs.set(initial.hash, initial.bytes)
  const spec = parseJobSpec({
    version: 1,
    name: options.name ?? 'MNIST digits (convolutional: 8 3x3 filters, max pool, dense)',
    description:
      options.description ??
      'Classify handwritten digits. 8,000 training and 2,000 held-out images from the MNIST test set, 8 3x3 convolution ' +
        'filters with relu, 2x2 max pooling and a dense layer; Adam inside each unit, units averaged every round.',
    seed: 20261201,
    model: { format: 'tfjs-layers', topology: mnistConvTopology(), initialWeights: initial.hash },
    data: {
      format: 'idx-classification',
      name: 'MNIST t10k (8,000 / 2,000 split)',
      inputShape: [28, 28, 1],
      classes: 10,
      scale: 255,
      train: trainSplit,
      heldOut: heldOutSplit,
    },
    training: options.training,
    kernelBundle: options.kernelBundle ?? KERNEL_BUNDLE,
    ...(options.payment ? { payment: options.payment } : {}),
  })
  return { spec, blobs, train, heldOut }
}
