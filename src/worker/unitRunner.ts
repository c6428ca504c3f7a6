import type * as tf from '@tensorflow/tfjs'
import { labelledSetFromIdx, parseIdx, type LabelledSet } from '../data/idx.ts'
import { decodeTensorList, jobSpecHash, type Hash, type JobSpec, type TensorList, type WorkUnit } from '../protocol/index.ts'
import { buildModel } from '../training/model.ts'
import { trainUnit } from '../training/trainUnit.ts'
import type { BlobSource } from './blobSource.ts'

export interface UnitTimings {
  /** Checkpoint and data shards: network or cache. */
  fetchMs: number
  trainMs: number
  hashMs: number
}

export interface UnitOutput {
  unit: WorkUnit
  outputHash: Hash
  updateBytes: Uint8Array
  examples: number
  /** Training loss per inner step. */
  losses: number[]
  meanLoss: number
  timings: UnitTimings
  /** The device class the unit ran under, when the executor knows it (the browser Worker does). */
  deviceClass?: string
  /** How many times the GPU device was lost during the unit, each time re-created and the unit redone (worker.ts). */
  deviceLosses?: number
}

export class SpecIntegrityError extends Error {
  override name = 'SpecIntegrityError'
}

/**
 * Runs units of any job: fetches the checkpoint and the training shard (through `source`, which caches
 * and checks hashes), keeps the job's model and decoded data between units, and trains. Shared by the
 * browser Worker and Node contributors.
 */
export function createUnitRunner(source: BlobSource, now: () => number = () => performance.now()) {
  const models = new Map<Hash, Promise<tf.LayersModel>>()
  const trainSets = new Map<string, Promise<LabelledSet>>()
  let lastCheckpoint: { hash: Hash; list: TensorList } | null = null
  const verifiedSpecs = new Set<Hash>()

  const model = (jobId: Hash, spec: JobSpec) => {
    let m = models.get(jobId)
    if (!m) {
      m = buildModel(spec)
      m.catch(() => models.delete(jobId))
      models.set(jobId, m)
    }
    return m
  }

  const trainSet = (spec: JobSpec) => {
    const key = `${spec.data.train.images}/${spec.data.train.labels}`
    let set = trainSets.get(key)
    if (!set) {
      set = (async () => {
        const [images, labels] = await Promise.all([source.get(spec.data.train.images), source.get(spec.data.train.labels)])
        return labelledSetFromIdx(parseIdx(images), parseIdx(labels))
      })()
      set.catch(() => trainSets.delete(key))
      trainSets.set(key, set)
    }
    return set
  }

  const checkpoint = async (hash: Hash) => {
    if (lastCheckpoint?.hash === hash) return lastCheckpoint.list
    // Kept in a local: a call for another checkpoint may replace lastCheckpoint while this one downloads.
    const list = decodeTensorList(await source.get(hash))
    lastCheckpoint = { hash, list }
    return list
  }

  return {
    /** The job's model as this runner built it (cached per job): the Worker checks the batch against the device with it. */
    model: (spec: JobSpec, unit: WorkUnit) => model(unit.jobId, spec),
    /**
     * Fetches, while another unit computes, what `unit` will need: its checkpoint's bytes (into `source`'s
     * cache) and the job's training shards. Nothing is put on the device.
     */
    async prefetch(spec: JobSpec, unit: WorkUnit): Promise<void> {
      await Promise.all([source.get(unit.inputHash), trainSet(spec)])
    },
    async run(spec: JobSpec, unit: WorkUnit): Promise<UnitOutput> {
      if (!verifiedSpecs.has(unit.jobId)) {
        if (jobSpecHash(spec) !== unit.jobId) throw new SpecIntegrityError(`job spec does not hash to ${unit.jobId}`)
        verifiedSpecs.add(unit.jobId)
      }
      const t0 = now()
      const [m, train, start] = await Promise.all([model(unit.jobId, spec), trainSet(spec), checkpoint(unit.inputHash)])
      const fetchMs = now() - t0
      const result = await trainUnit({ spec, unit, model: m, checkpoint: start, train, now })
      const meanLoss = result.losses.reduce((a, b) => a + b, 0) / Math.max(1, result.losses.length)
      return {
        unit,
        outputHash: result.outputHash,
        updateBytes: result.updateBytes,
        examples: result.examples,
        losses: result.losses,
        meanLoss,
        timings: { fetchMs, trainMs: result.trainMs, hashMs: result.hashMs },
      }
    },
  }
}

export type UnitRunner = ReturnType<typeof createUnitRunner>
