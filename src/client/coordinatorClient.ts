import type { Address } from 'viem'
import {
  buildSignInMessage,
  encodeSubmission,
  isErrorCode,
  sha256Hex,
  type ErrorCode,
  type Amount,
  type ApiErrorBody,
  type AuthNonce,
  type MessageSigner,
  type OwnerActionResult,
  type SetBudgetRequest,
  type SignInResult,
  type CoordinatorInfo,
  type CreatedJob,
  type EpochRecord,
  type FaucetResult,
  type Hash,
  type JobDetail,
  type JobProgress,
  type JobSummary,
  type LeaseReleaseResult,
  type LeaseResponse,
  type ReputationView,
  type RewardsView,
  type SignedLeaseRequest,
  type SignedClaim,
  type SubmitResult,
  type UnitRecord,
} from '../protocol/index.ts'

/**
 * A code the protocol does not list: from a newer coordinator, or `http_<status>` for an answer that was
 * not the coordinator's JSON (a proxy's error page). `CoordinatorRequestError.code` is then `unknown`.
 */
export type UnknownErrorCode = 'unknown'

/** A refusal from the coordinator, with its stable code (e.g. `stale_round`) and HTTP status. */
export class CoordinatorRequestError extends Error {
  override name = 'CoordinatorRequestError'
  /** One of the protocol's codes (src/protocol/errors.ts), or `unknown`; `serverCode` keeps what was sent. */
  readonly code: ErrorCode | UnknownErrorCode
  /** The code exactly as the answer gave it. */
  readonly serverCode: string
  /** For `rate_limited` (429): when to ask again, from the Retry-After header; null when not said. */
  readonly retryAfterMs: number | null
  constructor(
    readonly status: number,
    code: string,
    message: string,
    options: { retryAfterMs?: number | null } = {},
  ) {
    super(message)
    this.code = isErrorCode(code) ? code : 'unknown'
    this.serverCode = code
    this.retryAfterMs = options.retryAfterMs ?? null
  }
}

/** Retry-After as milliseconds: seconds, or an HTTP date. */
function retryAfterMs(header: string | null): number | null {
  if (!header) return null
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const at = Date.parse(header)
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null
}

/** The coordinator could not be reached at all (down, restarting, network gone). */
export class CoordinatorUnreachableError extends Error {
  override name = 'CoordinatorUnreachableError'
}

/** A downloaded blob whose bytes do not hash to the address it was fetched by. */
export class IntegrityError extends Error {
  override name = 'IntegrityError'
}

/** Typed HTTP client for the coordinator, used by the site, the worker, Node contributors and tests. */
export class CoordinatorClient {
  readonly baseUrl: string
  constructor(baseUrl: string, private readonly fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis)) {
    this.baseUrl = baseUrl.replace(/\/$/, '')
  }

  info(): Promise<CoordinatorInfo> {
    return this.json('/api/info')
  }

  async listJobs(): Promise<JobSummary[]> {
    return (await this.json<{ jobs: JobSummary[] }>('/api/jobs')).jobs
  }

  job(jobId: string): Promise<JobDetail> {
    return this.json(`/api/jobs/${jobId}`)
  }

  progress(jobId: string): Promise<JobProgress> {
    return this.json(`/api/jobs/${jobId}/progress`)
  }

  /** One unit and the checkpoint it starts from, with the accepted update's hash once there is one. */
  unit(jobId: string, round: number, unit: number): Promise<UnitRecord> {
    return this.json(`/api/jobs/${jobId}/rounds/${round}/units/${unit}`)
  }

  /**
   * Asks for a unit with a lease request signed by the contributor (`signLeaseRequest`). Refusals arrive as
   * `CoordinatorRequestError`s: `bad_lease_signature`, `stale_lease_request`, `replayed_lease_request`,
   * `too_many_leases`, `address_banned`, `stake_required`, among others.
   */
  lease(jobId: string, signed: SignedLeaseRequest): Promise<LeaseResponse> {
    return this.json(`/api/jobs/${jobId}/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(signed),
    })
  }

  submit(leaseId: string, signed: SignedClaim, update: Uint8Array, trainLoss?: number): Promise<SubmitResult> {
    const body = encodeSubmission({ ...signed, ...(trainLoss !== undefined && Number.isFinite(trainLoss) ? { trainLoss } : {}) }, update)
    return this.json(`/api/leases/${leaseId}/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: body as BodyInit,
    })
  }

  // --- Requester: job creation ------------------------------------------------------------------------

  /**
   * Creates a job: `form` holds the draft as its `job` field (src/protocol/jobDraft.ts), first, then any
   * files (`model`, `weights`, `data` or `images` + `labels`). Signed in as the draft's requester (`token`
   * from `signIn`). 201 or 200 (same spec again) → the job id and spec; refusals carry the coordinator's
   * code (`invalid_job_draft`, `invalid_model`, `invalid_dataset`, `model_data_mismatch`,
   * `unsupported_by_bundle`, `file_too_large`, ...) and a message naming the file, row, layer or field.
   */
  createJob(form: FormData, token: string): Promise<CreatedJob> {
    return this.json('/api/jobs', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form })
  }

  // --- Contributor: handing a lease back -------------------------------------------------------------

  /**
   * Hands a live lease back (a tab stopped or paused): its unit is leasable again at once, and nothing counts
   * against the address. Refusals: `lease_not_found` (404), `already_submitted` or `lease_not_live` (409).
   */
  releaseLease(leaseId: string): Promise<LeaseReleaseResult> {
    return this.json(`/api/leases/${encodeURIComponent(leaseId)}/release`, { method: 'POST' })
  }

  // ---------------------------------------------------------------------------------------------------

  // --- Requester: Sign-In with Ethereum, owner actions, model download ---------------------------------

  /**
   * Signs in with Ethereum (EIP-4361): fetches a nonce, has `signer` sign the message `buildSignInMessage`
   * makes for this coordinator (its host, its chain), and returns the session. Pass `session.token` to the
   * owner actions below; it is good until `expiresAt` (an hour). Refusals: `siwe_wrong_domain`,
   * `siwe_wrong_chain`, `siwe_expired`, `siwe_replayed_nonce`, `bad_siwe_signature`, among others.
   */
  async signIn(signer: MessageSigner, options: { now?: number } = {}): Promise<SignInResult> {
    const [{ nonce }, info] = await Promise.all([this.json<AuthNonce>('/api/auth/nonce'), this.info()])
    // A client built with a relative base URL (a page on the coordinator's own origin) signs for that origin.
    const origin = new URL(this.baseUrl || '/', globalThis.location?.href).origin
    const message = buildSignInMessage({ address: signer.address, chainId: info.chainId, origin, nonce, now: options.now })
    const signature = await signer.signMessage({ message })
    return this.postJson('/api/auth/siwe', { message, signature })
  }

  /** No new units until resumed; leases already out may still be answered (and are paid). Owner only. */
  pauseJob(jobId: string, token: string): Promise<OwnerActionResult> {
    return this.ownerAction(jobId, 'pause', token)
  }

  resumeJob(jobId: string, token: string): Promise<OwnerActionResult> {
    return this.ownerAction(jobId, 'resume', token)
  }

  /**
   * For good: no new units; once the work still out is in and charged, the coordinator closes the escrow
   * and the job's payment shows `closed` and what `JobEscrow.refund` returns (`refundable`). Owner only.
   */
  cancelJob(jobId: string, token: string): Promise<OwnerActionResult> {
    return this.ownerAction(jobId, 'cancel', token)
  }

  /**
   * Caps the job's spending at `budget` (base units). Refusals: `budget_below_owed` (below what contributors
   * earned), `escrow_too_small` (deposit into the escrow first). Owner only.
   */
  setJobBudget(jobId: string, budget: Amount, token: string): Promise<OwnerActionResult> {
    return this.postJson(`/api/jobs/${jobId}/budget`, { budget } satisfies SetBudgetRequest, token)
  }

  /**
   * URL of the trained model's `model.json` at closed round `round` (its output checkpoint), or of the
   * latest closed round's when `round` is omitted; `tf.loadLayersModel(url)` loads it unchanged.
   */
  modelUrl(jobId: string, round?: number): string {
    return round === undefined ? `${this.baseUrl}/api/jobs/${jobId}/model.json` : `${this.baseUrl}/api/jobs/${jobId}/rounds/${round}/model.json`
  }

  private ownerAction(jobId: string, action: 'pause' | 'resume' | 'cancel', token: string): Promise<OwnerActionResult> {
    return this.json(`/api/jobs/${jobId}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
  }

  private postJson<T>(path: string, body: unknown, token?: string): Promise<T> {
    return this.json(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    })
  }

  // ---------------------------------------------------------------------------------------------------

  /** The account's earnings and Merkle proofs of the latest posted and latest claimable roots. */
  rewards(account: Address): Promise<RewardsView> {
    return this.json(`/api/rewards/${account}`)
  }

  /** The address's record with the checks (kept across jobs): checks passed and failed, check rate, ban. */
  reputation(account: Address): Promise<ReputationView> {
    return this.json(`/api/reputation/${account}`)
  }

  /** Reward epochs, newest first, with their roots and transaction hashes. */
  async epochs(): Promise<EpochRecord[]> {
    return (await this.json<{ epochs: EpochRecord[] }>('/api/epochs')).epochs
  }

  /** Local chain only: tops `account` up with gas and test tokens. */
  faucet(account: Address): Promise<FaucetResult> {
    return this.json('/api/faucet', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ address: account }),
    })
  }

  /** Fetches a content-addressed blob and checks that its bytes hash to `hash`. */
  async blob(hash: Hash): Promise<Uint8Array> {
    const response = await this.request(`/api/blobs/${hash}`)
    const bytes = new Uint8Array(await response.arrayBuffer())
    const actual = sha256Hex(bytes)
    if (actual !== hash) throw new IntegrityError(`blob ${hash} arrived with hash ${actual}`)
    return bytes
  }

  /** WebSocket URL of a job's live progress feed. */
  liveUrl(jobId: string): string {
    return `${this.baseUrl.replace(/^http/, 'ws')}/api/jobs/${jobId}/live`
  }

  private async json<T>(path: string, init?: RequestInit): Promise<T> {
    return (await (await this.request(path, init)).json()) as T
  }

  private async request(path: string, init?: RequestInit): Promise<Response> {
    let response: Response
    try {
      response = await this.fetchImpl(`${this.baseUrl}${path}`, init)
    } catch (error) {
      throw new CoordinatorUnreachableError(`cannot reach the coordinator at ${this.baseUrl}: ${(error as Error).message}`)
    }
    if (!response.ok) {
      let body: Partial<ApiErrorBody> = {}
      try {
        body = (await response.json()) as ApiErrorBody
      } catch {
        // Not our JSON: a proxy or a crashed server. Report the status alone.
      }
      throw new CoordinatorRequestError(response.status, body.code ?? `http_${response.status}`, body.message ?? response.statusText, {
        retryAfterMs: retryAfterMs(response.headers.get('retry-after')),
      })
    }
    return response
  }
}
