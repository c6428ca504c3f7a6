import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { encodeIdx, labelledSetFromIdx, sliceIdx, type LabelledSet } from '../../src/data/idx.ts'
import {
  hashTensorList,
  parseJobSpec,
  presetInfo,
  seededU32Stream,
  sha256Hex,
  type JobSpec,
  type TensorList,
  type TrainingConfig,
} from '../../src/protocol/index.ts'
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import { readIdxFile } from '../idxFile.ts'

/** The MNIST test split shipped in the repository (CC BY-SA 3.0, see datasets/mnist-t10k/README.md). */
export const MNIST_DIR = fileURLToPath(new URL('../../datasets/mnist-t10k/', import.meta.url))

/** A fixed split of the 10,000 shipped digits: the first 8,000 train, the last 2,000 are held out. */
export const MNIST_TRAIN_COUNT = 8000
export const MNIST_HELD_OUT_COUNT = 2000

export interface PresetBlobs {
  spec: JobSpec
  /** Every blob the spec references, by hash: initial weights and data shards. */
  blobs: Map<string, Uint8Array>
  heldOut: LabelledSet
  train: LabelledSet
}

/** A 784-64-10 perceptron: small enough for SwiftShader in CI, good for ~90% on held-out digits. */
export function mnistTopology(): Record<string, unknown> {
  const model = tf.sequential({
    name: 'mnist_mlp',
    layers: [
      // Explicit names: tfjs numbers unnamed layers from a process-wide counter, which would make
      // the topology (and so the spec hash) depend on what else the process built before.
      tf.layers.dense({ name: 'hidden', units: 64, activation: 'relu', inputShape: [784] }),
      tf.layers.dense({ name: 'logits', units: 10 }),
    ],
  })
  const json = model.toJSON(undefined, false) as unknown as Record<string, unknown>
  model.dispose()
  return json
}

/**
 * Glorot-uniform kernels (dense and conv) and zero biases from a seeded stream, so that the initial checkpoint, and
 * therefore the spec hash, is the same on every machine.
 */
export function seededGlorotWeights(shapes: number[][], label: string): TensorList {
  const next = seededU32Stream(label)
  const values = shapes.map((shape) => {
    const size = shape.reduce((a, b) => a * b, 1)
    const out = new Float32Array(size)
    // Dense kernels [in, out]; conv kernels [h, w, in, out] have fans h·w·in and h·w·out (as tfjs computes them).
    if (shape.length === 2 || shape.length === 4) {
      const receptive = shape.length === 4 ? shape[0]! * shape[1]! : 1
      const fanIn = receptive * shape[shape.length - 2]!
      const fanOut = receptive * shape[shape.length - 1]!
      const limit = Math.sqrt(6 / (fanIn + fanOut))
      for (let i = 0; i < size; i++) out[i] = (2 * (next() / 0x1_0000_0000) - 1) * limit
    }
    return out
  })
  return { shapes, values }
}

export async function verifyShippedChecksums(dir = MNIST_DIR): Promise<void> {
  const sums = await readFile(`${dir}/SHA256SUMS`, 'utf8')
  for (const line of sums.trim().split('\n')) {
    const [expected, name] = line.trim().split(/\s+/)
    const actual = sha256Hex(await readFile(`${dir}/${name}`)).slice(2)
    if (actual !== expected) throw new Error(`${name}: SHA-256 ${actual} does not match SHA256SUMS (${expected})`)
  }
}

/**
 * The preset pays 1 token (10^18 base units) per paid unit. Its 40 rounds of 4 units cost 160 tokens; the
 * other 40 pay for spot checks, which are paid like any unit (a checker cannot tell it is checking): at
 * most 1 in 3 units while every address is new, 1 in 20 once they have a record (docs/verification.md).
 */
export const MNIST_PRESET_PAYMENT = { pricePerUnit: '1000000000000000000', budget: '200000000000000000000' } as const

/**
 * The local chain's requester (anvil's account #1, LOCAL_REQUESTER_INDEX in settlement/localChain.ts), which
 * escrows the preset's budget on first start. Another deployment passes its own requester.
 */
export const LOCAL_PRESET_REQUESTER = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'

/**
 * The MNIST MLP's first configuration: the catalogue's inner schedule (src/protocol/presetCatalog.ts) with
 * synchronous rounds of K units, float32 updates and plain averaging. The tests, benchmarks and calibration
 * that pin this spec's hashes and bits build it; preset jobs run the catalogue's `training` (`options.training`).
 */
export const CLASSIC_MNIST_TRAINING: TrainingConfig = (() => {
  const { maxStaleness: _s, compression: _c, outerMomentum: _m, ...inner } = presetInfo('mnist-mlp')!.training
  return { ...inner, outerOptimizer: 'average', outerLearningRate: 1 }
})()

/**
 * `paid: false` gives the volunteer variant (no payment terms: a different spec, so a different job id),
 * which is what a coordinator without a chain can run. `training` defaults to CLASSIC_MNIST_TRAINING.
 */
export async function buildMnistPreset(
  options: { dir?: string; paid?: boolean; kernelBundle?: string; requester?: string; training?: TrainingConfig } = {},
): Promise<PresetBlobs> {
  const { blobs, trainSplit, heldOutSplit, train, heldOut } = await mnistSplits(options.dir)
  const topology = mnistTopology()
  const initial = hashTensorList(seededGlorotWeights([[784, 64], [64], [64, 10], [10]], 'tabtrain/preset/mnist-mlp/v1'))
  blobs.set(initial.hash, initial.bytes)

  const exact = options.kernelBundle === EXACT_KERNEL_BUNDLE
  const spec = parseJobSpec({
    version: 1,
    name: exact ? 'MNIST digits (MLP 784-64-10), exact mode' : 'MNIST digits (MLP 784-64-10)',
    description:
      'Classify handwritten digits. 8,000 training and 2,000 held-out images from the MNIST test set, ' +
      'a 784-64-10 perceptron, Adam inside each unit, units averaged every round.' +
      (exact
        ? ' Exact mode: matmuls summed exactly in integers, every other float operation in integer soft float, so a unit gives the same bits on any WebGPU implementation.'
        : ''),
    seed: 20261122,
    model: { format: 'tfjs-layers', topology, initialWeights: initial.hash },
    data: {
      format: 'idx-classification',
      name: 'MNIST t10k (8,000 / 2,000 split)',
      inputShape: [784],
      classes: 10,
      scale: 255,
      train: trainSplit,
      heldOut: heldOutSplit,
    },
    training: options.training ?? CLASSIC_MNIST_TRAINING,
    kernelBundle: options.kernelBundle ?? KERNEL_BUNDLE,
    ...(options.paid === false ? {} : { payment: { ...MNIST_PRESET_PAYMENT, requester: options.requester ?? LOCAL_PRESET_REQUESTER } }),
  })
  return { spec, blobs, train, heldOut }
}

/**
 * The shipped digits as the presets' training and held-out IDX shards (blobs by hash, with their split
 * records for the spec) and decoded sets. Shared by the dense and the convolutional preset.
 */
export async function mnistSplits(dir = MNIST_DIR) {
  await verifyShippedChecksums(dir)
  const images = await readIdxFile(`${dir}/t10k-images-idx3-ubyte.gz`)
  const labels = await readIdxFile(`${dir}/t10k-labels-idx1-ubyte.gz`)
  const total = MNIST_TRAIN_COUNT + MNIST_HELD_OUT_COUNT
  const blobs = new Map<string, Uint8Array>()
  const put = (bytes: Uint8Array) => {
    const hash = sha256Hex(bytes)
    blobs.set(hash, bytes)
    return hash
  }
  const split = (start: number, end: number) => {
    const imageBytes = encodeIdx(sliceIdx(images, start, end))
    const labelBytes = encodeIdx(sliceIdx(labels, start, end))
    return { images: put(imageBytes), labels: put(labelBytes), count: end - start }
  }
  return {
    blobs,
    trainSplit: split(0, MNIST_TRAIN_COUNT),
    heldOutSplit: split(MNIST_TRAIN_COUNT, total),
    train: labelledSetFromIdx(sliceIdx(images, 0, MNIST_TRAIN_COUNT), sliceIdx(labels, 0, MNIST_TRAIN_COUNT)),
    heldOut: labelledSetFromIdx(sliceIdx(images, MNIST_TRAIN_COUNT, total), sliceIdx(labels, MNIST_TRAIN_COUNT, total)),
  }
}
