import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { getAddress, verifyMessage, type Address } from 'viem'
import { createSiweMessage, generateSiweNonce, parseSiweMessage } from 'viem/siwe'
import {
  SESSION_TTL_MS,
  SIGN_IN_MAX_AGE_MS,
  SIGN_IN_MAX_SKEW_MS,
  signInRequestSchema,
  type SignInResult,
} from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'
import { CoordinatorError } from '../errors.ts'

/**
 * Sign-In with Ethereum (EIP-4361) and the session tokens it gives. The message format is viem's
 * (`viem/siwe`); this module only decides what this coordinator accepts:
 * - `domain` is the host the request was sent to, so a message signed for another site is refused here;
 * - `chainId` is the chain claims are signed for (CoordinatorInfo.chainId);
 * - the nonce was handed out here, within SIGN_IN_MAX_AGE_MS, and is used once;
 * - `issuedAt` is recent, `expirationTime` (if any) not passed, `notBefore` (if any) reached;
 * - the signature is an EOA's EIP-191 signature of the message by the address it names (no ERC-1271).
 *
 * A session is a stateless token, `base64url(payload).base64url(HMAC-SHA256)`, under a secret kept in the
 * store's settings (like the coordinator id), so replicas sharing a store accept each other's tokens and
 * a restart signs nobody out. It travels as `Authorization: Bearer`, never in a cookie.
 */

/** The HMAC secret's key in `settings`. */
const SECRET_KEY = 'session_secret'

/** Nonces are pruned every so many issued, once older than a day (used or not, they are long worthless). */
const PRUNE_EVERY = 500
const NONCE_KEEP_MS = 24 * 3600_000

interface TokenPayload {
  /** The signed-in address, EIP-55. */
  a: Address
  /** Expiry, ms since the epoch. */
  e: number
}

const b64url = (bytes: Buffer) => bytes.toString('base64url')

export class SiweAuth {
  private secret: Promise<Buffer> | null = null
  private sincePrune = 0

  constructor(
    private readonly options: {
      db: Queryable
      /** The EIP-155 chain id sign-in messages must name. */
      chainId: number
      now?: () => number
    },
  ) {}

  private get now(): number {
    return (this.options.now ?? Date.now)()
  }

  /** A fresh nonce, good for one sign-in within SIGN_IN_MAX_AGE_MS. */
  async nonce(): Promise<string> {
    // viem's generator: 96 alphanumeric characters from a CSPRNG, as EIP-4361 asks (at least 8).
    const nonce = generateSiweNonce()
    const now = this.now
    await this.options.db.query(`INSERT INTO auth_nonces (nonce, issued_at) VALUES ($1, $2)`, [nonce, now])
    if (++this.sincePrune >= PRUNE_EVERY) {
      this.sincePrune = 0
      await this.options.db.query(`DELETE FROM auth_nonces WHERE issued_at < $1`, [now - NONCE_KEEP_MS])
    }
    return nonce
  }

  /**
   * Checks a signed sign-in message sent to `host` (the request's Host header) and answers with a session
   * token. Every refusal says which rule the message broke.
   */
  async signIn(body: unknown, host: string): Promise<SignInResult> {
    const parsed = signInRequestSchema.safeParse(body)
    if (!parsed.success) {
      throw new CoordinatorError(
        'malformed_request',
        `a sign-in is {message, signature}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
      )
    }
    const { message, signature } = parsed.data
    const fields = parseSiweMessage(message)
    // What was signed must be exactly the EIP-4361 text of its own fields: rebuilding it with viem and
    // comparing refuses anything with extra lines, missing fields or a field viem would not write.
    let canonical: string | null = null
    try {
      if (fields.address && fields.domain && fields.uri && fields.nonce && fields.version && fields.chainId !== undefined) {
        canonical = createSiweMessage({ ...fields, address: fields.address, domain: fields.domain, uri: fields.uri, nonce: fields.nonce, version: fields.version, chainId: fields.chainId })
      }
    } catch {
      canonical = null
    }
    if (canonical !== message || !fields.address) {
      throw new CoordinatorError('siwe_malformed', 'the message is not an EIP-4361 sign-in message (build it with viem/siwe createSiweMessage, as buildSignInMessage does)')
    }
    const address = getAddress(fields.address)
    if (fields.domain !== host) {
      throw new CoordinatorError('siwe_wrong_domain', `the message signs in at ${fields.domain}, but this request was sent to ${host}`)
    }
    let uriHost: string | null = null
    try {
      uriHost = new URL(fields.uri!).host
    } catch {
      uriHost = null
    }
    if (uriHost !== host) {
      throw new CoordinatorError('siwe_wrong_domain', `the message's URI ${fields.uri} is not on ${host}, the host this request was sent to`)
    }
    if (fields.chainId !== this.options.chainId) {
      throw new CoordinatorError('siwe_wrong_chain', `the message is for chain ${fields.chainId}; this coordinator settles on chain ${this.options.chainId}`)
    }
    const now = this.now
    if (!fields.issuedAt || Number.isNaN(fields.issuedAt.getTime())) {
      throw new CoordinatorError('siwe_malformed', 'the message has no valid Issued At time')
    }
    const issuedAt = fields.issuedAt.getTime()
    if (issuedAt > now + SIGN_IN_MAX_SKEW_MS) {
      throw new CoordinatorError(
        'siwe_not_yet_valid',
        `the message says it was issued at ${fields.issuedAt.toISOString()}, ahead of the coordinator's clock (${new Date(now).toISOString()}); check this computer's clock`,
      )
    }
    if (issuedAt < now - SIGN_IN_MAX_AGE_MS) {
      throw new CoordinatorError('siwe_expired', `the message was issued at ${fields.issuedAt.toISOString()}, more than ${SIGN_IN_MAX_AGE_MS / 60_000} minutes ago; sign in again`)
    }
    if (fields.expirationTime && fields.expirationTime.getTime() <= now) {
      throw new CoordinatorError('siwe_expired', `the message expired at ${fields.expirationTime.toISOString()}; sign in again`)
    }
    if (fields.notBefore && fields.notBefore.getTime() > now) {
      throw new CoordinatorError('siwe_not_yet_valid', `the message is valid only from ${fields.notBefore.toISOString()}`)
    }
    let valid = false
    try {
      valid = await verifyMessage({ address, message, signature })
    } catch {
      valid = false
    }
    if (!valid) throw new CoordinatorError('bad_siwe_signature', `the signature is not ${address}'s signature of this message`)
    // Used last, so a message refused for another reason does not burn its nonce.
    await this.useNonce(fields.nonce!, now)
    const expiresAt = Math.min(now + SESSION_TTL_MS, fields.expirationTime?.getTime() ?? Infinity)
    return { token: await this.issueToken(address, expiresAt), address, expiresAt }
  }

  private async useNonce(nonce: string, now: number): Promise<void> {
    const used = await this.options.db.query(
      `UPDATE auth_nonces SET used_at = $2 WHERE nonce = $1 AND used_at IS NULL AND issued_at >= $3 RETURNING nonce`,
      [nonce, now, now - SIGN_IN_MAX_AGE_MS],
    )
    if (used.length > 0) return
    const [row] = await this.options.db.query<{ used_at: string | null }>(`SELECT used_at FROM auth_nonces WHERE nonce = $1`, [nonce])
    if (!row) throw new CoordinatorError('siwe_unknown_nonce', 'this coordinator never issued the message\'s nonce; get one from GET /api/auth/nonce')
    if (row.used_at !== null) throw new CoordinatorError('siwe_replayed_nonce', 'the message\'s nonce was already used to sign in; get a new one')
    throw new CoordinatorError('siwe_expired', `the message's nonce is more than ${SIGN_IN_MAX_AGE_MS / 60_000} minutes old; get a new one`)
  }

  private async key(): Promise<Buffer> {
    this.secret ??= (async () => {
      const { db } = this.options
      await db.query(`INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, [SECRET_KEY, randomBytes(32).toString('hex')])
      const [row] = await db.query<{ value: string }>(`SELECT value FROM settings WHERE key = $1`, [SECRET_KEY])
      return Buffer.from(row!.value, 'hex')
    })()
    this.secret.catch(() => (this.secret = null))
    return this.secret
  }

  private async mac(payload: string): Promise<Buffer> {
    return createHmac('sha256', await this.key()).update(payload).digest()
  }

  /** A session token for `address` until `expiresAt` (ms). */
  async issueToken(address: Address, expiresAt: number): Promise<string> {
    const payload = b64url(Buffer.from(JSON.stringify({ a: getAddress(address), e: expiresAt } satisfies TokenPayload)))
    return `${payload}.${b64url(await this.mac(payload))}`
  }

  /** The address a session token was issued to; `not_signed_in` for a token not ours, `session_expired` past its hour. */
  async verifyToken(token: string): Promise<Address> {
    const [payload, mac, extra] = token.split('.')
    if (!payload || !mac || extra !== undefined) throw new CoordinatorError('not_signed_in', 'the session token is malformed; sign in again')
    const expected = await this.mac(payload)
    const given = Buffer.from(mac, 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new CoordinatorError('not_signed_in', 'the session token was not issued by this coordinator (or was altered); sign in again')
    }
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TokenPayload
    if (!(claims.e > this.now)) throw new CoordinatorError('session_expired', `the session ended at ${new Date(claims.e).toISOString()}; sign in again`)
    return getAddress(claims.a)
  }

  /** The signed-in address of a request with `Authorization: Bearer <token>`. */
  async addressOf(authorization: string | undefined): Promise<Address> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')
    if (!match) {
      throw new CoordinatorError('not_signed_in', 'sign in with Ethereum first (GET /api/auth/nonce, POST /api/auth/siwe), then send Authorization: Bearer <token>')
    }
    return this.verifyToken(match[1]!)
  }
}
