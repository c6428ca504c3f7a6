import { decodeTensorList, type Hash } from '../src/protocol/index.ts'
import { layersModelJson, weightEntries, weightsBin, type LayersModelJson, type WeightEntry } from '../src/training/exportModel.ts'
import { buildModel } from '../src/training/model.ts'
import type { BlobStore } from './blobs.ts'
import type { Queryable } from './db.ts'
import { CoordinatorError } from './errors.ts'
import { jobRow, type JobRow } from './rows.ts'

/** A closed round's checkpoint, as a download names it. */
export interface ModelCheckpoint {
  jobId: Hash
  round: number
  /** The checkpoint the round produced (rebuilt if work in it was later found wrong). */
  checkpointHash: Hash
}

/**
 * The trained model of any closed round as stock `tf.loadLayersModel` loads it: `model.json` and
 * `weights.bin` (src/training/exportModel.ts). Round r's model is the checkpoint round r produced; a round
 * that was rebuilt without rejected work serves its rebuilt checkpoint, the one the job page shows.
 */
export class ModelDownloads {
  /** Weight names per job: the same for every checkpoint of a job, read once from a model built from its topology. */
  private readonly names = new Map<Hash, Promise<WeightEntry[]>>()

  constructor(private readonly options: { db: Queryable; blobs: BlobStore }) {}

  /**
   * Round `roundInput` of the job if it closed, or its latest closed round when `roundInput` is 'latest'.
   * 404s: `job_not_found`, `round_not_found` (the job has no such round), `round_not_closed` (not closed
   * yet), `no_model_yet` (no round closed yet).
   */
  async checkpoint(jobId: string, roundInput: string | 'latest'): Promise<ModelCheckpoint & { job: JobRow }> {
    const job = await jobRow(this.options.db, jobId)
    if (roundInput === 'latest') {
      const [last] = await this.options.db.query<{ round: number; output_hash: Hash }>(
        `SELECT round, output_hash FROM rounds WHERE job_id = $1 ORDER BY round DESC LIMIT 1`,
        [job.id],
      )
      if (!last) throw new CoordinatorError('no_model_yet', `job ${job.id} has not closed a round yet; there is no trained model to download`)
      return { job, jobId: job.id, round: Number(last.round), checkpointHash: last.output_hash }
    }
    if (!/^(0|[1-9][0-9]{0,8})$/.test(roundInput)) throw new CoordinatorError('malformed_request', `round must be a non-negative integer, not ${JSON.stringify(roundInput)}`)
    const round = Number(roundInput)
    if (round >= job.spec.training.rounds) {
      throw new CoordinatorError('round_not_found', `job ${job.id} has ${job.spec.training.rounds} rounds (0 to ${job.spec.training.rounds - 1}); there is no round ${round}`)
    }
    const [closed] = await this.options.db.query<{ output_hash: Hash }>(`SELECT output_hash FROM rounds WHERE job_id = $1 AND round = $2`, [job.id, round])
    if (!closed) {
      throw new CoordinatorError('round_not_closed', `round ${round} of job ${job.id} has not closed yet (the job is at round ${job.round}); its model does not exist yet`)
    }
    return { job, jobId: job.id, round, checkpointHash: closed.output_hash }
  }

  /** `model.json` of a checkpoint; `weightsPath` is the weights file's URL relative to where this is served. */
  async modelJson(jobId: string, roundInput: string | 'latest', weightsPath: (round: number) => string): Promise<{ model: LayersModelJson } & ModelCheckpoint> {
    const { job, ...checkpoint } = await this.checkpoint(jobId, roundInput)
    const model = layersModelJson({
      topology: job.spec.model.topology,
      weights: await this.weightNames(job),
      weightsPath: weightsPath(checkpoint.round),
      metadata: checkpoint,
    })
    return { model, ...checkpoint }
  }

  /** `weights.bin` of a closed round's checkpoint. */
  async weights(jobId: string, roundInput: string): Promise<{ bytes: Uint8Array } & ModelCheckpoint> {
    const { job, ...checkpoint } = await this.checkpoint(jobId, roundInput)
    const tensors = decodeTensorList(await this.options.blobs.get(checkpoint.checkpointHash))
    return { bytes: weightsBin(tensors, await this.weightNames(job)), ...checkpoint }
  }

  private weightNames(job: JobRow): Promise<WeightEntry[]> {
    let names = this.names.get(job.id)
    if (!names) {
      names = (async () => {
        const model = await buildModel(job.spec)
        try {
          return weightEntries(model)
        } finally {
          model.dispose()
        }
      })()
      names.catch(() => this.names.delete(job.id))
      this.names.set(job.id, names)
    }
    return names
  }
}
