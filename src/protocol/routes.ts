import { z } from 'zod'
import { getAddress, isAddress, type Address } from 'viem'
import { addressSchema } from './address.ts'
import { signInRequestSchema } from './auth.ts'
import type { ErrorCode } from './errors.ts'
import { hashSchema } from './hash.ts'
import { signedLeaseRequestSchema } from './leaseRequest.ts'
import { setBudgetRequestSchema } from './owner.ts'

/**
 * The coordinator's whole HTTP API as data: for every route its method and path, the schemas its path
 * parameters, query and body must match, its body limit, which refusals it may give, and whether a page of
 * any origin may call it (the widget's calls). The server validates every request against its entry
 * before a handler runs (coordinator/validate.ts) and derives its CORS policy from `widget`; the OpenAPI
 * description is generated from it; the fuzz test walks it. Answers are the types in ./api.ts, named by
 * `response`.
 *
 * Schemas carry transforms (addresses come out checksummed, numbers out of path strings): for a JSON
 * Schema of what a client sends, use `z.toJSONSchema(schema, { io: 'input' })`.
 */

/** What a value too long to repeat looks like in a message: its start and its length. */
const shown = (value: unknown) => {
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${JSON.stringify(text.slice(0, 80))}… (${text.length} characters)` : JSON.stringify(text)
}

// --- Path parameters -------------------------------------------------------------------------------------

/** A job's id: the SHA-256 of its spec, as 0x and 64 lower-case hex digits. */
export const jobIdParam = hashSchema
/** A content address: the SHA-256 of the bytes, as 0x and 64 lower-case hex digits. */
export const blobHashParam = hashSchema
/** A lease id as the lease answer gave it (a UUID); anything of that alphabet is looked up, and unknown ones are 404. */
export const leaseIdParam = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,128}$/, { error: (issue) => `expected a lease id (letters, digits, - and _, at most 128), not ${shown(issue.input)}` })
/** An account, any case, answered in its checksummed form. */
export const addressParam = z
  .string()
  .refine((s) => isAddress(s, { strict: false }), { error: (issue) => `${shown(issue.input).slice(1, -1)} is not a 20-byte hex address` })
  .transform((s) => getAddress(s) as Address)
/** A round or unit number in a path: a whole number from 0, in decimal, without leading zeros. */
export const indexParam = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,8})$/, { error: (issue) => `expected a whole number from 0 (at most 9 digits), not ${shown(issue.input)}` })
  .transform(Number)

const noParams = z.object({})
/** Query strings are not read by any route; unknown parameters (a cache-buster) are ignored. */
const noQuery = z.object({})

// --- Bodies ----------------------------------------------------------------------------------------------

/** `{session}`: the token a signed lease request of the same job was answered with (`LeaseResponse.session`). */
export const leaseSessionBodySchema = z.object({ session: z.string().min(1).max(1000) })
/** Body of `POST /api/jobs/:jobId/leases`: a signed lease request, or a session from an earlier answer. */
export const leaseRequestBodySchema = z.union([signedLeaseRequestSchema, leaseSessionBodySchema])
export type LeaseRequestBody = z.infer<typeof leaseRequestBodySchema>

/** Body of `POST /api/faucet` (local chain only). */
export const faucetRequestSchema = z.object({ address: addressSchema })
export type FaucetRequest = z.infer<typeof faucetRequestSchema>

/**
 * Multipart fields of `POST /api/jobs`: `job` (the draft as JSON, ./jobDraft.ts: jobDraftSchema) first,
 * then files. Checked as they stream in (coordinator/routes/jobCreation.ts), not by a schema of the whole.
 */
export const JOB_CREATION_FILE_FIELDS = ['model', 'weights', 'data', 'images', 'labels'] as const

// --- The table -------------------------------------------------------------------------------------------

export type RouteBody =
  | { kind: 'none' }
  /** JSON; `hint` says in a sentence what the body is, and starts every refusal of a malformed one. */
  | { kind: 'json'; schema: z.ZodType; hint: string }
  | { kind: 'octet-stream'; description: string }
  | { kind: 'multipart'; description: string; fields: readonly string[] }

export interface RouteDefinition {
  method: 'GET' | 'POST'
  /** Fastify's form: `:name` is a path parameter. */
  path: string
  summary: string
  params: z.ZodObject
  query: z.ZodObject
  body: RouteBody
  /** Bytes; submissions are further bounded per job, job uploads per file (their routes say how). */
  bodyLimit: number
  /** Refusal codes of this route besides COMMON_REFUSALS. */
  refusals: readonly ErrorCode[]
  /** A page of any origin may make this call (the widget's calls, coordinator/cors.ts); no other origin may make the rest. */
  widget: boolean
  /** The answer's type in ./api.ts (or a content type for bytes). */
  response: string
  /** A WebSocket (upgrade) route. */
  websocket?: boolean
  /** Served by the operations plugins (coordinator/ops/), not by a product handler. */
  ops?: boolean
  /** Needs `Authorization: Bearer <token>` from `POST /api/auth/siwe`. */
  signedIn?: boolean
}

/** Refusals any route may give: a malformed request, a body too large or of a type it does not read, too many requests. */
export const COMMON_REFUSALS = ['malformed_request', 'payload_too_large', 'unsupported_media_type', 'rate_limited'] as const satisfies readonly ErrorCode[]

/** Small JSON bodies: the largest (a lease request with a session, a sign-in message) is a few KiB. */
export const SMALL_BODY_LIMIT = 16 * 1024
/** Routes that read no body still get one parsed if sent: nothing worth more than this. */
export const NO_BODY_LIMIT = 1024
/** The most any submission may be; each lease's own bound (its job's update size) is checked before reading. */
export const SUBMISSION_BODY_LIMIT = 64 * 1024 * 1024
/** The most a job creation request may be in all (its files are bounded one by one as they arrive). */
export const JOB_CREATION_BODY_LIMIT = 64 * 1024 * 1024 + 1024 * 1024

const SIGNED_IN: readonly ErrorCode[] = ['not_signed_in', 'session_expired']
const OWNER: readonly ErrorCode[] = [...SIGNED_IN, 'job_not_found', 'no_owner', 'not_owner', 'job_finished', 'job_cancelled']

type Base = Omit<RouteDefinition, 'path' | 'summary' | 'response'> & { path: string; summary: string; response: string }

/** A GET route: no body, no parameters, callable from this origin only, unless `extra` says otherwise (its types kept). */
function get<const E extends Partial<RouteDefinition> = {}>(path: string, summary: string, response: string, extra?: E): Omit<Base, keyof E> & E {
  const base: Base = {
    method: 'GET',
    path,
    summary,
    params: noParams,
    query: noQuery,
    body: { kind: 'none' },
    bodyLimit: NO_BODY_LIMIT,
    refusals: [],
    widget: false,
    response,
  }
  return { ...base, ...extra } as Omit<Base, keyof E> & E
}

function post<const E extends Partial<RouteDefinition> = {}>(path: string, summary: string, response: string, extra?: E): Omit<Base, keyof E | 'method'> & E & { method: 'POST' } {
  return { ...get(path, summary, response, extra), method: 'POST' } as Omit<Base, keyof E | 'method'> & E & { method: 'POST' }
}

const jobParams = z.object({ jobId: jobIdParam })
const roundParams = z.object({ jobId: jobIdParam, round: indexParam })

export const ROUTES = {
  info: get('/api/info', "The coordinator's EIP-712 domain, id, chain and epoch length.", 'CoordinatorInfo', { widget: true }),
  listJobs: get('/api/jobs', 'Every job, oldest first.', '{jobs: JobSummary[]}', { widget: true }),
  job: get('/api/jobs/:jobId', 'One job with its spec.', 'JobDetail', { params: jobParams, refusals: ['job_not_found'], widget: true }),
  progress: get('/api/jobs/:jobId/progress', "A job's rounds, contributors and checks.", 'JobProgress', { params: jobParams, refusals: ['job_not_found'] }),
  unit: get('/api/jobs/:jobId/rounds/:round/units/:unit', 'One unit and the checkpoint it starts from, with its accepted answer once settled.', 'UnitRecord', {
    params: z.object({ jobId: jobIdParam, round: indexParam, unit: indexParam }),
    refusals: ['job_not_found', 'unit_not_found'],
  }),
  lease: post('/api/jobs/:jobId/leases', 'Leases a unit to the address that signed the request (or whose session it is).', 'LeaseResponse', {
    params: jobParams,
    body: {
      kind: 'json',
      schema: leaseRequestBodySchema,
      hint: 'a lease request is {request: {jobId, contributor, nonce, issuedAt, audience}, signature}, or {session} from an earlier answer',
    },
    bodyLimit: SMALL_BODY_LIMIT,
    refusals: [
      'bad_lease_signature',
      'stale_lease_request',
      'replayed_lease_request',
      'job_not_found',
      'job_paused',
      'job_cancelled',
      'job_finished',
      'too_many_leases',
      'address_banned',
      'stake_required',
    ],
    widget: true,
  }),
  submission: post('/api/leases/:leaseId/submission', "A lease's answer: the signed claim and the update, in the binary envelope (./submission.ts).", 'SubmitResult', {
    params: z.object({ leaseId: leaseIdParam }),
    body: { kind: 'octet-stream', description: 'application/octet-stream: encodeSubmission(signedClaim, update); at most the job update size plus the claim' },
    bodyLimit: SUBMISSION_BODY_LIMIT,
    refusals: [
      'malformed_submission',
      'claim_mismatch',
      'hash_mismatch',
      'bad_signature',
      'lease_not_yours',
      'lease_not_found',
      'already_submitted',
      'lease_not_live',
      'stale_round',
      'wrong_input',
      'lease_expired',
      'wrong_shapes',
      'non_finite_update',
      'job_not_found',
    ],
    widget: true,
  }),
  release: post('/api/leases/:leaseId/release', 'Hands a live lease back: its unit is leasable again at once.', 'LeaseReleaseResult', {
    params: z.object({ leaseId: leaseIdParam }),
    refusals: ['lease_not_found', 'already_submitted', 'lease_not_live'],
    widget: true,
  }),
  reputation: get('/api/reputation/:address', "An address's record with the checks, kept across jobs.", 'ReputationView', { params: z.object({ address: addressParam }) }),
  epochs: get('/api/epochs', 'Reward epochs, newest first.', '{epochs: EpochRecord[]}', { refusals: ['no_chain'] }),
  rewards: get('/api/rewards/:address', "An account's earnings and Merkle proofs.", 'RewardsView', {
    params: z.object({ address: addressParam }),
    refusals: ['no_chain'],
    widget: true,
  }),
  faucet: post('/api/faucet', 'Local chain only: gas, test tokens and the minimum stake for an address.', 'FaucetResult', {
    body: { kind: 'json', schema: faucetRequestSchema, hint: 'a faucet request is {address}' },
    bodyLimit: SMALL_BODY_LIMIT,
    refusals: ['no_chain', 'faucet_unavailable'],
  }),
  blob: get('/api/blobs/:hash', 'Content-addressed bytes (checkpoints, data shards, accepted updates).', 'application/octet-stream', {
    params: z.object({ hash: blobHashParam }),
    refusals: ['blob_not_found'],
    widget: true,
  }),
  live: get('/api/jobs/:jobId/live', "WebSocket: the job's progress (LiveMessage) now and after every change; closes with 4404 for an unknown job.", 'LiveMessage', {
    params: jobParams,
    refusals: ['job_not_found'],
    websocket: true,
  }),
  authNonce: get('/api/auth/nonce', 'A fresh Sign-In with Ethereum nonce.', 'AuthNonce'),
  signIn: post('/api/auth/siwe', 'Signs in with an EIP-4361 message; answers with a bearer token good for an hour.', 'SignInResult', {
    body: { kind: 'json', schema: signInRequestSchema, hint: 'a sign-in is {message, signature}' },
    bodyLimit: SMALL_BODY_LIMIT,
    refusals: [
      'siwe_malformed',
      'siwe_wrong_domain',
      'siwe_wrong_chain',
      'siwe_expired',
      'siwe_not_yet_valid',
      'siwe_unknown_nonce',
      'siwe_replayed_nonce',
      'bad_siwe_signature',
    ],
  }),
  pause: post('/api/jobs/:jobId/pause', 'Owner: no new units until resumed.', 'OwnerActionResult', { params: jobParams, refusals: OWNER, signedIn: true }),
  resume: post('/api/jobs/:jobId/resume', 'Owner: units are issued again.', 'OwnerActionResult', { params: jobParams, refusals: OWNER, signedIn: true }),
  cancel: post('/api/jobs/:jobId/cancel', 'Owner: for good; the escrow closes once the work out is in and charged.', 'OwnerActionResult', {
    params: jobParams,
    refusals: OWNER,
    signedIn: true,
  }),
  budget: post('/api/jobs/:jobId/budget', "Owner: caps the job's spending (base units).", 'OwnerActionResult', {
    params: jobParams,
    body: { kind: 'json', schema: setBudgetRequestSchema, hint: 'a budget is {budget: "<amount in base units, a decimal string>"}' },
    bodyLimit: SMALL_BODY_LIMIT,
    refusals: [...OWNER, 'no_chain', 'budget_below_owed', 'escrow_too_small'],
    signedIn: true,
  }),
  roundModel: get('/api/jobs/:jobId/rounds/:round/model.json', "model.json of the checkpoint round `round` produced (tf.loadLayersModel loads it).", 'LayersModelJson', {
    params: roundParams,
    refusals: ['job_not_found', 'round_not_found', 'round_not_closed'],
  }),
  latestModel: get('/api/jobs/:jobId/model.json', "model.json of the latest closed round's checkpoint.", 'LayersModelJson', {
    params: jobParams,
    refusals: ['job_not_found', 'no_model_yet'],
  }),
  roundWeights: get('/api/jobs/:jobId/rounds/:round/weights.bin', "weights.bin of the checkpoint round `round` produced.", 'application/octet-stream', {
    params: roundParams,
    refusals: ['job_not_found', 'round_not_found', 'round_not_closed'],
  }),
  presets: get('/api/presets', 'The presets with their defaults and help.', '{presets: PresetInfo[]}'),
  createJob: post('/api/jobs', "Creates a job from a draft and the requester's files (201; 200 with the id of an existing identical spec).", 'CreatedJob', {
    body: {
      kind: 'multipart',
      description: 'multipart/form-data: a "job" field (the draft, JSON) first, then files model, weights (one or more), data or images + labels',
      fields: ['job', ...JOB_CREATION_FILE_FIELDS],
    },
    bodyLimit: JOB_CREATION_BODY_LIMIT,
    refusals: [
      ...SIGNED_IN,
      'invalid_job_draft',
      'missing_file',
      'invalid_model',
      'invalid_dataset',
      'model_data_mismatch',
      'unsupported_by_bundle',
      'not_requester',
      'file_too_large',
      'blob_not_found',
    ],
    signedIn: true,
  }),
  // Operations (coordinator/ops/): for monitoring and load balancers, never for pages of other origins.
  metrics: get('/metrics', 'Prometheus metrics (text exposition format).', 'text/plain', { ops: true }),
  healthz: get('/healthz', 'Liveness: the process answers.', '{status}', { ops: true }),
  readyz: get('/readyz', 'Readiness: the store answers; 503 while it does not.', '{status}', { ops: true }),
  openapi: get('/api/openapi.json', 'This API as an OpenAPI description, generated from this table.', 'OpenAPI document', { ops: true }),
} as const satisfies Record<string, RouteDefinition>

export type RouteName = keyof typeof ROUTES

/** Every route, in the table's order. */
export const ROUTE_LIST: ReadonlyArray<RouteDefinition & { name: RouteName }> = Object.entries(ROUTES).map(([name, route]) => ({ ...route, name: name as RouteName }))

/** Every refusal `route` may give. */
export function refusalsOf(route: RouteDefinition): ErrorCode[] {
  return [...new Set<ErrorCode>([...COMMON_REFUSALS, ...route.refusals])]
}

/** A path pattern (`/api/jobs/:jobId`) as a regular expression over request paths. */
export function routePathPattern(path: string): RegExp {
  return new RegExp(`^${path.replace(/[.]/g, '\\.').replace(/:[A-Za-z]+/g, '[^/]+')}$`)
}
