import { decodeTensorList, decodeUpdate, hashTensorList, type Hash, type JobSpec } from '../../src/protocol/index.ts'
import { clipToMedianNorm } from '../../src/training/aggregate.ts'
import { evaluateModel } from '../../src/training/evaluate.ts'
import { setModelWeights } from '../../src/training/model.ts'
import { outerStep } from '../../src/training/outerOptimizer.ts'
import type { JobRuntimes } from '../jobRuntime.ts'

/** What a round close computes: everything is named by hash, so it can be sent to a thread as plain data. */
export interface AggregateRequest {
  jobId: Hash
  spec: JobSpec
  /** C_r, the checkpoint the averaged update is applied to. */
  base: Hash
  /** The outer momentum after the previous round (`nesterov`), null before the first round or for `average`. */
  momentum: Hash | null
  /** The round's answers in averaging order (the caller's order is part of the protocol: round, then unit). */
  updates: { hash: Hash; examples: number }[]
}

export interface AggregateResult {
  checkpoint: { hash: Hash; bytes: Uint8Array }
  momentum: { hash: Hash; bytes: Uint8Array } | null
  clipped: number
  heldOutLoss: number
  heldOutAccuracy: number
}

/**
 * C_{r+1} from C_r and the round's answers: each update's norm bounded by the round's median, then the job's
 * outer optimizer (src/training/outerOptimizer.ts). A round with no update keeps its base (and its momentum).
 * Deterministic, so a rebuild or another coordinator gets the same bits. The result is evaluated on the
 * held-out split. Pure apart from `get` (blobs by hash) and the model in `runtimes`; it runs on the
 * aggregation thread (aggregationPool.ts) so that a round close never blocks leases and submissions.
 */
export async function computeAggregate(
  request: AggregateRequest,
  get: (hash: Hash) => Promise<Uint8Array>,
  runtimes: JobRuntimes,
): Promise<AggregateResult> {
  const { spec } = request
  const checkpoint = decodeTensorList(await get(request.base))
  let next = checkpoint
  let momentum = request.momentum ? decodeTensorList(await get(request.momentum)) : null
  let clipped = 0
  if (request.updates.length > 0) {
    const updates = await Promise.all(request.updates.map(async (u) => ({ update: decodeUpdate(spec.training.compression, await get(u.hash)), examples: u.examples })))
    const bounded = clipToMedianNorm(updates)
    clipped = bounded.clipped
    const stepped = outerStep({ checkpoint, momentum, updates: bounded.updates, training: spec.training })
    next = stepped.next
    momentum = stepped.momentum
  }
  const nextBytes = hashTensorList(next)
  const runtime = await runtimes.get(request.jobId, spec)
  setModelWeights(runtime.model, decodeTensorList(nextBytes.bytes))
  const evaluation = await evaluateModel(runtime.model, spec, runtime.heldOut)
  return {
    checkpoint: nextBytes,
    momentum: momentum ? hashTensorList(momentum) : null,
    clipped,
    heldOutLoss: evaluation.loss,
    heldOutAccuracy: evaluation.accuracy,
  }
}
