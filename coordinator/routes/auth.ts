import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Address } from 'viem'
import type { AuthNonce, SignInResult } from '../../src/protocol/index.ts'
import { SiweAuth } from '../auth/siwe.ts'
import type { HttpOptions } from '../http.ts'

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
export async function registerAuthRoutes(app: FastifyInstance, options: HttpOptions): Promise<void> {
  const auth = new SiweAuth({ db: options.jobs.options.db, chainId: options.info.chainId, now: options.jobs.options.now })
  app.decorate('tabtrainAuth', auth)

  // A nonce is worth nothing to a cache or to anyone else: never stored on the way.
  app.get('/api/auth/nonce', async (_req, reply): Promise<AuthNonce> => {
    void reply.header('cache-control', 'no-store')
    return { nonce: await auth.nonce() }
  })

  // The domain a message must name is the host this request was sent to (what the page's wallet showed).
  app.post<{ Body: unknown }>('/api/auth/siwe', async (req, reply): Promise<SignInResult> => {
    void reply.header('cache-control', 'no-store')
    return auth.signIn(req.body, req.host)
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
