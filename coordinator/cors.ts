import fastifyCors from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ROUTE_LIST, routePathPattern } from '../src/protocol/index.ts'

/**
 * The calls a contributor makes from a page of another origin (the widget's host site, or anyone's own
 * front end): read the coordinator and the jobs, lease, fetch blobs, submit, hand a lease back, read
 * rewards; plus `widget.js` itself, which a host page loads as a module script (a CORS fetch).
 *
 * Only these: owner actions, job creation, sign-in and the faucet answer no other origin, so a page
 * elsewhere can never make a visitor's browser act on them. Nothing here relies on cookies (leases are
 * signed, owner actions carry their own signatures), so no origin is ever allowed credentials.
 */
const WIDGET_ROUTES: ReadonlyArray<{ methods: readonly string[]; path: RegExp }> = [
  { methods: ['GET'], path: /^\/widget\.js$/ },
  // The API's widget calls, as the protocol's route table marks them (src/protocol/routes.ts: `widget`).
  ...ROUTE_LIST.filter((route) => route.widget).map((route) => ({ methods: [route.method], path: routePathPattern(route.path) })),
]

/** Whether a request (or, for a preflight, the request it announces) is one of the widget's calls. */
export function isWidgetCall(method: string, url: string): boolean {
  const path = url.split('?')[0]!
  return WIDGET_ROUTES.some((route) => route.methods.includes(method) && route.path.test(path))
}

function announcedMethod(req: FastifyRequest): string {
  if (req.method !== 'OPTIONS') return req.method
  const announced = req.headers['access-control-request-method']
  return typeof announced === 'string' ? announced.toUpperCase() : ''
}

/** Answers any origin, without credentials, on the widget's calls; adds no CORS header anywhere else. */
export async function registerWidgetCors(app: FastifyInstance): Promise<void> {
  await app.register(fastifyCors, {
    delegator: (req, callback) => {
      if (!isWidgetCall(announcedMethod(req), req.url)) {
        callback(null, { origin: false })
        return
      }
      callback(null, {
        origin: '*',
        credentials: false,
        methods: ['GET', 'POST'],
        allowedHeaders: ['content-type'],
        // A preflight answer is the same for every origin: let browsers keep it for a while.
        maxAge: 600,
      })
    },
  })
}
