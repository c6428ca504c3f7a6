import { z } from 'zod'
import { hashSchema } from './hash.ts'

/** Unit `(jobId, round, index)`: start from the round's checkpoint and run H inner steps. */
export const workUnitSchema = z.object({
  jobId: hashSchema,
  round: z.number().int().min(0),
  unit: z.number().int().min(0),
  /** C_r: the checkpoint every unit of this round starts from. */
  inputHash: hashSchema,
  /**
   * H, the inner steps of this unit (it trains on H × batchSize examples), when the coordinator sized it to
   * the contributor's request; absent: the job's `training.innerSteps`. A check of the unit gets the same H.
   */
  innerSteps: z.number().int().min(1).max(10_000).optional(),
})
export type WorkUnit = z.infer<typeof workUnitSchema>

/** H of `unit`: the one it was issued with, else the job's. */
export function unitInnerSteps(unit: Pick<WorkUnit, 'innerSteps'>, training: { innerSteps: number }): number {
  return unit.innerSteps ?? training.innerSteps
}

/**
 * The H the coordinator issues for a contributor's asked H: clamped to the job's
 * [innerSteps, maxInnerSteps]. Null when it is the job's own H (nothing asked, a fixed-H job, or asked
 * below it): the unit then carries no `innerSteps` and runs as before.
 */
export function issuedInnerSteps(training: { innerSteps: number; maxInnerSteps?: number }, asked: number | null | undefined): number | null {
  if (!asked || training.maxInnerSteps === undefined) return null
  const h = Math.min(Math.max(asked, training.innerSteps), Math.max(training.innerSteps, training.maxInnerSteps))
  return h === training.innerSteps ? null : h
}

/**
 * A unit's pay: `pricePerUnit` buys a unit of the job's own H, and a unit sized to a contributor's device is
 * paid by the examples it trained (price × examples / examplesPerUnit), rounded down to the base unit.
 */
export function unitPrice(pricePerUnit: bigint, examples: number | null | undefined, examplesPerUnit: number): bigint {
  if (examples == null || examples === examplesPerUnit || examplesPerUnit <= 0) return pricePerUnit
  return (pricePerUnit * BigInt(examples)) / BigInt(examplesPerUnit)
}

/**
 * The `innerSteps` field of the unit an answer with `examples` computed (what the coordinator recorded for
 * it, H × B): empty for the job's own H, so a re-execution (a referee, a verifier) runs the same unit.
 */
export function innerStepsOfExamples(examples: number | string | null | undefined, training: { innerSteps: number; batchSize: number }): { innerSteps?: number } {
  if (examples == null) return {}
  const h = Number(examples) / training.batchSize
  return Number.isInteger(h) && h > 0 && h !== training.innerSteps ? { innerSteps: h } : {}
}

/** Examples `unit` trains on: its H times the job's batch size. Pay and averaging weights follow it. */
export function unitExamples(unit: Pick<WorkUnit, 'innerSteps'>, training: { innerSteps: number; batchSize: number }): number {
  return unitInnerSteps(unit, training) * training.batchSize
}

export const leaseSchema = z.object({
  id: z.string().min(1).max(100),
  contributor: z.string(),
  /** ms since epoch; a submission after this is refused and the unit goes back to the queue. */
  expiresAt: z.number(),
  unit: workUnitSchema,
})
export type Lease = z.infer<typeof leaseSchema>

/** Answer to a lease request: a unit to run, a hint to come back later, or the end of the job. */
export type LeaseResponse =
  | { status: 'leased'; lease: Lease }
  | { status: 'wait'; retryAfterMs: number; reason: string }
  | { status: 'finished' }
