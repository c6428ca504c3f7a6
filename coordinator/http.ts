import { existsSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import fastifyStatic from '@fastify/static'
import fastifyWebsocket from '@fastify/websocket'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { ROUTES, ROUTE_LIST, referrerOf, requestedInnerSteps, routePathPattern, type ApiErrorBody, type CoordinatorInfo, type RouteDefinition } from '../src/protocol/index.ts'
import { BlobNotFoundError, type BlobStore } from './blobs.ts'
import { registerWidgetCors } from './cors.ts'
import { LiveFeeds } from './liveFeed.ts'
import { rateLimitsFromEnv, registerRateLimits, trustProxyFromEnv, type RateLimits } from './rateLimits.ts'
import { registerSecurityHeaders } from './securityHeaders.ts'
import { registerSitePages } from './sitePages.ts'
import { registerRequesterRoutes } from './routes/owner.ts'
import { signedInAddress } from './routes/auth.ts'
import { jobCreationRoutes } from './routes/jobCreation.ts'
import { CoordinatorError, ERROR_STATUS, type ErrorCode } from './errors.ts'
import type { JobService } from './jobs.ts'
import type { Settlement } from './settlement/settlement.ts'
import { addRoute, parseParams } from './validate.ts'
import type { LeaseIdentity } from './verification/identity.ts'

export interface HttpOptions {
  jobs: JobService
  blobs: BlobStore
  /** Checks who asks for a lease (signature, freshness, replay). */
  identity: LeaseIdentity
  info: CoordinatorInfo
  /** Rewards, epochs and the faucet; null when the coordinator runs without a chain. */
  settlement?: Settlement | null
  /** Built site to serve at `/` (vite's output); omitted in API-only tests. */
  siteDir?: string
  /** Fastify's logger: a pino instance (coordinator/ops/logging.ts; request logs off), or fastify's own. */
  logger?: boolean | FastifyBaseLogger
  /** Where internal errors are reported (their details never reach the client). */
  log?: (message: string) => void
  /** Requests per IP and per account (rateLimits.ts); from the environment (TABTRAIN_RATE_LIMIT_*) unless given. */
  rateLimits?: Partial<RateLimits>
  /** Fastify's `trustProxy`: count clients by X-Forwarded-For behind a reverse proxy; TABTRAIN_TRUST_PROXY unless given. */
  trustProxy?: boolean | string
}

/** Lease ids remembered for the size check of their submission (~100 B each). */
const REMEMBERED_LEASES = 100_000

/**
 * The largest submission a lease may send, without the two queries (the lease's attempt, its job) that
 * finding it costs: a job's bound is a function of its spec alone (immutable), so it is kept per job, and
 * the job of each lease this process issued is kept from the lease answer. A lease issued by another
 * replica, or forgotten, is looked up as before. Only an early refusal of oversized bodies: the
 * submission's own checks (shapes, sizes) do not depend on it.
 */
class SubmissionLimits {
  private readonly jobOfLease = new Map<string, string>()
  private readonly maxOfJob = new Map<string, number>()

  constructor(private readonly lookUp: (leaseId: string) => Promise<number | null>) {}

  leased(leaseId: string, jobId: string): void {
    this.jobOfLease.set(leaseId, jobId)
    if (this.jobOfLease.size > REMEMBERED_LEASES) this.jobOfLease.delete(this.jobOfLease.keys().next().value!)
  }

  async max(leaseId: string): Promise<number | null> {
    const jobId = this.jobOfLease.get(leaseId)
    const known = jobId === undefined ? undefined : this.maxOfJob.get(jobId)
    if (known !== undefined) return known
    const max = await this.lookUp(leaseId)
    if (max !== null && jobId !== undefined) this.maxOfJob.set(jobId, max)
    return max
  }
}

/** What a body of the route should be, for a refusal of one sent as something else. */
function expectedBody(route: RouteDefinition | undefined): string {
  switch (route?.body.kind) {
    case 'json':
      return 'application/json'
    case 'octet-stream':
      return 'application/octet-stream'
    case 'multipart':
      return 'multipart/form-data'
    default:
      return 'no body'
  }
}

/** How long a request may take to arrive (headers and body); refused with 408 `request_timeout` past it. */
const REQUEST_TIMEOUT_MS = 120_000

/** Every route sets its own (src/protocol/routes.ts); this bounds what an unknown route's body may be. */
const DEFAULT_BODY_LIMIT = ROUTES.lease.bodyLimit

const ROUTE_BY_KEY = new Map(ROUTE_LIST.map((route) => [`${route.method} ${route.path}`, route]))

/** The table's entry for the route a request reached, if any (none for an unknown path or method). */
function routeOf(req: FastifyRequest): RouteDefinition | undefined {
  const { method, url } = req.routeOptions
  return url === undefined ? undefined : ROUTE_BY_KEY.get(`${method === 'HEAD' ? 'GET' : method} ${url}`)
}

/**
 * Fastify's own refusals (a body it cannot parse, too large, of a type no parser reads) as the protocol's
 * codes with a message saying what to send instead; null for anything else.
 */
function fastifyRefusal(error: FastifyError, req: FastifyRequest): { code: 'malformed_request' | 'payload_too_large' | 'unsupported_media_type'; message: string } | null {
  const status = error.statusCode
  if (typeof status !== 'number' || status >= 500) return null
  const route = routeOf(req)
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        code: 'payload_too_large',
        message: route
          ? `the body is larger than ${route.bodyLimit} bytes, the most ${route.method} ${route.path} accepts`
          : `the body is larger than ${DEFAULT_BODY_LIMIT} bytes, the most read for a path no route answers`,
      }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        code: 'unsupported_media_type',
        message: `${req.method} ${route?.path ?? 'of a path no route answers'} reads ${expectedBody(route)}; this body was sent as ${JSON.stringify(String(req.headers['content-type'] ?? '').slice(0, 100))}`,
      }
    default:
      if (status === 413) return { code: 'payload_too_large', message: error.message }
      if (status === 415) return { code: 'unsupported_media_type', message: error.message }
      return { code: 'malformed_request', message: error.message || `malformed ${req.method} request` }
  }
}

export async function buildHttpServer(options: HttpOptions): Promise<FastifyInstance> {
  const { jobs, blobs } = options
  const submissionLimits = new SubmissionLimits((leaseId) => jobs.maxSubmissionBytes(leaseId))
  /** Connections answered with `Connection: close` before their body was read. */
  const closing = new WeakSet<object>()
  const app = Fastify({
    // A pino instance (coordinator/ops/logging.ts) without per-request lines: metrics count requests (docs/operations.md).
    ...(typeof options.logger === 'object'
      ? { loggerInstance: options.logger, logController: new LogController({ disableRequestLogging: true }) }
      : { logger: options.logger ?? false }),
    // Small by default: every route sets its own (src/protocol/routes.ts), submissions and uploads larger.
    bodyLimit: DEFAULT_BODY_LIMIT,
    trustProxy: options.trustProxy ?? trustProxyFromEnv(),
    // A request must arrive whole within this (fastify's default is never): a client that sends its
    // headers or body a byte at a time cannot hold a connection forever. Enough for the largest
    // submission (64 MiB) at ~1 MB/s; handlers may take longer, the clock stops once the body is in.
    requestTimeout: REQUEST_TIMEOUT_MS,
    // What fastify and Node refuse before any route runs, in the protocol's shape too.
    frameworkErrors: (error, req, reply) => {
      const message =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? 'a path parameter is longer than 100 characters, more than any route takes'
          : `the path is not a valid URL (${error.message.slice(0, 200)})`
      const body: ApiErrorBody = { error: 'RequestError', code: 'malformed_request', message }
      // The body (if any) was not read: the connection cannot carry another request after it, and
      // whatever follows on it is that body, not a request to refuse (clientErrorHandler).
      const socket = req.raw.socket
      closing.add(socket)
      // A WebSocket upgrade's socket is no longer Node's to close after the answer: close it here.
      reply.raw.once('finish', () => socket.destroySoon())
      void (reply as FastifyReply).status(400).header('connection', 'close').send(body)
    },
    clientErrorHandler: (error: NodeJS.ErrnoException, socket) => {
      if (error.code === 'ECONNRESET' || socket.destroyed || closing.has(socket)) {
        socket.destroy()
        return
      }
      const refusal: ApiErrorBody =
        error.code === 'HPE_HEADER_OVERFLOW'
          ? { error: 'RequestError', code: 'headers_too_large', message: 'the request line and headers are larger than 16 KiB, the most read' }
          : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? { error: 'RequestError', code: 'request_timeout', message: 'the request did not arrive whole in time' }
            : { error: 'RequestError', code: 'malformed_request', message: `not a well-formed HTTP request (${error.code ?? 'client error'})` }
      const status = ERROR_STATUS[refusal.code as ErrorCode]
      const body = JSON.stringify(refusal)
      if (socket.writable) {
        socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`)
      }
      socket.destroy(error)
    },
  })
  const rateLimits = await registerRateLimits(app, { ...rateLimitsFromEnv(), ...options.rateLimits })
  await app.register(fastifyWebsocket)
  await registerWidgetCors(app)

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  app.setErrorHandler((error: FastifyError, req, reply) => {
    let body: ApiErrorBody
    let status: number
    const refusal = error instanceof CoordinatorError || error instanceof BlobNotFoundError ? null : fastifyRefusal(error, req)
    if (error instanceof CoordinatorError) {
      status = error.status
      body = { error: error.name, code: error.code, message: error.message }
    } else if (error instanceof BlobNotFoundError) {
      status = 404
      body = { error: error.name, code: 'blob_not_found', message: error.message }
    } else if (refusal) {
      const refused = new CoordinatorError(refusal.code, refusal.message)
      status = refused.status
      body = { error: 'RequestError', code: refused.code, message: refused.message }
    } else {
      app.log.error(error)
      options.log?.(`internal error: ${error.stack ?? String(error)}`)
      status = 500
      body = { error: 'InternalError', code: 'internal', message: 'internal error; the request was not recorded' }
    }
    void reply.status(status).send(body)
  })

  addRoute(app, ROUTES.info, async () => options.info)

  addRoute(app, ROUTES.listJobs, async () => ({ jobs: await jobs.listJobs() }))

  addRoute(app, ROUTES.job, async ({ params }) => jobs.getJob(params.jobId))

  addRoute(app, ROUTES.progress, async ({ params }) => jobs.progress(params.jobId))

  addRoute(app, ROUTES.unit, async ({ params }) => jobs.unitRecord(params.jobId, params.round, params.unit))

  addRoute(app, ROUTES.lease, async ({ params, body }, req, reply) => {
    // A signed request is answered with a session that later requests may send instead of a signature
    // (verification/identity.ts says what a session may and may not do).
    const verified = await options.identity.verifyBody(params.jobId, body)
    // Counted against the address the signature (or session) proved: nobody can spend another's allowance.
    await rateLimits.leases(req, reply, verified.contributor)
    const response = await jobs.lease(params.jobId, verified.contributor, referrerOf(verified.request), requestedInnerSteps(verified.request))
    if (response.status === 'leased') submissionLimits.leased(response.lease.id, response.lease.unit.jobId)
    return verified.session ? { ...response, session: verified.session } : response
  })

  addRoute(app, ROUTES.reputation, async ({ params }) => jobs.reputation(params.address))

  addRoute(
    app,
    ROUTES.submission,
    async ({ params, body }) => {
      if (!Buffer.isBuffer(body)) {
        throw new CoordinatorError('malformed_submission', 'submission must be sent as application/octet-stream')
      }
      return jobs.submit(params.leaseId, new Uint8Array(body.buffer, body.byteOffset, body.byteLength))
    },
    {
      // Refuse an oversized body before reading it: no lease's update can be bigger than its job's model.
      preParsing: async (req, _reply, payload) => {
        const { leaseId } = parseParams(ROUTES.submission, req)
        const length = Number(req.headers['content-length'] ?? NaN)
        if (Number.isFinite(length)) {
          const max = await submissionLimits.max(leaseId)
          if (max !== null && length > max) {
            throw new CoordinatorError('payload_too_large', `a submission for this lease is at most ${max} bytes; this one has ${length}`)
          }
        }
        return payload
      },
    },
  )

  // A tab that stops or pauses hands its unit back at once; the lease id is the holder's secret, as above.
  addRoute(app, ROUTES.release, async ({ params }) => jobs.release(params.leaseId))

  const settlement = () => {
    if (!options.settlement) throw new CoordinatorError('no_chain', 'this coordinator runs without a chain: no rewards, epochs or faucet')
    return options.settlement
  }

  addRoute(app, ROUTES.epochs, async () => ({ epochs: await settlement().epochs.list() }))

  addRoute(app, ROUTES.rewards, async ({ params }) => settlement().rewards(params.address))

  addRoute(app, ROUTES.faucet, async ({ body }, req, reply) => {
    const chain = settlement()
    // Each drip may send transactions: an address is topped up only so often, whoever asks.
    await rateLimits.faucet(req, reply, body.address)
    return chain.drip(body.address)
  })

  addRoute(app, ROUTES.blob, async ({ params }, _req, reply) => {
    // An answer under check is what its checker must not see: as if it did not exist until the check settles.
    if (await jobs.isUnderCheck(params.hash)) throw new BlobNotFoundError(`no blob ${params.hash}`)
    const bytes = await blobs.get(params.hash)
    // Content-addressed: the bytes under a hash never change.
    void reply.header('cache-control', 'public, max-age=31536000, immutable')
    void reply.type('application/octet-stream')
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  })

  const live = new LiveFeeds(jobs, options.log)
  app.addHook('onClose', async () => live.close())
  app.route({
    method: 'GET',
    url: ROUTES.live.path,
    // Checked before the upgrade: a malformed job id is refused with 400 like any other route.
    preValidation: async (req) => {
      parseParams(ROUTES.live, req)
    },
    handler: async () => {
      throw new CoordinatorError('upgrade_required', `${ROUTES.live.path} is a WebSocket: connect with ws:// (or wss://) and Upgrade: websocket`)
    },
    wsHandler: (socket, req) => live.join(parseParams(ROUTES.live, req).jobId, socket),
  })

  await registerRequesterRoutes(app, options, rateLimits)
  // Only the requester a draft names may create its job: nobody posts (and stores files) in another's name.
  await app.register(jobCreationRoutes, { jobs, signedIn: signedInAddress })
  registerSitePages(app, options.siteDir)
  await registerSecurityHeaders(app, { siteDir: options.siteDir, rpcUrl: options.info.chain?.rpcUrl ?? null })
  if (options.siteDir && existsSync(options.siteDir)) {
    await app.register(fastifyStatic, { root: options.siteDir, extensions: ['html'] })
  }
  return app
}
