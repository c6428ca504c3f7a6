import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'
import type { Address } from 'viem'
import {
  LEASE_REQUEST_MAX_SKEW_MS,
  leaseRequestDigest,
  signedLeaseRequestSchema,
  type ClaimDomainParams,
  type LeaseRequest,
  type SignedLeaseRequest,
} from '../../src/protocol/index.ts'
import type { Database, Queryable } from '../db.ts'
import { CoordinatorError } from '../errors.ts'
import { signerKeys as sharedSignerKeys, type SignerKeys } from './signerKeys.ts'

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
 * How long a lease session stays good. A tab asks for a lease every unit (seconds to a minute apart), so
 * one signature per quarter hour instead of one per unit; past it the coordinator answers
 * `stale_lease_request` and the tab signs a fresh request.
 */
export const LEASE_SESSION_TTL_MS = 15 * 60_000

/**
 * Body of `POST /api/jobs/:jobId/leases`: a signed lease request, or the session a signed request of the
 * same job was answered with (`LeaseResponse.session`).
 */
const sessionBodySchema = z.object({ session: z.string().min(1).max(1000) })
export type LeaseRequestBody = SignedLeaseRequest | z.infer<typeof sessionBodySchema>

/** Parses a lease request body; a body with a `session` field is a session, anything else a signed request. */
export function parseLeaseRequestBody(body: unknown) {
  return typeof body === 'object' && body !== null && 'session' in body
    ? sessionBodySchema.safeParse(body)
    : signedLeaseRequestSchema.safeParse(body)
}

/** Handed back with a lease answer to a signed request: later requests of the job send `{session: token}`. */
export interface LeaseSession {
  token: string
  expiresAt: number
}

export interface VerifiedLeaseRequest {
  contributor: Address
  /**
   * The signed request's terms (referrer and the rest): for a session, the terms of the signed request it
   * was issued for, so a session never leases on terms its contributor did not sign.
   */
  request: LeaseRequest
  /** A new session, issued when the request was signed. */
  session?: LeaseSession
}

const sessionPayloadSchema = z.object({ jobId: z.string(), expiresAt: z.number(), request: z.record(z.string(), z.unknown()) })

/**
 * Checks who asks for a lease: the signature recovers to the address the lease is for, the request is for
 * this job and this coordinator, it is fresh, and its nonce was never seen. A nonce is remembered until the
 * request's freshness window ends, after which the request is refused as stale anyway.
 *
 * A verified signed request is answered with a session: an HMAC (key kept in the store's settings, so
 * replicas sharing one PostgreSQL accept each other's sessions) over the job, the signed request's terms
 * and an expiry. Later lease requests of that job send the session instead of a signature, which costs
 * the coordinator an HMAC instead of a public-key recovery (~2.5 ms of CPU) and a nonce write, and costs
 * the tab no signature. What a session can do is what the signed request it came from could: lease units
 * of that job for that address on the terms it signed (referrer, unit size). It is a bearer secret, told
 * only to the signer in the answer to its own request, like a lease id; whoever else learned it could
 * take leases in the signer's name (leases that lapse count against its probation) but never answer one,
 * because every answer is a WorkClaim that must carry the contributor's own signature (submissions.ts).
 * Nothing a session grants is paid or averaged without that signature.
 */
export class LeaseIdentity {
  private sincePrune = 0
  private sessionKey: Promise<Buffer> | null = null

  constructor(
    private readonly options: {
      db: Queryable
      domain: ClaimDomainParams
      audience: string
      now: () => number
      /** Known signers' public keys (signerKeys.ts); the process's shared cache unless a test brings its own. */
      signerKeys?: SignerKeys
    },
  ) {}

  /** A signed request or a session: who asks, on which signed terms, and a new session for a signed one. */
  async verifyBody(jobId: string, body: LeaseRequestBody): Promise<VerifiedLeaseRequest> {
    if ('session' in body) return this.verifySession(jobId, body.session)
    const contributor = await this.verify(jobId, body)
    return { contributor, request: body.request, session: await this.issueSession(jobId, body.request) }
  }

  private key(): Promise<Buffer> {
    this.sessionKey ??= (async () => {
      await this.options.db.query(`INSERT INTO settings (key, value) VALUES ('lease_session_key', $1) ON CONFLICT (key) DO NOTHING`, [
        randomBytes(32).toString('hex'),
      ])
      const [row] = await this.options.db.query<{ value: string }>(`SELECT value FROM settings WHERE key = 'lease_session_key'`)
      return Buffer.from(row!.value, 'hex')
    })()
    return this.sessionKey
  }

  private async mac(payload: string): Promise<Buffer> {
    return createHmac('sha256', await this.key()).update(`tabtrain-lease-session\n${this.options.audience}\n${payload}`).digest()
  }

  async issueSession(jobId: string, request: LeaseRequest): Promise<LeaseSession> {
    const expiresAt = this.options.now() + LEASE_SESSION_TTL_MS
    const payload = Buffer.from(JSON.stringify({ jobId, expiresAt, request })).toString('base64url')
    return { token: `${payload}.${(await this.mac(payload)).toString('base64url')}`, expiresAt }
  }

  async verifySession(jobId: string, token: string): Promise<VerifiedLeaseRequest> {
    const [payload, tag, extra] = token.split('.')
    const given = Buffer.from(tag ?? '', 'base64url')
    const expected = payload === undefined || extra !== undefined ? null : await this.mac(payload)
    if (!expected || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new CoordinatorError('bad_lease_signature', 'the lease session is not one this coordinator issued; sign a new lease request')
    }
    // Authentic from here on: only this coordinator's key could have made the tag.
    const parsed = sessionPayloadSchema.parse(JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8')))
    if (parsed.jobId !== jobId) {
      throw new CoordinatorError('bad_lease_signature', `the lease session is for job ${parsed.jobId}, not for ${jobId}`)
    }
    if (parsed.expiresAt <= this.options.now()) {
      throw new CoordinatorError('stale_lease_request', `the lease session ran out at ${new Date(parsed.expiresAt).toISOString()}; sign a new lease request`)
    }
    const request = parsed.request as LeaseRequest
    return { contributor: request.contributor, request }
  }

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
    let digest: `0x${string}` | null = null
    try {
      digest = leaseRequestDigest(request, this.options.domain)
    } catch {
      // As recoverLeaseRequestSigner: a request that cannot be hashed as typed data does not recover.
    }
    const signer = digest ? await (this.options.signerKeys ?? sharedSignerKeys).signer(digest, signed.signature, request.contributor) : null
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
