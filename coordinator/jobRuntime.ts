import type * as tf from '@tensorflow/tfjs'
import { labelledSetFromIdx, parseIdx, type LabelledSet } from '../src/data/idx.ts'
import type { JobSpec } from '../src/protocol/index.ts'
import { buildModel } from '../src/training/model.ts'
import type { BlobStore } from './blobs.ts'

/** What the coordinator keeps per job in memory: its model and held-out set for evaluation, and sizes. */
export interface JobRuntime {
  spec: JobSpec
  model: tf.LayersModel
  heldOut: LabelledSet
  shapes: number[][]
  /** Size of a full update in canonical tensor bytes: the bound on every submission's body. */
  updateBytes: number
}

/**
 * Builds each job's runtime once per process and shares it: building a model and decoding the held-out
 * set cost more than a whole round's bookkeeping. A failed build is forgotten so the next call retries.
 */
export class JobRuntimes {
  private readonly runtimes = new Map<string, Promise<JobRuntime>>()

  constructor(private readonly blobs: Pick<BlobStore, 'get'>) {}

  get(jobId: string, spec: JobSpec): Promise<JobRuntime> {
    let runtime = this.runtimes.get(jobId)
    if (!runtime) {
      runtime = (async () => {
        const model = await buildModel(spec)
        const heldOut = labelledSetFromIdx(
          parseIdx(await this.blobs.get(spec.data.heldOut.images)),
          parseIdx(await this.blobs.get(spec.data.heldOut.labels)),
        )
        const shapes = model.weights.map((w) => w.shape as number[])
        const floats = shapes.reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0)
        const header = 8 + shapes.reduce((n, shape) => n + 4 * (1 + shape.length), 0)
        return { spec, model, heldOut, shapes, updateBytes: header + 4 * floats }
      })()
      runtime.catch(() => this.runtimes.delete(jobId))
      this.runtimes.set(jobId, runtime)
    }
    return runtime
  }
}
