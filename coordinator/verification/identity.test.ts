import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import { signLeaseRequest, type CoordinatorInfo, type Hash, type LeaseResponse } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'
import { alice, BARELY_CHECKED, bob, jobVariant, leased, makeSubmission, TEST_DOMAIN, testJobBase } from '../testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'
import { LEASE_SESSION_TTL_MS, LeaseIdentity } from './identity.ts'

/** A store with only what LeaseIdentity keeps (settings and nonces), for tests that drive its clock. */
function settingsStore(): Queryable {
  const settings = new Map<string, string>()
  const nonces = new Set<string>()
  return {
    async query<Row>(sql: string, params: unknown[] = []): Promise<Row[]> {
      const key = /key = '(\w+)'|VALUES \('(\w+)'/.exec(sql)
      const name = key?.[1] ?? key?.[2]
      if (sql.startsWith('INSERT INTO settings')) {
        if (!settings.has(name!)) settings.set(name!, String(params[0]))
        return []
      }
      if (sql.startsWith('SELECT value FROM settings')) return (settings.has(name!) ? [{ value: settings.get(name!) }] : []) as Row[]
      if (sql.startsWith('INSERT INTO lease_nonces')) {
        const id = `${params[0]}:${params[1]}`
        if (nonces.has(id)) return []
        nonces.add(id)
        return [{ nonce: params[1] }] as Row[]
      }
      throw new Error(`unexpected query in this test: ${sql}`)
    },
  }
}

type SessionAnswer = LeaseResponse & { session?: { token: string; expiresAt: number }; code?: string }

/**
 * The fast paths of the claim path are sound: a session leases only what its signed request could, and a
 * claim from a signer whose public key the coordinator knows is still refused, and never recorded, when
 * its signature is not that signer's.
 */
describe('lease sessions and known signers', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let info: CoordinatorInfo
  let jobId: Hash
  let otherJobId: Hash
  let shapes: number[][]

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    info = await client.info()
    const base = await testJobBase()
    shapes = base.shapes
    const spec = { ...base.spec, verification: BARELY_CHECKED }
    jobId = (await coordinator.jobs.createJob(jobVariant(spec, 'identity test', { unitsPerRound: 50 }), base.blobs)) as Hash
    otherJobId = (await coordinator.jobs.createJob(jobVariant(spec, 'identity test, other job', { unitsPerRound: 50 }), base.blobs)) as Hash
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  const post = async (forJob: Hash, body: unknown): Promise<{ status: number; json: SessionAnswer }> => {
    const answer = await fetch(`${coordinator.url}/api/jobs/${forJob}/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return { status: answer.status, json: (await answer.json()) as SessionAnswer }
  }
  const signed = (account: typeof alice, forJob: Hash) => signLeaseRequest(account, { jobId: forJob, audience: info.coordinatorId, domain: info })
  const submit = (leaseId: string, body: Uint8Array) =>
    fetch(`${coordinator.url}/api/leases/${leaseId}/submission`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: body as BodyInit })

  it('answers a signed lease request with a session that leases units of that job for that address only', async () => {
    const first = await post(jobId, await signed(alice, jobId))
    expect(first.status).toBe(200)
    expect(first.json.status).toBe('leased')
    const session = first.json.session!
    expect(session.expiresAt).toBeGreaterThan(Date.now())

    const second = await post(jobId, { session: session.token })
    expect(second.status).toBe(200)
    expect(leased(second.json).contributor).toBe(alice.address)
    expect(second.json.session).toBeUndefined()

    // Another job: refused, as a signed request for another job is.
    const elsewhere = await post(otherJobId, { session: session.token })
    expect([elsewhere.status, elsewhere.json.code]).toEqual([401, 'bad_lease_signature'])

    // A payload rewritten to name bob, with alice's tag: refused.
    const [payload, tag] = session.token.split('.')
    const decoded = JSON.parse(Buffer.from(payload!, 'base64url').toString('utf8'))
    decoded.request.contributor = bob.address
    const forged = `${Buffer.from(JSON.stringify(decoded)).toString('base64url')}.${tag}`
    const refused = await post(jobId, { session: forged })
    expect([refused.status, refused.json.code]).toEqual([401, 'bad_lease_signature'])
    expect((await post(jobId, { session: 'garbage' })).json.code).toBe('bad_lease_signature')
  })

  it('refuses a session past its time, and one made with another store\'s key', async () => {
    const db = settingsStore()
    let now = Date.now()
    const identity = new LeaseIdentity({ db, domain: TEST_DOMAIN, audience: 'here', now: () => now })
    const request = (await signLeaseRequest(alice, { jobId, audience: 'here', domain: TEST_DOMAIN, now })).request
    const verified = await identity.verifyBody(jobId, await signLeaseRequest(alice, { jobId, audience: 'here', domain: TEST_DOMAIN, now }))
    expect(verified.contributor).toBe(alice.address)
    const { token } = verified.session!
    expect((await identity.verifyBody(jobId, { session: token })).contributor).toBe(alice.address)
    now += LEASE_SESSION_TTL_MS
    await expect(identity.verifyBody(jobId, { session: token })).rejects.toMatchObject({ code: 'stale_lease_request' })

    const otherDb = settingsStore()
    const elsewhere = new LeaseIdentity({ db: otherDb, domain: TEST_DOMAIN, audience: 'here', now: () => now })
    const foreign = await elsewhere.issueSession(jobId, request)
    await expect(identity.verifyBody(jobId, { session: foreign.token })).rejects.toMatchObject({ code: 'bad_lease_signature' })
  })

  it("refuses, and records nothing for, a claim naming a known signer that another key signed", async () => {
    const mallory = privateKeyToAccount(generatePrivateKey())
    // A contributor of its own (the first test's leases are still out).
    const victim = privateKeyToAccount(generatePrivateKey())
    // The victim's key becomes known (its signed lease request) and its table is built (two accepted claims).
    const first = await post(jobId, await signed(victim, jobId))
    const session = first.json.session!.token
    let lease = leased(first.json)
    for (let i = 0; i < 2; i++) {
      const answer = await submit(lease.id, (await makeSubmission({ lease, account: victim, shapes, seed: i + 1 })).body)
      expect(answer.status).toBe(200)
      lease = leased((await post(jobId, { session })).json)
    }

    // Mallory signs a claim that names the victim, for the victim's live lease.
    const forgedSigner = { address: victim.address, signTypedData: mallory.signTypedData }
    const forged = await makeSubmission({ lease, account: victim, shapes, seed: 9, signer: forgedSigner })
    const refused = await submit(lease.id, forged.body)
    expect(refused.status).toBe(401)
    expect(((await refused.json()) as { code: string; message: string })).toMatchObject({ code: 'bad_signature', message: expect.stringContaining(mallory.address) })
    // A signature with the right r and s but the wrong recovery byte recovers to someone else: refused too.
    const good = await makeSubmission({ lease, account: victim, shapes, seed: 9 })
    const json = JSON.parse(new TextDecoder().decode(good.body.subarray(8, 8 + new DataView(good.body.buffer).getUint32(4, true))))
    const v = Number.parseInt(json.signature.slice(130), 16)
    json.signature = `${json.signature.slice(0, 130)}${(v === 27 ? 28 : 27).toString(16)}`
    const { encodeSubmission } = await import('../../src/protocol/index.ts')
    const flipped = await submit(lease.id, encodeSubmission(json, good.updateBytes))
    expect(((await flipped.json()) as { code: string }).code).toBe('bad_signature')

    // Nothing was recorded: the unit is still the victim's to answer, and its own signature is accepted.
    const record = await coordinator.jobs.unitRecord(jobId, String(lease.unit.round), String(lease.unit.unit))
    expect(record.status).toBe('leased')
    expect((await submit(lease.id, good.body)).status).toBe(200)
  })
})
