/**
 * A requester's own model, as tfjs `model.save()` writes it: `model.json` (`modelTopology` and a
 * `weightsManifest` of groups, each group's weights stored back to back, little-endian, across the
 * group's `paths`) and the weight files it names. Parsed into the spec's topology and the initial
 * checkpoint, in the order the coordinator's checkpoints use (`model.weights`, as readModelWeights and
 * setModelWeights in model.ts), after every check a job needs: known deterministic layers, a linear
 * output, float32 weights of the right byte lengths and shapes, and no weight missing or left over.
 * Nothing here touches storage; a refusal is a ModelFileError naming the file, layer or weight.
 */
import * as tf from '@tensorflow/tfjs'
import type { TensorList } from '../protocol/index.ts'
import { checkLayers, topologyLayers } from './layerSupport.ts'
import { ModelFileError } from './modelFileError.ts'

export { ModelFileError, type ModelFileErrorCode } from './modelFileError.ts'
export { checkModelForBundle } from './layerSupport.ts'

export interface ImportedModel {
  topology: Record<string, unknown>
  initialWeights: TensorList
  /** One example's shape as the model takes it (its input without the batch axis). */
  inputShape: number[]
  /** Units of the output layer: the classes it can score. */
  outputUnits: number
}

interface ManifestWeight {
  name: string
  shape: number[]
  dtype?: string
  quantization?: unknown
}

/** The name a manifest path refers to: model.save() writes `./model.weights.bin`; uploads carry the file name only. */
export function weightFileName(path: string): string {
  return path.split('/').pop()!
}

function parseModelJson(bytes: Uint8Array | string): { topology: Record<string, unknown>; manifest: { paths: string[]; weights: ManifestWeight[] }[] } {
  let json: unknown
  try {
    json = JSON.parse(typeof bytes === 'string' ? bytes : new TextDecoder().decode(bytes))
  } catch (error) {
    throw new ModelFileError('bad_model_json', `model.json: not JSON (${(error as Error).message})`)
  }
  const j = json as { modelTopology?: unknown; weightsManifest?: unknown }
  if (!j || typeof j !== 'object' || !j.modelTopology || typeof j.modelTopology !== 'object') {
    throw new ModelFileError('bad_model_json', 'model.json: no modelTopology; upload the model.json that tfjs model.save() writes')
  }
  if (!Array.isArray(j.weightsManifest)) throw new ModelFileError('bad_model_json', 'model.json: no weightsManifest')
  const manifest = j.weightsManifest.map((group, g) => {
    const gr = group as { paths?: unknown; weights?: unknown }
    if (!Array.isArray(gr.paths) || !gr.paths.every((p) => typeof p === 'string') || !Array.isArray(gr.weights)) {
      throw new ModelFileError('bad_model_json', `model.json: weightsManifest[${g}] needs paths (file names) and weights`)
    }
    for (const w of gr.weights as ManifestWeight[]) {
      if (typeof w?.name !== 'string' || !Array.isArray(w.shape) || !w.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new ModelFileError('bad_model_json', `model.json: weightsManifest[${g}] has a weight without a name or shape`)
      }
    }
    return { paths: gr.paths as string[], weights: gr.weights as ManifestWeight[] }
  })
  return { topology: j.modelTopology as Record<string, unknown>, manifest }
}

/**
 * Parses model.json and its weight files (by the names model.json gives them; a path's folder is ignored)
 * into the topology and the initial checkpoint. Throws ModelFileError.
 */
export async function importModel(modelJson: Uint8Array | string, weightFiles: ReadonlyMap<string, Uint8Array>): Promise<ImportedModel> {
  const { topology, manifest } = parseModelJson(modelJson)
  checkLayers(topologyLayers(topology))

  // Weight values by manifest name, each group's files concatenated in order.
  const values = new Map<string, { shape: number[]; data: Float32Array }>()
  for (const group of manifest) {
    for (const w of group.weights) {
      if ((w.dtype ?? 'float32') !== 'float32' || w.quantization !== undefined) {
        throw new ModelFileError('not_float32', `weight "${w.name}": dtype ${w.dtype}${w.quantization ? ', quantized' : ''}; only unquantized float32 weights can be trained`)
      }
    }
    const files = group.paths.map((path) => {
      const bytes = weightFiles.get(weightFileName(path))
      if (!bytes) throw new ModelFileError('missing_weight_file', `weight file "${weightFileName(path)}" named in model.json was not uploaded`)
      return bytes
    })
    const expected = group.weights.reduce((n, w) => n + 4 * w.shape.reduce((a, b) => a * b, 1), 0)
    const actual = files.reduce((n, f) => n + f.byteLength, 0)
    if (actual !== expected) {
      const names = group.paths.map((p) => `"${weightFileName(p)}"`).join(' + ')
      throw new ModelFileError('wrong_byte_length', `weight file ${names}: ${actual} bytes, but model.json's weights (${group.weights.map((w) => w.name).join(', ')}) need ${expected}`)
    }
    const joined = new Uint8Array(actual)
    let at = 0
    for (const f of files) {
      joined.set(f, at)
      at += f.byteLength
    }
    const view = new DataView(joined.buffer)
    let offset = 0
    for (const w of group.weights) {
      const size = w.shape.reduce((a, b) => a * b, 1)
      const data = new Float32Array(size)
      for (let i = 0; i < size; i++) data[i] = view.getFloat32(offset + 4 * i, true)
      offset += 4 * size
      if (values.has(w.name)) throw new ModelFileError('weight_mismatch', `model.json names weight "${w.name}" twice`)
      values.set(w.name, { shape: w.shape, data })
    }
  }

  let model: tf.LayersModel
  try {
    model = await tf.models.modelFromJSON({ modelTopology: topology } as unknown as tf.io.ModelJSON)
  } catch (error) {
    throw new ModelFileError('bad_topology', `model.json: tfjs cannot build this topology: ${(error as Error).message}`)
  }
  try {
    const shapes: number[][] = []
    const list: Float32Array[] = []
    for (const weight of model.weights) {
      // model.save() names weights by their original (scoped) name, e.g. "hidden/kernel".
      const name = (weight as unknown as { originalName: string }).originalName
      const value = values.get(name)
      if (!value) throw new ModelFileError('weight_mismatch', `weight "${name}" of the model is not in model.json's weightsManifest`)
      if (value.shape.length !== weight.shape.length || value.shape.some((d, i) => d !== weight.shape[i])) {
        throw new ModelFileError('weight_mismatch', `weight "${name}": the file gives shape [${value.shape.join(',')}], the layer needs [${weight.shape.join(',')}]`)
      }
      const bad = value.data.findIndex((v) => !Number.isFinite(v))
      if (bad >= 0) throw new ModelFileError('weight_mismatch', `weight "${name}": element ${bad} is not finite`)
      values.delete(name)
      shapes.push(weight.shape as number[])
      list.push(value.data)
    }
    if (values.size > 0) throw new ModelFileError('weight_mismatch', `model.json lists weights no layer has: ${[...values.keys()].join(', ')}`)
    if (model.inputs.length !== 1 || model.outputs.length !== 1) {
      throw new ModelFileError('bad_topology', `the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs; one of each is needed`)
    }
    const output = model.outputs[0]!.shape
    if (output.length !== 2) throw new ModelFileError('bad_output', `the model's output has shape [${output.join(',')}]; a [batch, classes] output is needed`)
    return {
      topology,
      initialWeights: { shapes, values: list },
      inputShape: model.inputs[0]!.shape.slice(1) as number[],
      outputUnits: output[1]!,
    }
  } finally {
    model.dispose()
  }
}

/** What a data set offers a model: items per example (after one-hot expansion) and classes. */
export interface DataFit {
  exampleSize: number
  classes: number
  /** Described for messages, e.g. "penguins.csv: 10 features". */
  describe: string
}

/** Refuses a model whose input does not take the data set's examples or whose output is not its classes. */
export function checkModelAgainstData(model: Pick<ImportedModel, 'inputShape' | 'outputUnits'>, data: DataFit): void {
  const size = model.inputShape.reduce((a, b) => a * b, 1)
  if (model.inputShape.some((d) => d === null || !(d > 0)) || size !== data.exampleSize) {
    throw new ModelFileError(
      'model_data_mismatch',
      `the model's input has shape [${model.inputShape.join(',')}] (${size} values per example), but ${data.describe} gives ${data.exampleSize} values per example`,
    )
  }
  if (model.outputUnits !== data.classes) {
    throw new ModelFileError('model_data_mismatch', `the model's last layer has ${model.outputUnits} units, but ${data.describe} has ${data.classes} classes`)
  }
}
