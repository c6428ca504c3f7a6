import { randomUUID } from 'node:crypto'
import type { Address } from 'viem'
import {
  LEASE_REQUEST_MAX_SKEW_MS,
  recoverLeaseRequestSigner,
  type ClaimDomainParams,
  type SignedLeaseRequest,
} from '../../src/protocol/index.ts'
import type { Database, Queryable } from '../db.ts'
import { CoordinatorError } from '../errors.ts'

/**
 * This coordinator's name in lease requests' `audience`: made once per store, so replicas sharing one
 * PostgreSQL share it, and a request signed for another coordinator (another store) is refused here.
 */
export async function coordinatorId(db: Database): Promise<string> {
  await db.query(`INSERT INTO settings (key, value) VALUES ('coordinator_id', $1) ON CONFLICT (key) DO NOTHING`, [`tabtrain-${randomUUID()}`])
  const [row] = await db.query<{ value: string }>(`SELECT value FROM settings WHERE key = 'coordinator_id'`)
  return row!.value
}

/**
 * Checks who asks for a lease: the signature recovers to the address the lease is for, the request is for
 * this job and this coordinator, it is fresh, and its nonce was never seen. A nonce is remembered until the
 * request's freshness window ends, after which the request is refused as stale anyway.
 */
export class LeaseIdentity {
  private sincePrune = 0

  constructor(
    private readonly options: { db: Queryable; domain: ClaimDomainParams; audience: string; now: () => number },
  ) {}

  async verify(jobId: string, signed: SignedLeaseRequest): Promise<Address> {
    const { request } = signed
    const now = this.options.now()
    if (request.jobId !== jobId) {
      throw new CoordinatorError('bad_lease_signature', `the lease request is signed for job ${request.jobId}, not for ${jobId}`)
    }
    if (request.audience !== this.options.audience) {
      throw new CoordinatorError('bad_lease_signature', `the lease request is signed for coordinator ${request.audience}, this is ${this.options.audience}`)
    }
    if (Math.abs(request.issuedAt - now) > LEASE_REQUEST_MAX_SKEW_MS) {
      throw new CoordinatorError(
        'stale_lease_request',
        `the lease request was signed at ${new Date(request.issuedAt).toISOString()}, more than ${LEASE_REQUEST_MAX_SKEW_MS / 60_000} minutes from the coordinator's clock (${new Date(now).toISOString()}); check this computer's clock`,
      )
    }
    const signer = await recoverLeaseRequestSigner(signed, this.options.domain)
    if (signer !== request.contributor) {
      throw new CoordinatorError(
        'bad_lease_signature',
        signer === null ? 'the lease request signature cannot be recovered' : `the lease request signature recovers to ${signer}, not to ${request.contributor}`,
      )
    }
    const fresh = await this.options.db.query(
      `INSERT INTO lease_nonces (contributor, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING nonce`,
      [request.contributor, request.nonce, request.issuedAt + LEASE_REQUEST_MAX_SKEW_MS],
    )
    if (fresh.length === 0) throw new CoordinatorError('replayed_lease_request', `lease request nonce ${request.nonce} was already used`)
    if (++this.sincePrune >= 1000) {
      this.sincePrune = 0
      await this.options.db.query(`DELETE FROM lease_nonces WHERE expires_at < $1`, [now])
    }
    return request.contributor
  }
}
