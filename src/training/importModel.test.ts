import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../kernels/config.ts'
import { KERNEL_AUDIT } from '../kernels/opAudit.ts'
import { EXACT_KERNELS, EXACT_PASSTHROUGH_KERNELS } from '../kernels/registerExact.ts'
import { checkModelAgainstData, checkModelForBundle, importModel, ModelFileError } from './importModel.ts'
import { ACTIVATION_KERNELS, LAYER_KERNELS } from './layerSupport.ts'
import { readModelWeights } from './model.ts'
import { savedModelFiles } from './testing/savedModelFiles.ts'

beforeAll(async () => {
  await tf.setBackend('cpu')
})

function penguinModel(extra: tf.layers.Layer[] = [], output: tf.layers.Layer = tf.layers.dense({ name: 'out', units: 3 })) {
  return tf.sequential({ name: 'p', layers: [tf.layers.dense({ name: 'h', units: 8, activation: 'relu', inputShape: [10] }), ...extra, output] })
}

async function refusal(run: () => Promise<unknown> | unknown): Promise<ModelFileError> {
  try {
    await run()
  } catch (error) {
    expect(error).toBeInstanceOf(ModelFileError)
    return error as ModelFileError
  }
  throw new Error('the model was accepted')
}

describe('importing what tfjs model.save() writes', () => {
  it('gives the topology and the weights in the order of model.weights, from one file or several shards', async () => {
    const model = penguinModel()
    const expected = await readModelWeights(model)
    for (const shardBytes of [undefined, 100]) {
      const files = await savedModelFiles(model, shardBytes ? { shardBytes } : {})
      if (shardBytes) expect(files.weights.size).toBeGreaterThan(1)
      const imported = await importModel(files.modelJson, files.weights)
      expect(imported.initialWeights.shapes).toEqual([[10, 8], [8], [8, 3], [3]])
      expect(imported.initialWeights).toEqual(expected)
      expect(imported.inputShape).toEqual([10])
      expect(imported.outputUnits).toBe(3)
      expect((imported.topology as { class_name: string }).class_name).toBe('Sequential')
    }
  })

  it('names a missing weight file, a wrong byte length, a non-float32 weight and a shape that does not fit', async () => {
    const files = await savedModelFiles(penguinModel())
    const missing = await refusal(() => importModel(files.modelJson, new Map()))
    expect(missing.code).toBe('missing_weight_file')
    expect(missing.message).toBe('weight file "model.weights.bin" named in model.json was not uploaded')

    const short = new Map([['model.weights.bin', files.weights.get('model.weights.bin')!.slice(4)]])
    const length = await refusal(() => importModel(files.modelJson, short))
    expect(length.code).toBe('wrong_byte_length')
    expect(length.message).toBe('weight file "model.weights.bin": 456 bytes, but model.json\'s weights (h/kernel, h/bias, out/kernel, out/bias) need 460')

    const json = JSON.parse(files.modelJson)
    json.weightsManifest[0].weights[1].dtype = 'int32'
    expect((await refusal(() => importModel(JSON.stringify(json), files.weights))).message).toBe(
      'weight "h/bias": dtype int32; only unquantized float32 weights can be trained',
    )

    const reshaped = JSON.parse(files.modelJson)
    reshaped.weightsManifest[0].weights[0].shape = [8, 10]
    const shape = await refusal(() => importModel(JSON.stringify(reshaped), files.weights))
    expect(shape.code).toBe('weight_mismatch')
    expect(shape.message).toBe('weight "h/kernel": the file gives shape [8,10], the layer needs [10,8]')

    expect((await refusal(() => importModel('{"format":', files.weights))).code).toBe('bad_model_json')
  })

  it('refuses random and unknown layers, and a softmax output, by layer name', async () => {
    const dropout = await savedModelFiles(penguinModel([tf.layers.dropout({ name: 'drop', rate: 0.5 })]))
    const e1 = await refusal(() => importModel(dropout.modelJson, dropout.weights))
    expect(e1.code).toBe('nondeterministic_layer')
    expect(e1.message).toMatch(/^layer "drop" \(Dropout\): draws a random mask each step/)

    const lstmModel = tf.sequential({ layers: [tf.layers.lstm({ name: 'rnn', units: 4, inputShape: [5, 3] }), tf.layers.dense({ name: 'o', units: 2 })] })
    const lstm = await savedModelFiles(lstmModel)
    const e2 = await refusal(() => importModel(lstm.modelJson, lstm.weights))
    expect(e2.code).toBe('unknown_layer')
    expect(e2.message).toBe('layer "rnn" (LSTM): not a layer TabTrain trains; supported: InputLayer, Dense, Flatten, Reshape, Conv2D, MaxPooling2D')

    const softmax = await savedModelFiles(penguinModel([], tf.layers.dense({ name: 'probs', units: 3, activation: 'softmax' })))
    const e3 = await refusal(() => importModel(softmax.modelJson, softmax.weights))
    expect(e3.code).toBe('bad_output')
    expect(e3.message).toBe(
      'layer "probs" (Dense): the last layer must be linear (activation "linear"), because training applies softmax cross-entropy to the model\'s outputs; it has "softmax"',
    )
  })

  it('checks the model against the data set: input size and classes', async () => {
    const files = await savedModelFiles(penguinModel())
    const model = await importModel(files.modelJson, files.weights)
    expect(() => checkModelAgainstData(model, { exampleSize: 10, classes: 3, describe: 'penguins.csv (10 features)' })).not.toThrow()
    const input = await refusal(() => checkModelAgainstData(model, { exampleSize: 7, classes: 3, describe: 'penguins.csv (7 features)' }))
    expect(input.code).toBe('model_data_mismatch')
    expect(input.message).toBe("the model's input has shape [10] (10 values per example), but penguins.csv (7 features) gives 7 values per example")
    const classes = await refusal(() => checkModelAgainstData(model, { exampleSize: 10, classes: 4, describe: 'penguins.csv' }))
    expect(classes.message).toBe("the model's last layer has 3 units, but penguins.csv has 4 classes")
  })
})

describe('which kernel bundle runs a model', () => {
  const conv = () =>
    tf.sequential({
      layers: [
        tf.layers.conv2d({ name: 'c', filters: 2, kernelSize: 3, activation: 'relu', inputShape: [8, 8, 1] }),
        tf.layers.maxPooling2d({ name: 'mp', poolSize: 2 }),
        tf.layers.flatten({ name: 'f' }),
        tf.layers.dense({ name: 'd', units: 3 }),
      ],
    })

  it('runs dense models on both bundles and convolutions on the default bundle only, saying why', async () => {
    const dense = penguinModel().toJSON(undefined, false) as unknown as Record<string, unknown>
    checkModelForBundle(dense, KERNEL_BUNDLE)
    checkModelForBundle(dense, EXACT_KERNEL_BUNDLE)
    const topology = conv().toJSON(undefined, false) as unknown as Record<string, unknown>
    checkModelForBundle(topology, KERNEL_BUNDLE)
    const exact = await refusal(() => checkModelForBundle(topology, EXACT_KERNEL_BUNDLE))
    expect(exact.code).toBe('unsupported_by_bundle')
    expect(exact.message).toMatch(/^layer "c" \(Conv2D\) needs Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput, which exact mode has no exact form for yet/)
    expect((await refusal(() => checkModelForBundle(dense, 'someone-elses-kernels'))).code).toBe('unsupported_by_bundle')
  })

  it('lists, per layer, exactly the kernels tfjs dispatches when a unit trains it (cpu backend, same kernel names)', async () => {
    const model = conv()
    const x = tf.randomUniform([4, 8, 8, 1])
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0], 'int32'), 3)
    const optimizer = tf.train.adam(0.01)
    const profile = await tf.profile(() => {
      optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar)
    })
    const ran = new Set(profile.kernels.map((k) => k.name).filter((n) => !n.endsWith('__op')))
    const listed = new Set([...Object.values(LAYER_KERNELS).flat(), ...Object.values(ACTIVATION_KERNELS).flat()])
    // Layer kernels that ran are listed; Conv2DBackpropInput only runs for a conv layer above another trainable layer.
    for (const k of ['Conv2D', 'Conv2DBackpropFilter', 'MaxPool', 'MaxPoolGrad', 'Relu', 'Step', '_FusedMatMul', 'BatchMatMul']) {
      expect(ran.has(k), k).toBe(true)
      expect(listed.has(k), k).toBe(true)
    }
    // Every kernel the table names is audited for the default bundle; the exact-mode table's dense kernels are covered.
    for (const k of listed) expect(k in KERNEL_AUDIT, k).toBe(true)
    const exactCovered = new Set<string>([...EXACT_KERNELS, ...EXACT_PASSTHROUGH_KERNELS])
    for (const k of [...LAYER_KERNELS.Dense!, ...LAYER_KERNELS.Flatten!, ...ACTIVATION_KERNELS.relu!]) expect(exactCovered.has(k), k).toBe(true)
    tf.dispose([x, y])
  })
})
