import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import {
  canonicalJsonHash,
  decodeTensorList,
  decodeUpdate,
  jobSpecHash,
  PRESET_IDS,
  presetInfo,
  TRAINING_HELP,
  type JobSpec,
  type TensorList,
} from '../../src/protocol/index.ts'
import { evaluateModel } from '../../src/training/evaluate.ts'
import { buildModel, setModelWeights } from '../../src/training/model.ts'
import { trainUnit } from '../../src/training/trainUnit.ts'
import { buildPreset, listPresets, PresetError, type PresetBlobs } from './index.ts'
import { buildMnistPreset, LOCAL_PRESET_REQUESTER, MNIST_PRESET_PAYMENT } from './mnist.ts'

beforeAll(async () => {
  await tf.setBackend('cpu')
})

/** A spec's hash with the kernel bundle id left out: the bundle's digest moves with kernel work, the rest must not. */
const hashWithoutBundle = (spec: JobSpec) => canonicalJsonHash({ ...spec, kernelBundle: 'pinned' })

describe('the preset catalogue', () => {
  it('lists every preset with a title, a description, defaults with help, and its bundles', () => {
    const presets = listPresets()
    expect(presets.map((p) => p.id)).toEqual([...PRESET_IDS])
    for (const preset of presets) {
      expect(preset.title.length).toBeGreaterThan(5)
      expect(preset.description.length).toBeGreaterThan(20)
      expect(preset.bundles).toContain('default')
      for (const key of Object.keys(preset.training)) expect(TRAINING_HELP[key as keyof typeof TRAINING_HELP].length).toBeGreaterThan(20)
    }
  })
})

/** The paid MNIST MLP job `npm start` creates, bundle left out (see hashWithoutBundle). */
const PINNED_PAID_CATALOGUE = '0x0389040dc89d94095974619fd01780b98c3690b003a3399a376361a95f357eac'

describe('MNIST dense preset through the registry', () => {
  it('keeps the spec hashes of the classic configuration the tests and benchmarks build (volunteer, paid)', async () => {
    const volunteer = await buildMnistPreset({ paid: false })
    const paid = await buildMnistPreset({ paid: true })
    // Pinned (checked against the commit before requester jobs): topology, weights, data shards, training config.
    expect(hashWithoutBundle(volunteer.spec)).toBe('0x2f1266755fbb0a9f43ddc7ccd74b5ddcd25a3ea14ee2a9a7f616b2d3458a7716')
    expect(hashWithoutBundle(paid.spec)).toBe('0xd31c653a734a34b41e46f22bcca6567bf5a26684ab30e5786e35857205c85451')
  })

  it('builds the same job through the registry as the coordinator starts with: the catalogue training', async () => {
    const training = presetInfo('mnist-mlp')!.training
    const paid = await buildMnistPreset({ paid: true, training })
    const fromRegistry = await buildPreset('mnist-mlp', { kernelBundle: 'default', payment: { ...MNIST_PRESET_PAYMENT, requester: LOCAL_PRESET_REQUESTER } })
    expect(jobSpecHash(fromRegistry.spec)).toBe(jobSpecHash(paid.spec))
    // Pinned: the catalogue's schedule (asynchronous rounds, int8, Nesterov 0.4/0.5) is part of the preset's identity.
    expect(hashWithoutBundle(paid.spec)).toBe(PINNED_PAID_CATALOGUE)
    const volunteer = await buildMnistPreset({ paid: false, training })
    expect(jobSpecHash((await buildPreset('mnist-mlp', { kernelBundle: 'default' })).spec)).toBe(jobSpecHash(volunteer.spec))
    const exact = await buildMnistPreset({ paid: false, kernelBundle: EXACT_KERNEL_BUNDLE, training })
    expect(jobSpecHash((await buildPreset('mnist-mlp', { kernelBundle: 'exact' })).spec)).toBe(jobSpecHash(exact.spec))
  })

  it('applies overrides and refuses invalid ones', async () => {
    const preset = await buildPreset('mnist-mlp', { kernelBundle: 'default', training: { rounds: 5 }, name: 'mine' })
    expect(preset.spec.training.rounds).toBe(5)
    expect(preset.spec.name).toBe('mine')
    await expect(buildPreset('mnist-mlp', { kernelBundle: 'default', training: { batchSize: 0 } })).rejects.toThrow(/training.batchSize/)
    await expect(buildPreset('cifar', { kernelBundle: 'default' })).rejects.toThrow('no preset "cifar"; the presets are mnist-mlp, mnist-cnn, shakespeare-char')
  })
})

describe('how preset jobs run', () => {
  it('every preset job runs asynchronous rounds, int8 updates and its tuned outer Nesterov step', async () => {
    for (const id of PRESET_IDS) {
      const preset = await buildPreset(id, { kernelBundle: 'default' })
      expect(preset.spec.training).toMatchObject({
        outerOptimizer: 'nesterov',
        outerLearningRate: 0.4,
        outerMomentum: 0.5,
        maxStaleness: 2,
        compression: { kind: 'int8', blockSize: 256 },
      })
    }
  })
})

describe('new presets', () => {
  it('refuses the convolutional preset in exact mode, saying why', async () => {
    const refusal = await buildPreset('mnist-cnn', { kernelBundle: 'exact' }).catch((e: unknown) => e)
    expect(refusal).toBeInstanceOf(PresetError)
    expect((refusal as PresetError).code).toBe('unsupported_by_bundle')
    expect((refusal as PresetError).message).toBe(
      'preset "mnist-cnn" cannot run on the exact kernel bundle: Exact mode has no exact convolution or max-pooling kernels yet.',
    )
  })

  it('builds the character model on Tiny Shakespeare with a one-hot window, in both bundles', async () => {
    const preset = await buildPreset('shakespeare-char', { kernelBundle: 'default' })
    expect(preset.spec.data.inputEncoding).toEqual({ kind: 'one-hot', depth: 65 })
    expect(preset.spec.data.inputShape).toEqual([24, 65])
    expect(Array.from(preset.spec.data.vocabulary!)).toHaveLength(65)
    expect(preset.spec.kernelBundle).toBe(KERNEL_BUNDLE)
    expect((await buildPreset('shakespeare-char', { kernelBundle: 'exact' })).spec.kernelBundle).toBe(EXACT_KERNEL_BUNDLE)
  })
})

/** Trains `units` units one after another (each one's update applied in full) and evaluates before and after. */
async function lossBeforeAndAfter(preset: PresetBlobs, units: number, heldOut = 300) {
  const spec = preset.spec
  const model = await buildModel(spec)
  let checkpoint: TensorList = decodeTensorList(preset.blobs.get(spec.model.initialWeights)!)
  const subset = { ...preset.heldOut, count: heldOut }
  setModelWeights(model, checkpoint)
  const before = await evaluateModel(model, spec, subset)
  for (let unit = 0; unit < units; unit++) {
    const result = await trainUnit({ spec, unit: { jobId: jobSpecHash(spec), round: unit, unit: 0, inputHash: spec.model.initialWeights }, model, checkpoint, train: preset.train })
    const delta = decodeUpdate(spec.training.compression, result.updateBytes)
    checkpoint = { shapes: checkpoint.shapes, values: checkpoint.values.map((v, i) => v.map((x, j) => x + delta.values[i]![j]!)) }
  }
  setModelWeights(model, checkpoint)
  const after = await evaluateModel(model, spec, subset)
  model.dispose()
  return { before, after }
}

describe('each preset trains (cpu backend): a few units lower the held-out loss', () => {
  for (const id of PRESET_IDS) {
    it(id, async () => {
      // Short units keep this quick on the cpu backend (the convolution is the slow one there).
      const preset = await buildPreset(id, { kernelBundle: 'default', training: { innerSteps: 5 } })
      const { before, after } = await lossBeforeAndAfter(preset, 3, 200)
      console.log(`${id}: held-out loss ${before.loss.toFixed(3)} -> ${after.loss.toFixed(3)}, accuracy ${(before.accuracy * 100).toFixed(1)}% -> ${(after.accuracy * 100).toFixed(1)}%`)
      expect(after.loss).toBeLessThan(before.loss * 0.9)
    })
  }
})
