import type { Address } from 'viem'
import {
  encodeSubmission,
  sha256Hex,
  type ApiErrorBody,
  type CoordinatorInfo,
  type EpochRecord,
  type FaucetResult,
  type Hash,
  type JobDetail,
  type JobProgress,
  type JobSummary,
  type LeaseResponse,
  type ReputationView,
  type RewardsView,
  type SignedLeaseRequest,
  type SignedClaim,
  type SubmitResult,
  type UnitRecord,
} from '../protocol/index.ts'

/** A refusal from the coordinator, with its stable code (e.g. `stale_round`) and HTTP status. */
export class CoordinatorRequestError extends Error {
  override name = 'CoordinatorRequestError'
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
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
      throw new CoordinatorRequestError(response.status, body.code ?? `http_${response.status}`, body.message ?? response.statusText)
    }
    return response
  }
}
