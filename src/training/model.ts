import * as tf from '@tensorflow/tfjs'
import { sameShapes, type JobSpec, type Shape, type TensorList } from '../protocol/index.ts'

export class ModelMismatchError extends Error {
  override name = 'ModelMismatchError'
}

/** Builds the job's Layers model from its topology; its weights are set from a checkpoint afterwards. */
export async function buildModel(spec: JobSpec): Promise<tf.LayersModel> {
  // modelFromJSON accepts the `toJSON()` object of a model (class name + config).
  return tf.models.modelFromJSON({ modelTopology: spec.model.topology } as unknown as tf.io.ModelJSON)
}

export function modelWeightShapes(model: tf.LayersModel): Shape[] {
  return model.weights.map((w) => w.shape as number[])
}

export function setModelWeights(model: tf.LayersModel, checkpoint: TensorList): void {
  const shapes = modelWeightShapes(model)
  if (!sameShapes(shapes, checkpoint.shapes)) {
    throw new ModelMismatchError(
      `checkpoint shapes ${JSON.stringify(checkpoint.shapes)} do not match the model's ${JSON.stringify(shapes)}`,
    )
  }
  const tensors = checkpoint.values.map((v, i) => tf.tensor(v, shapes[i] as number[], 'float32'))
  model.setWeights(tensors)
  tf.dispose(tensors)
}

export async function readModelWeights(model: tf.LayersModel): Promise<TensorList> {
  const values = await Promise.all(model.weights.map(async (w) => new Float32Array(await w.read().data())))
  return { shapes: modelWeightShapes(model), values }
}
