import type { FastifyInstance } from 'fastify'
import { ROUTES, type OwnerActionResult } from '../../src/protocol/index.ts'
import type { HttpOptions } from '../http.ts'
import { OwnerActions } from '../owner.ts'
import type { RegisteredRateLimits } from '../rateLimits.ts'
import { addRoute } from '../validate.ts'
import { registerAuthRoutes, signedInAddress } from './auth.ts'
import { registerModelDownloadRoutes } from './modelDownload.ts'

/**
 * `POST /api/jobs/:jobId/{pause,resume,cancel}` (no body) and `POST /api/jobs/:jobId/budget {budget}`: only
 * the job's requester, signed in with Ethereum (registerAuthRoutes must be registered first).
 */
export async function registerOwnerRoutes(app: FastifyInstance, options: HttpOptions): Promise<void> {
  const owner = new OwnerActions({
    jobs: options.jobs,
    escrow: options.settlement?.escrow ?? null,
    formatAmount: options.settlement ? (amount) => options.settlement!.formatAmount(amount) : undefined,
  })
  for (const action of ['pause', 'resume', 'cancel'] as const) {
    addRoute(app, ROUTES[action], async ({ params }, req): Promise<OwnerActionResult> => {
      const caller = await signedInAddress(req)
      return owner[action](params.jobId, caller)
    })
  }
  addRoute(app, ROUTES.budget, async ({ params, body }, req): Promise<OwnerActionResult> => owner.setBudget(params.jobId, await signedInAddress(req), body))
}

/**
 * The requester's side of the API, registered from http.ts in one call: sign-in first (owner actions, and
 * any other route calling `signedInAddress`, need it), then owner actions and model downloads.
 */
export async function registerRequesterRoutes(app: FastifyInstance, options: HttpOptions, rateLimits?: RegisteredRateLimits): Promise<void> {
  await registerAuthRoutes(app, options, rateLimits)
  await registerOwnerRoutes(app, options)
  await registerModelDownloadRoutes(app, options)
}
