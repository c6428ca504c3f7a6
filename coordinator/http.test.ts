import type { Address } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { CoordinatorClient, CoordinatorRequestError } from '../src/client/coordinatorClient.ts'
import {
  LEASE_REQUEST_MAX_SKEW_MS,
  decodeTensorList,
  encodeSubmission,
  encodeUpdate,
  sha256Hex,
  signLeaseRequest,
  signWorkClaim,
  type CoordinatorInfo,
  type Hash,
  type LeaseRequestSigner,
  type LiveMessage,
  type SignedLeaseRequest,
} from '../src/protocol/index.ts'
import { TEST_DOMAIN, jobVariant, leased, signedLease, refusal } from './testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/** The HTTP surface: status codes and messages a client sees, lease identity, size limits, blobs, the live feed. */
describe('coordinator HTTP API', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let info: CoordinatorInfo
  let jobId: Hash
  let jobCounter = 0

  beforeAll(async () => {
    // No chain: the preset is a volunteer job (no escrow, no stake), claims are signed under TEST_DOMAIN.
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    info = await client.info()
    jobId = coordinator.presetJobId as Hash
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })


  /** A job of its own for a test that counts units (the preset's are shared by the other tests). */
  const freshJob = async () => {
    const preset = await client.job(jobId)
    // Its blobs are the preset's, already stored.
    return coordinator.jobs.createJob(jobVariant(preset.spec, `http test job ${++jobCounter}`), [])
  }

  /** A lease request signed by `account` for `forJob` at this coordinator, with fields overridable. */
  const sign = (account: LeaseRequestSigner, forJob: Hash, params: { audience?: string; now?: number } = {}) =>
    signLeaseRequest(account, { jobId: forJob, audience: params.audience ?? info.coordinatorId, domain: info, now: params.now })

  /** POSTs any body as a lease request, as a client without the typed client might. */
  const postLease = async (forJob: Hash, body: unknown) => {
    const answer = await fetch(`${coordinator.url}/api/jobs/${forJob}/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return { status: answer.status, body: (await answer.json()) as { code?: string; message?: string; status?: string } }
  }

  it('serves the EIP-712 domain claims and lease requests are signed under, and its coordinator id', async () => {
    expect(info).toMatchObject({ chainId: TEST_DOMAIN.chainId, verifyingContract: TEST_DOMAIN.verifyingContract, chain: null, epochSeconds: null })
    expect(info.coordinatorId).toMatch(/^tabtrain-[0-9a-f-]{36}$/)
    // Stable for the store: what every lease request names as its audience.
    expect((await client.info()).coordinatorId).toBe(info.coordinatorId)
  })

  it('serves a unit with the checkpoint it starts from, for verifiers', async () => {
    const job = await client.job(jobId)
    const record = await client.unit(jobId, 0, 1)
    expect(record).toMatchObject({ unit: { jobId, round: 0, unit: 1, inputHash: job.spec.model.initialWeights }, outputHash: null, contributor: null })
    const missing = await refusal(client.unit(jobId, 0, 4))
    expect([missing.status, missing.code]).toEqual([404, 'unit_not_found'])
    const malformed = await refusal(client.unit(jobId, -1, 0))
    expect([malformed.status, malformed.code]).toEqual([400, 'malformed_request'])
  })

  it('answers an unknown job with 404 and says which', async () => {
    const error = await refusal(client.progress(`0x${'ab'.repeat(32)}`))
    expect(error.status).toBe(404)
    expect(error.code).toBe('job_not_found')
    expect(error.message).toContain('abab')
  })

  it('refuses a lease for something that is not an address', async () => {
    const signed = await sign(privateKeyToAccount(generatePrivateKey()), jobId)
    const error = await refusal(client.lease(jobId, { ...signed, request: { ...signed.request, contributor: 'not-an-address' as Address } }))
    expect([error.status, error.code]).toEqual([400, 'malformed_request'])
    expect(error.message).toContain('request.contributor')
  })

  it('serves blobs by hash and the client checks their integrity', async () => {
    const job = await client.job(jobId)
    const bytes = await client.blob(job.spec.model.initialWeights)
    expect(decodeTensorList(bytes).shapes).toEqual([[784, 64], [64], [64, 10], [10]])
    const missing = await refusal(client.blob(`0x${'00'.repeat(32)}`))
    expect(missing.status).toBe(404)
  })

  it('refuses an oversized upload before reading it, and records nothing', async () => {
    const account = privateKeyToAccount(generatePrivateKey())
    const lease = leased(await signedLease(client, account, jobId))
    const before = await client.progress(jobId)
    const huge = new Uint8Array(8 * 1024 * 1024)
    const answer = await fetch(`${coordinator.url}/api/leases/${lease.id}/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: huge as BodyInit,
    })
    expect(answer.status).toBe(413)
    const body = (await answer.json()) as { code: string; message: string }
    expect(body.code).toBe('payload_too_large')
    expect(body.message).toMatch(/at most \d+ bytes/)
    expect((await client.progress(jobId)).acceptedUnits).toBe(before.acceptedUnits)
  })

  it('refuses a submission sent as JSON instead of the binary envelope', async () => {
    const answer = await fetch(`${coordinator.url}/api/leases/whatever/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"claim":1}',
    })
    expect(answer.status).toBe(400)
    expect(((await answer.json()) as { code: string }).code).toBe('malformed_submission')
  })

  it('pushes progress over the WebSocket when an update is accepted', async () => {
    const account = privateKeyToAccount(generatePrivateKey())
    const messages: LiveMessage[] = []
    const socket = new WebSocket(client.liveUrl(jobId))
    // Node 20 has no global WebSocket; `ws` is the client the server side is built on.
    socket.on('message', (data) => messages.push(JSON.parse(String(data)) as LiveMessage))
    await expect.poll(() => messages.length).toBeGreaterThan(0)
    const before = messages.at(-1)!.progress.acceptedUnits

    const response = await signedLease(client, account, jobId)
    if (response.status !== 'leased') throw new Error('expected a lease')
    const initial = decodeTensorList(await client.blob(response.lease.unit.inputHash))
    // Encoded as the preset job sends its updates (int8 blocks), and hashed as sent.
    const { compression } = (await client.job(jobId)).spec.training
    const updateBytes = encodeUpdate(compression, { shapes: initial.shapes, values: initial.values.map((v) => new Float32Array(v.length).fill(1e-3)) })
    const signed = await signWorkClaim(
      account,
      { ...response.lease.unit, outputHash: sha256Hex(updateBytes), contributor: account.address, deviceClass: 'test' },
      await client.info(),
    )
    const answer = await fetch(`${coordinator.url}/api/leases/${response.lease.id}/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: encodeSubmission(signed, updateBytes) as BodyInit,
    })
    expect(answer.status).toBe(200)
    await expect.poll(() => messages.at(-1)!.progress.acceptedUnits).toBe(before + 1)
    expect(messages.at(-1)!.progress.contributors.map((c) => c.address)).toContain(account.address)
    socket.close()
  })

  describe('lease identity', () => {
    it('refuses an unsigned lease request (the old {contributor} body) with 400 and says what a lease request is', async () => {
      const answer = await postLease(jobId, { contributor: privateKeyToAccount(generatePrivateKey()).address })
      expect(answer.status).toBe(400)
      expect(answer.body.code).toBe('malformed_request')
      expect(answer.body.message).toContain('{request: {jobId, contributor, nonce, issuedAt, audience}, signature}')
    })

    it('refuses a request signed by another key than the contributor it names, and says who signed', async () => {
      const victim = privateKeyToAccount(generatePrivateKey())
      const mallory = privateKeyToAccount(generatePrivateKey())
      // Mallory's key over a request naming the victim: the victim's name without the victim's key.
      const forged = await sign({ address: victim.address, signTypedData: (args) => mallory.signTypedData(args) }, jobId)
      expect(forged.request.contributor).toBe(victim.address)
      const error = await refusal(client.lease(jobId, forged))
      expect([error.status, error.code]).toEqual([401, 'bad_lease_signature'])
      expect(error.message).toBe(`the lease request signature recovers to ${mallory.address}, not to ${victim.address}`)
    })

    it('refuses a request signed for another job than the one in the URL', async () => {
      const other = `0x${'ab'.repeat(32)}` as Hash
      const signed = await sign(privateKeyToAccount(generatePrivateKey()), other)
      const error = await refusal(client.lease(jobId, signed))
      expect([error.status, error.code]).toEqual([401, 'bad_lease_signature'])
      expect(error.message).toBe(`the lease request is signed for job ${other}, not for ${jobId}`)
    })

    it('refuses a request signed for another coordinator', async () => {
      const signed = await sign(privateKeyToAccount(generatePrivateKey()), jobId, { audience: 'tabtrain-another-coordinator' })
      const error = await refusal(client.lease(jobId, signed))
      expect([error.status, error.code]).toEqual([401, 'bad_lease_signature'])
      expect(error.message).toContain('signed for coordinator tabtrain-another-coordinator')
      expect(error.message).toContain(`this is ${info.coordinatorId}`)
    })

    it.each([
      ['in the past', -1],
      ['in the future', 1],
    ])('refuses a request issued 6 minutes %s and tells the user to check the clock', async (_when, sign6) => {
      const issuedAt = Date.now() + sign6 * 6 * 60_000
      const signed = await sign(privateKeyToAccount(generatePrivateKey()), jobId, { now: issuedAt })
      const error = await refusal(client.lease(jobId, signed))
      expect([error.status, error.code]).toEqual([401, 'stale_lease_request'])
      expect(error.message).toContain(new Date(issuedAt).toISOString())
      expect(error.message).toContain(`more than ${LEASE_REQUEST_MAX_SKEW_MS / 60_000} minutes from the coordinator's clock`)
      expect(error.message).toContain("check this computer's clock")
    })

    it('accepts a request issued 4 minutes ahead: a drifting laptop clock is tolerated', async () => {
      const signed = await sign(privateKeyToAccount(generatePrivateKey()), await freshJob(), { now: Date.now() + 4 * 60_000 })
      expect((await client.lease(signed.request.jobId, signed)).status).toBe('leased')
    })

    it('grants a signed request once: the same request sent again is a replay (409)', async () => {
      const job = await freshJob()
      const signed: SignedLeaseRequest = await sign(privateKeyToAccount(generatePrivateKey()), job)
      const first = leased(await client.lease(job, signed))
      expect(first.contributor).toBe(signed.request.contributor)
      const error = await refusal(client.lease(job, signed))
      expect([error.status, error.code]).toEqual([409, 'replayed_lease_request'])
      expect(error.message).toContain(signed.request.nonce)
      // The replay took nothing: only the first lease's unit is out.
      expect((await client.unit(job, 0, 0)).status).toBe('leased')
      expect((await client.unit(job, 0, 1)).status).toBe('open')
    })

    it('refuses a third live lease to one address in one job (429), while another address still gets one', async () => {
      const job = await freshJob()
      const account = privateKeyToAccount(generatePrivateKey())
      leased(await signedLease(client, account, job))
      leased(await signedLease(client, account, job))
      const error = await refusal(signedLease(client, account, job))
      expect([error.status, error.code]).toEqual([429, 'too_many_leases'])
      expect(error.message).toContain(`${account.address} already holds 2 live lease(s) in this job`)
      expect(leased(await signedLease(client, privateKeyToAccount(generatePrivateKey()), job)).unit.unit).toBe(2)
    })

    it("leaves a keyless squatter nothing: 50 unsigned or forged requests get no lease and the round's units stay open", async () => {
      const job = await freshJob()
      const { spec } = await client.job(job)
      const random = () => privateKeyToAccount(generatePrivateKey()).address
      const template = await sign(privateKeyToAccount(generatePrivateKey()), job)
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          postLease(
            job,
            i % 2 === 0
              ? { contributor: random() }
              : // A well-formed request for someone else's address with a signature made without its key.
                { request: { ...template.request, contributor: random() }, signature: `0x${(i % 16).toString(16).repeat(128)}1b` },
          ),
        ),
      )
      for (const answer of answers) expect(answer.body.status).toBeUndefined()
      expect(answers.filter((a) => a.status === 400).map((a) => a.body.code)).toEqual(Array(25).fill('malformed_request'))
      expect(answers.filter((a) => a.status === 401).map((a) => a.body.code)).toEqual(Array(25).fill('bad_lease_signature'))
      for (let unit = 0; unit < spec.training.unitsPerRound; unit++) {
        expect((await client.unit(job, 0, unit)).status).toBe('open')
      }
      const honest = privateKeyToAccount(generatePrivateKey())
      const lease = leased(await signedLease(client, honest, job))
      expect(lease).toMatchObject({ contributor: honest.address, unit: { jobId: job, round: 0, unit: 0 } })
    })
  })

  describe('reputation', () => {
    it('serves a fresh address as a clean record checked at the initial rate', async () => {
      const address = privateKeyToAccount(generatePrivateKey()).address
      expect(await client.reputation(address)).toEqual({
        address,
        unitsAccepted: 0,
        checksPassed: 0,
        checksFailed: 0,
        unitsRejected: 0,
        consecutiveClean: 0,
        leasesAbandoned: 0,
        slashes: 0,
        banned: false,
        bannedReason: null,
        checkRate: 1 / 3,
      })
      // Any case: the answer names the checksummed address.
      expect((await client.reputation(address.toLowerCase() as Address)).address).toBe(address)
    })

    it('refuses something that is not an address with 400', async () => {
      const error = await refusal(client.reputation('0x1234' as Address))
      expect([error.status, error.code]).toEqual([400, 'malformed_request'])
      expect(error.message).toContain('0x1234 is not a 20-byte hex address')
    })
  })
})
