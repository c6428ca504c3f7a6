import { z } from 'zod'
import { hashSchema } from './hash.ts'

/** Unit `(jobId, round, index)`: start from the round's checkpoint and run H inner steps. */
export const workUnitSchema = z.object({
  jobId: hashSchema,
  round: z.number().int().min(0),
  unit: z.number().int().min(0),
  /** C_r: the checkpoint every unit of this round starts from. */
  inputHash: hashSchema,
})
export type WorkUnit = z.infer<typeof workUnitSchema>

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
