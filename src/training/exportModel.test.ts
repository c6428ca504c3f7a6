import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import type { Hash } from '../protocol/index.ts'
import { layersModelJson, weightEntries, weightsBin } from './exportModel.ts'

const topology = (() => {
  const model = tf.sequential({
    name: 'export_test',
    layers: [tf.layers.dense({ name: 'hidden', inputShape: [3], units: 2, activation: 'relu' }), tf.layers.dense({ name: 'logits', units: 2 })],
  })
  const json = model.toJSON(null, false) as unknown as Record<string, unknown>
  model.dispose()
  return json
})()

const metadata = { jobId: `0x${'ab'.repeat(32)}` as Hash, round: 4, checkpointHash: `0x${'cd'.repeat(32)}` as Hash }

describe('exporting a checkpoint as a tfjs Layers model', () => {
  it('names weights as a fresh model of the topology does, however often this process built it', async () => {
    const first = await tf.models.modelFromJSON({ modelTopology: topology } as unknown as tf.io.ModelJSON)
    const second = await tf.models.modelFromJSON({ modelTopology: topology } as unknown as tf.io.ModelJSON)
    // The second build's variables carry a process-wide suffix; the names a loader matches do not.
    expect(second.weights.map((w) => w.name)).not.toEqual(first.weights.map((w) => w.name))
    expect(weightEntries(second)).toEqual(weightEntries(first))
    expect(weightEntries(first)).toEqual([
      { name: 'hidden/kernel', shape: [3, 2] },
      { name: 'hidden/bias', shape: [2] },
      { name: 'logits/kernel', shape: [2, 2] },
      { name: 'logits/bias', shape: [2] },
    ])
    first.dispose()
    second.dispose()
  })

  it('writes model.json as model.save() would, with the checkpoint in its metadata', () => {
    const weights = [{ name: 'hidden/kernel', shape: [3, 2] }]
    expect(layersModelJson({ topology, weights, weightsPath: 'weights.bin', metadata })).toEqual({
      format: 'layers-model',
      generatedBy: 'TabTrain',
      convertedBy: null,
      modelTopology: topology,
      weightsManifest: [{ paths: ['weights.bin'], weights: [{ name: 'hidden/kernel', shape: [3, 2], dtype: 'float32' }] }],
      userDefinedMetadata: { tabtrain: metadata },
    })
  })

  it('writes the weights as float32 little-endian, tensor after tensor, and refuses a checkpoint of other shapes', () => {
    const entries = [
      { name: 'a', shape: [2] },
      { name: 'b', shape: [1] },
    ]
    const bin = weightsBin({ shapes: [[2], [1]], values: [Float32Array.of(1, -2.5), Float32Array.of(0.1)] }, entries)
    expect(Array.from(bin.subarray(0, 4))).toEqual([0x00, 0x00, 0x80, 0x3f]) // 1.0f, little-endian
    const view = new DataView(bin.buffer)
    expect([view.getFloat32(0, true), view.getFloat32(4, true), view.getFloat32(8, true)]).toEqual([1, -2.5, Math.fround(0.1)])
    expect(() => weightsBin({ shapes: [[3]], values: [new Float32Array(3)] }, entries)).toThrow(/do not match the model/)
  })

  it('round-trips through tf.loadLayersModel: the loaded model holds the checkpoint', async () => {
    const model = await tf.models.modelFromJSON({ modelTopology: topology } as unknown as tf.io.ModelJSON)
    const entries = weightEntries(model)
    const values = entries.map((e, t) => Float32Array.from({ length: e.shape.reduce((a, b) => a * b, 1) }, (_, i) => t + i / 10))
    const bin = weightsBin({ shapes: entries.map((e) => e.shape), values }, entries)
    const json = layersModelJson({ topology, weights: entries, weightsPath: 'weights.bin', metadata })
    const loaded = await tf.loadLayersModel(
      tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0]!.weights, weightData: bin.slice().buffer }),
    )
    const read = await Promise.all(loaded.weights.map(async (w) => Array.from(await w.read().data())))
    expect(read).toEqual(values.map((v) => Array.from(v)))
    model.dispose()
    loaded.dispose()
  })
})
