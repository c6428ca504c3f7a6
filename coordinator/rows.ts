import type { Address, Hex } from 'viem'
import type { Hash, JobSpec, JobStatus, WorkClaim } from '../src/protocol/index.ts'
import type { Queryable } from './db.ts'
import { CoordinatorError } from './errors.ts'

/** Rows of the store as the SQL returns them (bigint columns may arrive as strings on `pg`). */

export interface JobRow {
  id: Hash
  spec: JobSpec
  status: JobStatus
  round: number
  /** The checkpoint every unit of the current round starts from (as issued; a rebuild never changes it). */
  checkpoint: Hash
  initial_loss: number | null
  initial_accuracy: number | null
  accepted_in_round: number
  created_at: string | number
  /** The owner's cap on spending, base units (null: the whole escrow). */
  budget_cap: string | null
  /** When an owner last paused, resumed or cancelled the job (ms). */
  status_changed_at: string | number | null
}

/**
 * A unit slot of a round. `lease_id` names its primary attempt: the one whose update is averaged.
 * `check_kind`: null (not sampled), 'peer' (re-executed by another address), 'referee' (computed by
 * the coordinator itself: a canary, or the referee of a disagreement) or 'class' (a third run by an address
 * of `check_class`, the primary's device class, because the referee's own class differs and the default
 * bundle only promises the same bits within a class). `check_status`: 'wanted' (waiting for a checker),
 * 'referee' (the coordinator is computing it), 'passed'.
 */
export interface UnitRow {
  job_id: Hash
  round: number
  unit: number
  status: 'open' | 'leased' | 'accepted'
  lease_id: string | null
  leased_to: string | null
  lease_expires_at: string | number | null
  output_hash: Hash | null
  examples: number | null
  train_loss: number | null
  device_class: string | null
  check_kind: 'peer' | 'referee' | 'class' | null
  check_status: 'wanted' | 'referee' | 'passed' | null
  check_wanted_at: string | number | null
  referee_hash: Hash | null
  check_class: string | null
  /** The device class of the referee's answer (`referee_hash`). */
  referee_class: string | null
}

/**
 * One lease and the answer signed for it.
 * - `kind`: 'primary' (its update is averaged) or 'check' (its update is only compared with the primary's).
 * - `status`: 'leased', 'submitted', 'expired' (ran out unanswered), 'revoked' (its holder was caught
 *   cheating), 'late' (a validly signed answer that came after the lease ended: kept as evidence only),
 *   'released' (handed back by its holder before its time: the unit went back to the queue at once).
 * - `verdict` of a submitted answer: 'unchecked' (not sampled), 'pending' (its check is under way),
 *   'passed', 'rejected' (proven wrong: evidence for a slash), 'dropped' (removed unproven because its
 *   contributor was caught on another unit), 'inconclusive' (beyond the cross-class tolerance from the
 *   referee, and no answer of its own class settled it: neither averaged nor paid, and nobody is flagged).
 *   Payable: submitted and unchecked or passed.
 */
export interface AttemptRow {
  lease_id: string
  job_id: Hash
  round: number
  unit: number
  contributor: Address
  kind: 'primary' | 'check'
  status: 'leased' | 'submitted' | 'expired' | 'revoked' | 'late' | 'released'
  issued_at: string | number
  expires_at: string | number
  input_hash: Hash
  output_hash: Hash | null
  device_class: string | null
  claim: WorkClaim | null
  signature: Hex | null
  claim_digest: Hash | null
  examples: number | null
  train_loss: number | null
  submitted_at: string | number | null
  verdict: 'unchecked' | 'pending' | 'passed' | 'rejected' | 'dropped' | 'inconclusive' | null
  verdict_reason: string | null
  epoch: number | null
}

export async function jobRow(db: Queryable, jobId: string): Promise<JobRow> {
  const [row] = await db.query<JobRow>(`SELECT * FROM jobs WHERE id = $1`, [jobId])
  if (!row) throw new CoordinatorError('job_not_found', `no job ${jobId}`)
  return row
}

export async function attemptRow(db: Queryable, leaseId: string): Promise<AttemptRow | null> {
  const [row] = await db.query<AttemptRow>(`SELECT * FROM attempts WHERE lease_id = $1`, [leaseId])
  return row ?? null
}
