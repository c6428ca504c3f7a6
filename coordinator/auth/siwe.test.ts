import { createSiweMessage } from 'viem/siwe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import { SESSION_TTL_MS, SIGN_IN_MAX_AGE_MS, buildSignInMessage, type CoordinatorInfo, type SignInResult } from '../../src/protocol/index.ts'
import { migrate, openPglite, type Database } from '../db.ts'
import { alice, bob, TEST_DOMAIN } from '../testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'
import { SiweAuth } from './siwe.ts'

/**
 * Sign-In with Ethereum as a requester's wallet and a program see it: a nonce, one signed EIP-4361
 * message, a bearer token for an hour. Every message that is not exactly ours, now, here, is refused with
 * the code of the rule it broke, and a token is only ever its own address's.
 */
describe('Sign-In with Ethereum over HTTP', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let info: CoordinatorInfo
  let host: string

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    info = await client.info()
    host = new URL(coordinator.url).host
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  const nonce = async () => ((await (await fetch(`${coordinator.url}/api/auth/nonce`)).json()) as { nonce: string }).nonce

  /** POSTs a sign-in; the answer's status and body as any HTTP client sees them. */
  const post = async (message: string, signature: string) => {
    const answer = await fetch(`${coordinator.url}/api/auth/siwe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ message, signature }),
    })
    return { status: answer.status, body: (await answer.json()) as SignInResult & { code?: string; message?: string } }
  }

  /** A message for this coordinator by `alice` unless overridden, signed by `signer` (alice by default). */
  const signed = async (fields: Partial<Parameters<typeof createSiweMessage>[0]> = {}, signer = alice) => {
    const message = createSiweMessage({
      address: alice.address,
      chainId: info.chainId,
      domain: host,
      uri: coordinator.url,
      nonce: await nonce(),
      version: '1',
      issuedAt: new Date(),
      ...fields,
    })
    return { message, signature: await signer.signMessage({ message }) }
  }

  it('hands out a fresh nonce each time, never cached', async () => {
    const answer = await fetch(`${coordinator.url}/api/auth/nonce`)
    expect(answer.headers.get('cache-control')).toBe('no-store')
    const { nonce: a } = (await answer.json()) as { nonce: string }
    expect(a).toMatch(/^[a-zA-Z0-9]{8,}$/)
    expect(await nonce()).not.toBe(a)
  })

  it('signs a wallet in with the shared message builder and gives a bearer token for an hour', async () => {
    const before = Date.now()
    const session = await client.signIn(alice)
    expect(session.address).toBe(alice.address)
    expect(session.expiresAt).toBeGreaterThanOrEqual(before + SESSION_TTL_MS)
    expect(session.expiresAt).toBeLessThanOrEqual(Date.now() + SESSION_TTL_MS)
    expect(await coordinator.app.tabtrainAuth!.verifyToken(session.token)).toBe(alice.address)
    // The same message, built by hand with the protocol's builder, says who signs in where.
    const message = buildSignInMessage({ address: alice.address, chainId: info.chainId, origin: coordinator.url, nonce: 'abcdefgh1234' })
    expect(message).toContain(`${host} wants you to sign in with your Ethereum account:\n${alice.address}`)
    expect(message).toContain(`Chain ID: ${info.chainId}`)
  })

  it('refuses a replayed nonce', async () => {
    const { message, signature } = await signed()
    expect((await post(message, signature)).status).toBe(200)
    expect(await post(message, signature)).toMatchObject({ status: 409, body: { code: 'siwe_replayed_nonce' } })
  })

  it('refuses a nonce this coordinator never issued', async () => {
    const { message, signature } = await signed({ nonce: 'madeUpNonce12345' })
    expect(await post(message, signature)).toMatchObject({ status: 401, body: { code: 'siwe_unknown_nonce' } })
  })

  it('refuses a message signed for another site, or whose URI is elsewhere', async () => {
    const other = await signed({ domain: 'evil.example', uri: 'https://evil.example' })
    const refused = await post(other.message, other.signature)
    expect(refused).toMatchObject({ status: 401, body: { code: 'siwe_wrong_domain' } })
    expect(refused.body.message).toContain(`signs in at evil.example, but this request was sent to ${host}`)
    const uri = await signed({ uri: 'https://evil.example/login' })
    expect(await post(uri.message, uri.signature)).toMatchObject({ status: 401, body: { code: 'siwe_wrong_domain' } })
  })

  it('refuses a message for another chain', async () => {
    const { message, signature } = await signed({ chainId: info.chainId + 1 })
    expect(await post(message, signature)).toMatchObject({ status: 401, body: { code: 'siwe_wrong_chain' } })
  })

  it('refuses an expired message, an old one, and one not valid yet', async () => {
    const expired = await signed({ issuedAt: new Date(Date.now() - 60_000), expirationTime: new Date(Date.now() - 1000) })
    expect(await post(expired.message, expired.signature)).toMatchObject({ status: 401, body: { code: 'siwe_expired' } })
    const old = await signed({ issuedAt: new Date(Date.now() - SIGN_IN_MAX_AGE_MS - 60_000) })
    expect(await post(old.message, old.signature)).toMatchObject({ status: 401, body: { code: 'siwe_expired' } })
    const early = await signed({ notBefore: new Date(Date.now() + 3600_000) })
    expect(await post(early.message, early.signature)).toMatchObject({ status: 401, body: { code: 'siwe_not_yet_valid' } })
  })

  it('refuses a signature by anyone but the address the message names, without burning the nonce', async () => {
    const forged = await signed({}, bob)
    expect(await post(forged.message, forged.signature)).toMatchObject({ status: 401, body: { code: 'bad_siwe_signature' } })
    // Alice can still use her nonce: a refused message does not consume it.
    const own = await alice.signMessage({ message: forged.message })
    expect((await post(forged.message, own)).status).toBe(200)
  })

  it('refuses what is not an EIP-4361 message, and a body without a signature', async () => {
    const { message, signature } = await signed()
    expect(await post(`${message}\nExtra: line`, signature)).toMatchObject({ status: 400, body: { code: 'siwe_malformed' } })
    expect(await post('hello', signature)).toMatchObject({ status: 400, body: { code: 'siwe_malformed' } })
    expect(await post(message, 'not a signature')).toMatchObject({ status: 400, body: { code: 'malformed_request' } })
  })
})

describe('session tokens', () => {
  let db: Database
  let now = 1_800_000_000_000
  let auth: SiweAuth

  beforeAll(async () => {
    db = await openPglite()
    await migrate(db)
    auth = new SiweAuth({ db, chainId: TEST_DOMAIN.chainId, now: () => now })
  })

  afterAll(async () => {
    await db?.close()
  })

  const signIn = async (account = alice) => {
    const message = buildSignInMessage({ address: account.address, chainId: TEST_DOMAIN.chainId, origin: 'http://coordinator.test', nonce: await auth.nonce(), now })
    return auth.signIn({ message, signature: await account.signMessage({ message }) }, 'coordinator.test')
  }

  it('names only the address it was issued to: an altered token is nobody\'s', async () => {
    const bobs = await signIn(bob)
    expect(await auth.addressOf(`Bearer ${bobs.token}`)).toBe(bob.address)
    // Bob's token rewritten to say alice, keeping bob's MAC.
    const [, mac] = bobs.token.split('.')
    const payload = Buffer.from(JSON.stringify({ a: alice.address, e: bobs.expiresAt })).toString('base64url')
    await expect(auth.addressOf(`Bearer ${payload}.${mac}`)).rejects.toMatchObject({ code: 'not_signed_in', status: 401 })
    // A token from another store (another secret) is nobody's here either.
    const other = await openPglite()
    await migrate(other)
    const elsewhere = new SiweAuth({ db: other, chainId: TEST_DOMAIN.chainId, now: () => now })
    await expect(auth.verifyToken(await elsewhere.issueToken(alice.address, now + 1000))).rejects.toMatchObject({ code: 'not_signed_in' })
    await other.close()
  })

  it('asks to sign in when there is no token, and to sign in again an hour later', async () => {
    await expect(auth.addressOf(undefined)).rejects.toMatchObject({ code: 'not_signed_in', status: 401 })
    await expect(auth.addressOf('Basic abc')).rejects.toMatchObject({ code: 'not_signed_in' })
    const session = await signIn()
    expect(session.expiresAt).toBe(now + SESSION_TTL_MS)
    now += SESSION_TTL_MS - 1
    expect(await auth.addressOf(`Bearer ${session.token}`)).toBe(alice.address)
    now += 1
    await expect(auth.addressOf(`Bearer ${session.token}`)).rejects.toMatchObject({ code: 'session_expired', status: 401 })
  })

  it('keeps its secret in the store: a restarted coordinator accepts the sessions it gave', async () => {
    const session = await signIn()
    const restarted = new SiweAuth({ db, chainId: TEST_DOMAIN.chainId, now: () => now })
    expect(await restarted.verifyToken(session.token)).toBe(alice.address)
  })

  it('lets a nonce go stale when it is not used within its time', async () => {
    const stale = await auth.nonce()
    now += SIGN_IN_MAX_AGE_MS + 1
    const message = buildSignInMessage({ address: alice.address, chainId: TEST_DOMAIN.chainId, origin: 'http://coordinator.test', nonce: stale, now })
    await expect(auth.signIn({ message, signature: await alice.signMessage({ message }) }, 'coordinator.test')).rejects.toMatchObject({ code: 'siwe_expired' })
  })
})
