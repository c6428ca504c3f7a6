import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient, CoordinatorRequestError } from '../src/client/coordinatorClient.ts'
import { decodeTensorList, type Hash } from '../src/protocol/index.ts'
import { TEST_DOMAIN, jobVariant, leased, makeSubmission, signedLease, refusal } from './testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/**
 * `POST /api/leases/:leaseId/release`: a tab that stops or pauses hands its unit back at once, instead of
 * holding it for the rest of its lease time, and is not treated as one that let its lease lapse.
 */
describe('handing a lease back', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let presetId: Hash
  let jobCounter = 0

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    presetId = coordinator.presetJobId as Hash
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  /** A job of one unit per round: whoever holds that unit holds the whole round. */
  const oneUnitJob = async () => {
    const preset = await client.job(presetId)
    return (await coordinator.jobs.createJob(jobVariant(preset.spec, `release test job ${++jobCounter}`, { unitsPerRound: 1 }), [])) as Hash
  }
  /** The model's tensor shapes, from the job's initial checkpoint. */
  const shapesOf = async (jobId: Hash) => decodeTensorList(await client.blob((await client.job(jobId)).spec.model.initialWeights)).shapes
  const post = async (leaseId: string, body: Uint8Array) => {
    const answer = await fetch(`${coordinator.url}/api/leases/${leaseId}/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: body as BodyInit,
    })
    return { status: answer.status, body: (await answer.json()) as unknown }
  }
  const fresh = () => privateKeyToAccount(generatePrivateKey())

  it('frees the unit for another address at once, and counts nothing against the holder', async () => {
    const jobId = await oneUnitJob()
    const [alice, bob] = [fresh(), fresh()]
    const lease = leased(await signedLease(client, alice, jobId))
    // While alice holds the only unit, bob is told to wait for it.
    expect(await signedLease(client, bob, jobId)).toMatchObject({ status: 'wait' })

    expect(await client.releaseLease(lease.id)).toEqual({ released: true, round: 0, unit: 0 })
    expect(await client.unit(jobId, 0, 0)).toMatchObject({ status: 'open' })
    const bobs = leased(await signedLease(client, bob, jobId))
    expect(bobs.unit).toEqual(lease.unit)
    expect((await client.reputation(alice.address)).leasesAbandoned).toBe(0)

    // Alice's answer, signed for the lease she handed back, is refused in words; bob's is accepted.
    const shapes = await shapesOf(jobId)
    const refused = await post(lease.id, (await makeSubmission({ lease, account: alice, shapes })).body)
    expect(refused.status).toBe(410)
    expect(refused.body).toMatchObject({ code: 'lease_expired', message: expect.stringMatching(/handed back/) })
    expect((await post(bobs.id, (await makeSubmission({ lease: bobs, account: bob, shapes })).body)).status).toBe(200)
  })

  it('does not count against the live-lease cap once handed back', async () => {
    const jobId = await oneUnitJob()
    const alice = fresh()
    for (let i = 0; i < 5; i++) {
      const lease = leased(await signedLease(client, alice, jobId))
      await client.releaseLease(lease.id)
    }
    expect((await client.reputation(alice.address)).leasesAbandoned).toBe(0)
  })

  it('answers an unknown lease with 404 and a lease no longer held with 409, each with its code', async () => {
    const unknown = await refusal(client.releaseLease('no-such-lease'))
    expect([unknown.status, unknown.code]).toEqual([404, 'lease_not_found'])

    const jobId = await oneUnitJob()
    const alice = fresh()
    const lease = leased(await signedLease(client, alice, jobId))
    await client.releaseLease(lease.id)
    const twice = await refusal(client.releaseLease(lease.id))
    expect([twice.status, twice.code]).toEqual([409, 'lease_not_live'])
    expect(twice.message).toMatch(/no longer held/)
  })

  it('refuses to hand back a lease that was answered', async () => {
    const jobId = await oneUnitJob()
    const alice = fresh()
    const lease = leased(await signedLease(client, alice, jobId))
    const answer = await post(lease.id, (await makeSubmission({ lease, account: alice, shapes: await shapesOf(jobId) })).body)
    expect(answer.status).toBe(200)
    const error = await refusal(client.releaseLease(lease.id))
    expect([error.status, error.code]).toEqual([409, 'already_submitted'])
  })
})
