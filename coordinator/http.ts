import { existsSync } from 'node:fs'
import fastifyStatic from '@fastify/static'
import fastifyWebsocket from '@fastify/websocket'
import Fastify, { type FastifyInstance } from 'fastify'
import { referrerOf, requestedInnerSteps, type ApiErrorBody, type CoordinatorInfo, type LiveMessage } from '../src/protocol/index.ts'
import { BlobNotFoundError, type BlobStore } from './blobs.ts'
import { registerWidgetCors } from './cors.ts'
import { registerSitePages } from './sitePages.ts'
import { registerRequesterRoutes } from './routes/owner.ts'
import { signedInAddress } from './routes/auth.ts'
import { jobCreationRoutes } from './routes/jobCreation.ts'
import { CoordinatorError } from './errors.ts'
import type { JobService } from './jobs.ts'
import type { Settlement } from './settlement/settlement.ts'
import { parseLeaseRequestBody, type LeaseIdentity } from './verification/identity.ts'

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
  logger?: boolean
  /** Where internal errors are reported (their details never reach the client). */
  log?: (message: string) => void
}

/** Fastify's default body limit is 1 MiB; blobs and updates of bigger models need more, checked per job. */
const BODY_LIMIT_BYTES = 64 * 1024 * 1024

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

export async function buildHttpServer(options: HttpOptions): Promise<FastifyInstance> {
  const { jobs, blobs } = options
  const submissionLimits = new SubmissionLimits((leaseId) => jobs.maxSubmissionBytes(leaseId))
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: BODY_LIMIT_BYTES })
  await app.register(fastifyWebsocket)
  await registerWidgetCors(app)

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  app.setErrorHandler((error, _request, reply) => {
    let body: ApiErrorBody
    let status: number
    if (error instanceof CoordinatorError) {
      status = error.status
      body = { error: error.name, code: error.code, message: error.message }
    } else if (error instanceof BlobNotFoundError) {
      status = 404
      body = { error: error.name, code: 'blob_not_found', message: error.message }
    } else if (typeof (error as { statusCode?: number }).statusCode === 'number' && (error as { statusCode: number }).statusCode < 500) {
      const e = error as { statusCode: number; message: string }
      status = e.statusCode
      body = {
        error: 'RequestError',
        // Fastify's own refusals (bad JSON, wrong content type) get the protocol's codes, not fastify's names.
        code: status === 413 ? 'payload_too_large' : 'malformed_request',
        message: e.message,
      }
    } else {
      app.log.error(error)
      options.log?.(`internal error: ${(error as Error).stack ?? String(error)}`)
      status = 500
      body = { error: 'InternalError', code: 'internal', message: 'internal error; the request was not recorded' }
    }
    void reply.status(status).send(body)
  })

  app.get('/api/info', async () => options.info)

  app.get('/api/jobs', async () => ({ jobs: await jobs.listJobs() }))

  app.get<{ Params: { jobId: string } }>('/api/jobs/:jobId', async (req) => jobs.getJob(req.params.jobId))

  app.get<{ Params: { jobId: string } }>('/api/jobs/:jobId/progress', async (req) => jobs.progress(req.params.jobId))

  app.get<{ Params: { jobId: string; round: string; unit: string } }>('/api/jobs/:jobId/rounds/:round/units/:unit', async (req) =>
    jobs.unitRecord(req.params.jobId, req.params.round, req.params.unit),
  )

  app.post<{ Params: { jobId: string }; Body: unknown }>('/api/jobs/:jobId/leases', async (req) => {
    const parsed = parseLeaseRequestBody(req.body)
    if (!parsed.success) {
      throw new CoordinatorError(
        'malformed_request',
        `a lease request is {request: {jobId, contributor, nonce, issuedAt, audience}, signature}, or {session} from an earlier answer: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
      )
    }
    // A signed request is answered with a session that later requests may send instead of a signature
    // (verification/identity.ts says what a session may and may not do).
    const verified = await options.identity.verifyBody(req.params.jobId, parsed.data)
    const response = await jobs.lease(req.params.jobId, verified.contributor, referrerOf(verified.request), requestedInnerSteps(verified.request))
    if (response.status === 'leased') submissionLimits.leased(response.lease.id, response.lease.unit.jobId)
    return verified.session ? { ...response, session: verified.session } : response
  })

  app.get<{ Params: { address: string } }>('/api/reputation/:address', async (req) => jobs.reputation(req.params.address))

  app.post<{ Params: { leaseId: string }; Body: Buffer }>(
    '/api/leases/:leaseId/submission',
    {
      // Refuse an oversized body before reading it: no lease's update can be bigger than its job's model.
      preParsing: async (req, _reply, payload) => {
        const length = Number(req.headers['content-length'] ?? NaN)
        if (Number.isFinite(length)) {
          const max = await submissionLimits.max(req.params.leaseId)
          if (max !== null && length > max) {
            throw new CoordinatorError('payload_too_large', `a submission for this lease is at most ${max} bytes; this one has ${length}`)
          }
        }
        return payload
      },
    },
    async (req) => {
      if (!Buffer.isBuffer(req.body)) {
        throw new CoordinatorError('malformed_submission', 'submission must be sent as application/octet-stream')
      }
      return jobs.submit(req.params.leaseId, new Uint8Array(req.body.buffer, req.body.byteOffset, req.body.byteLength))
    },
  )

  // A tab that stops or pauses hands its unit back at once; the lease id is the holder's secret, as above.
  app.post<{ Params: { leaseId: string } }>('/api/leases/:leaseId/release', async (req) => jobs.release(req.params.leaseId))

  const settlement = () => {
    if (!options.settlement) throw new CoordinatorError('no_chain', 'this coordinator runs without a chain: no rewards, epochs or faucet')
    return options.settlement
  }

  app.get('/api/epochs', async () => ({ epochs: await settlement().epochs.list() }))

  app.get<{ Params: { address: string } }>('/api/rewards/:address', async (req) => settlement().rewards(req.params.address))

  app.post<{ Body: { address?: unknown } }>('/api/faucet', async (req) => settlement().drip(req.body?.address))

  app.get<{ Params: { hash: string } }>('/api/blobs/:hash', async (req, reply) => {
    // An answer under check is what its checker must not see: as if it did not exist until the check settles.
    if (await jobs.isUnderCheck(req.params.hash)) throw new BlobNotFoundError(`no blob ${req.params.hash}`)
    const bytes = await blobs.get(req.params.hash)
    // Content-addressed: the bytes under a hash never change.
    void reply.header('cache-control', 'public, max-age=31536000, immutable')
    void reply.type('application/octet-stream')
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  })

  app.get<{ Params: { jobId: string } }>('/api/jobs/:jobId/live', { websocket: true }, (socket, req) => {
    const jobId = req.params.jobId
    const send = async () => {
      try {
        const message: LiveMessage = { type: 'progress', progress: await jobs.progress(jobId) }
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message))
      } catch (error) {
        if (error instanceof CoordinatorError) socket.close(4404, error.message.slice(0, 120))
      }
    }
    const onProgress = (id: string) => {
      if (id === jobId) void send()
    }
    jobs.events.on('progress', onProgress)
    socket.on('close', () => jobs.events.off('progress', onProgress))
    void send()
  })

  await registerRequesterRoutes(app, options)
  // Only the requester a draft names may create its job: nobody posts (and stores files) in another's name.
  await app.register(jobCreationRoutes, { jobs, signedIn: signedInAddress })
  registerSitePages(app, options.siteDir)
  if (options.siteDir && existsSync(options.siteDir)) {
    await app.register(fastifyStatic, { root: options.siteDir, extensions: ['html'] })
  }
  return app
}
