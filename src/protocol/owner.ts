import { z } from 'zod'
import { amountSchema } from './amount.ts'
import type { JobSummary } from './api.ts'

/**
 * Owner actions on a paid job (`POST /api/jobs/:jobId/{pause,resume,cancel,budget}`), by the requester its
 * spec names, signed in with Ethereum (./auth.ts).
 */

/** Body of `POST /api/jobs/:jobId/budget`: the most the job may spend, in base units of the escrow's token. */
export const setBudgetRequestSchema = z.object({ budget: amountSchema })
export type SetBudgetRequest = z.infer<typeof setBudgetRequestSchema>

export type OwnerAction = 'pause' | 'resume' | 'cancel' | 'budget'

/** Answer of every owner action: the job as it is now, and what is still out. */
export interface OwnerActionResult {
  action: OwnerAction
  job: JobSummary
  /**
   * Leases still live and answers still under check. A paused or cancelled job issues no new lease, but
   * these may still be submitted (until their lease ends) and settle, and the contributors who did the work
   * are paid for it; a cancelled job's escrow is closed once they are done and charged.
   */
  inFlight: { leases: number; checks: number }
  /** What happens next, for a person. */
  message: string
}
