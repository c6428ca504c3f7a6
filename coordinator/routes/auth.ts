import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Address } from 'viem'
import { parseSiweMessage } from 'viem/siwe'
import { ROUTES, type AuthNonce, type SignInResult } from '../../src/protocol/index.ts'
import { SiweAuth } from '../auth/siwe.ts'
import type { HttpOptions } from '../http.ts'
import type { RegisteredRateLimits } from '../rateLimits.ts'
import { addRoute } from '../validate.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** Sign-In with Ethereum sessions (coordinator/auth/siwe.ts); set by registerAuthRoutes. */
    tabtrainAuth?: SiweAuth
  }
}

/**
 * `GET /api/auth/nonce` and `POST /api/auth/siwe`. Registered on the root instance (a plain call, not an
 * encapsulated plugin), so `signedInAddress` works in every route, whichever plugin defines it.
 */
export async function registerAuthRoutes(app: FastifyInstance, options: HttpOptions, rateLimits?: RegisteredRateLimits): Promise<void> {
  const auth = new SiweAuth({ db: options.jobs.options.db, chainId: options.info.chainId, now: options.jobs.options.now })
  app.decorate('tabtrainAuth', auth)

  // A nonce is worth nothing to a cache or to anyone else: never stored on the way.
  addRoute(app, ROUTES.authNonce, async (_input, _req, reply): Promise<AuthNonce> => {
    void reply.header('cache-control', 'no-store')
    return { nonce: await auth.nonce() }
  })

  // The domain a message must name is the host this request was sent to (what the page's wallet showed).
  addRoute(app, ROUTES.signIn, async ({ body }, req, reply): Promise<SignInResult> => {
    void reply.header('cache-control', 'no-store')
    // Counted by the address the message names, before its signature costs a recovery.
    const named = parseSiweMessage(body.message).address
    if (named && rateLimits) await rateLimits.signIns(req, reply, named)
    return auth.signIn(body, req.host)
  })
}

/**
 * The address signed in on this request (`Authorization: Bearer <token>` from `POST /api/auth/siwe`).
 * Refusals: 401 `not_signed_in` (no token, or not one of ours), 401 `session_expired` (past its hour).
 */
export function signedInAddress(request: FastifyRequest): Promise<Address> {
  const auth = request.server.tabtrainAuth
  if (!auth) throw new Error('registerAuthRoutes was not called on this server')
  return auth.addressOf(request.headers.authorization)
}
