import type { Address } from 'viem'
import {
  UpdateCodecError,
  decodeUpdate,
  findNonFinite,
  sameShapes,
  sha256Hex,
  type Hash,
  type SubmissionHeader,
  type TensorList,
  type UpdateCompression,
} from '../src/protocol/index.ts'
import { CoordinatorError } from './errors.ts'
import type { AttemptRow, JobRow } from './rows.ts'

export interface SubmissionFacts {
  leaseId: string
  /** The decoded submission: signed claim and update bytes. */
  signed: SubmissionHeader
  update: Uint8Array
  /** Who the claim's signature recovers to (null: it does not recover). */
  signer: Address | null
  /** The lease's attempt row, null when no such lease was ever issued. */
  attempt: AttemptRow | null
  job: Pick<JobRow, 'id' | 'round' | 'checkpoint' | 'status'>
  /** S of the job (`maxStaleness`): how many rounds behind the job's an answer's round may be. */
  maxStaleness: number
  /** The model's tensor shapes, which every update must have. */
  shapes: readonly (readonly number[])[]
  /** How the job's updates travel (`training.compression`); absent: float32 tensor bytes. */
  compression?: UpdateCompression
  now: number
}

export interface CheckedSubmission {
  attempt: AttemptRow
  outputHash: Hash
  tensors: TensorList
}

/**
 * Every check a submission must pass before anything is recorded, as one pure function: no store, no
 * clock, no network, so each refusal is tested on its own. Throws CoordinatorError with the stable code of
 * the first check that fails, in this order: signature, lease, owner, claim ↔ lease, replay, round,
 * expiry, input, output hash, tensor bytes, shapes, finiteness.
 */
export function checkSubmission(facts: SubmissionFacts): CheckedSubmission {
  const { signed, signer, attempt, job, leaseId } = facts
  const { claim } = signed
  if (signer === null || signer !== claim.contributor) {
    throw new CoordinatorError(
      'bad_signature',
      signer === null
        ? 'the claim signature cannot be recovered'
        : `the claim signature recovers to ${signer}, not to the claimed contributor ${claim.contributor}`,
    )
  }
  if (!attempt) throw new CoordinatorError('lease_not_found', `no lease ${leaseId}`)
  // Whose lease it is comes first, and says nothing about the lease: someone who learned another
  // address's lease id learns neither its unit nor its owner.
  if (attempt.contributor !== claim.contributor) {
    throw new CoordinatorError('lease_not_yours', `lease ${leaseId} is not a lease of ${claim.contributor}`)
  }
  if (attempt.job_id !== claim.jobId || attempt.round !== claim.round || attempt.unit !== claim.unit) {
    throw new CoordinatorError(
      'claim_mismatch',
      `lease ${leaseId} is for job ${attempt.job_id} round ${attempt.round} unit ${attempt.unit}, the claim names job ${claim.jobId} round ${claim.round} unit ${claim.unit}`,
    )
  }
  if (attempt.status === 'submitted' || attempt.status === 'late') {
    throw new CoordinatorError('already_submitted', `round ${attempt.round} unit ${attempt.unit} already has an answer for this lease (replayed claim)`)
  }
  if (job.round - claim.round > facts.maxStaleness || job.status === 'finished') {
    throw new CoordinatorError(
      'stale_round',
      job.status === 'finished'
        ? `the claim is for round ${claim.round}, and the job has finished`
        : `the claim is for round ${claim.round}, the job is at round ${job.round}` +
          (facts.maxStaleness ? ` and averages answers at most ${facts.maxStaleness} round(s) old` : ''),
    )
  }
  if (attempt.status === 'released') {
    throw new CoordinatorError('lease_expired', `lease ${leaseId} was handed back by its holder; the unit went back to the queue`)
  }
  if (attempt.status === 'revoked') {
    throw new CoordinatorError('lease_expired', `lease ${leaseId} was revoked: its holder was caught submitting wrong work`)
  }
  if (attempt.status !== 'leased' || Number(attempt.expires_at) <= facts.now) {
    throw new CoordinatorError(
      'lease_expired',
      `lease ${leaseId} expired at ${new Date(Number(attempt.expires_at)).toISOString()}; the unit went back to the queue`,
    )
  }
  // The checkpoint the lease was issued with: the round's (a synchronous round's units all start from
  // job.checkpoint) or, for a check of an earlier round's unit, that round's.
  if (claim.inputHash !== attempt.input_hash) {
    throw new CoordinatorError('wrong_input', `the claim's input hash ${claim.inputHash} is not round ${attempt.round}'s checkpoint ${attempt.input_hash}`)
  }
  const outputHash = sha256Hex(facts.update)
  if (outputHash !== claim.outputHash) {
    throw new CoordinatorError('hash_mismatch', `the update hashes to ${outputHash}, the claim says ${claim.outputHash}`)
  }
  let tensors: TensorList
  try {
    tensors = decodeUpdate(facts.compression, facts.update)
  } catch (error) {
    if (!(error instanceof UpdateCodecError)) throw error
    // A NaN or infinite int8 scale is a non-finite update like a NaN float32 value, not a framing error.
    if (error.code === 'non_finite_scale') throw new CoordinatorError('non_finite_update', `update: ${error.message}`)
    throw new CoordinatorError('malformed_submission', `update: ${error.message}`)
  }
  if (!sameShapes(tensors.shapes, facts.shapes)) {
    throw new CoordinatorError('wrong_shapes', `update shapes ${JSON.stringify(tensors.shapes)} differ from the model's ${JSON.stringify(facts.shapes)}`)
  }
  const bad = findNonFinite(tensors)
  if (bad) throw new CoordinatorError('non_finite_update', `update tensor ${bad.tensor} holds ${bad.value} at index ${bad.index}`)
  return { attempt, outputHash, tensors }
}
