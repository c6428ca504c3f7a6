import type * as tf from '@tensorflow/tfjs'
import { sameShapes, type Hash, type TensorList } from '../protocol/index.ts'

/**
 * A checkpoint as the files `model.save()` writes, so that stock `tf.loadLayersModel(url)` loads a trained
 * model unchanged: `model.json` (format `layers-model`, the job's topology, a weights manifest) and one
 * `weights.bin` of little-endian float32 values in the manifest's order. No I/O here: the coordinator
 * serves what this builds (coordinator/modelDownload.ts).
 */

/** One weight as the manifest names it. */
export interface WeightEntry {
  name: string
  shape: number[]
}

/** What TabTrain adds to `userDefinedMetadata`, so a downloaded model says which checkpoint it is. */
export interface TabTrainModelMetadata {
  jobId: Hash
  /** The closed round whose output this is. */
  round: number
  /** SHA-256 of the checkpoint's canonical tensor bytes (the hash rounds and claims name). */
  checkpointHash: Hash
}

/** The `model.json` a tfjs Layers model is loaded from. */
export interface LayersModelJson {
  format: 'layers-model'
  generatedBy: string
  convertedBy: null
  modelTopology: Record<string, unknown>
  weightsManifest: Array<{ paths: string[]; weights: Array<{ name: string; shape: number[]; dtype: 'float32' }> }>
  userDefinedMetadata: { tabtrain: TabTrainModelMetadata }
}

/**
 * The names a loader will look the weights up by, in the model's weight order (the order checkpoints are
 * stored in). tfjs matches saved weights to a fresh model's by `originalName` (layer name + weight name,
 * e.g. `dense_Dense1/kernel`), not by `name`, which carries a suffix when the same topology was built
 * before in this process (`dense_Dense1/kernel_1`): using `name` would leak that process-wide counter.
 */
export function weightEntries(model: tf.LayersModel): WeightEntry[] {
  return model.weights.map((w) => ({ name: w.originalName, shape: [...w.shape] as number[] }))
}

export function layersModelJson(params: {
  /** The job spec's `model.topology` (a Layers model's `toJSON()`). */
  topology: Record<string, unknown>
  weights: readonly WeightEntry[]
  /** Where the weights file is, relative to the `model.json` URL (tfjs resolves it against that URL's folder). */
  weightsPath: string
  metadata: TabTrainModelMetadata
}): LayersModelJson {
  return {
    format: 'layers-model',
    generatedBy: 'TabTrain',
    convertedBy: null,
    modelTopology: params.topology,
    weightsManifest: [{ paths: [params.weightsPath], weights: params.weights.map((w) => ({ name: w.name, shape: [...w.shape], dtype: 'float32' })) }],
    userDefinedMetadata: { tabtrain: { ...params.metadata } },
  }
}

/** The checkpoint's values as one weights file: float32 little-endian, tensor after tensor, no header. */
export function weightsBin(checkpoint: TensorList, weights: readonly WeightEntry[]): Uint8Array {
  if (!sameShapes(checkpoint.shapes, weights.map((w) => w.shape))) {
    throw new Error(`checkpoint shapes ${JSON.stringify(checkpoint.shapes)} do not match the model's ${JSON.stringify(weights.map((w) => w.shape))}`)
  }
  const total = checkpoint.values.reduce((n, v) => n + v.length, 0)
  const out = new Uint8Array(total * 4)
  const view = new DataView(out.buffer)
  let offset = 0
  for (const values of checkpoint.values) {
    for (let i = 0; i < values.length; i++, offset += 4) view.setFloat32(offset, values[i]!, true)
  }
  return out
}
