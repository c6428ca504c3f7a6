import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { CoordinatorClient, CoordinatorRequestError } from '../src/client/coordinatorClient.ts'
import { decodeTensorList, encodeSubmission, hashTensorList, signWorkClaim, type Hash, type LiveMessage } from '../src/protocol/index.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/** The HTTP surface: status codes and messages a client sees, size limits, blobs, the live feed. */
describe('coordinator HTTP API', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let jobId: Hash

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator()
    client = new CoordinatorClient(coordinator.url)
    jobId = coordinator.presetJobId as Hash
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  const refusal = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => null,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(CoordinatorRequestError)
    return error as CoordinatorRequestError
  }

  it('serves the EIP-712 domain claims are signed under: the local chain and its dispute contract', async () => {
    const info = await client.info()
    expect(info.chain).not.toBeNull()
    expect(info).toMatchObject({ chainId: 31337, verifyingContract: info.chain!.contracts.disputeResolver })
    expect(info.chain!.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
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
    const error = await refusal(client.lease(jobId, 'not-an-address' as `0x${string}`))
    expect(error.status).toBe(400)
    expect(error.code).toBe('malformed_request')
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
    const response = await client.lease(jobId, account.address)
    if (response.status !== 'leased') throw new Error('expected a lease')
    const before = await client.progress(jobId)
    const huge = new Uint8Array(8 * 1024 * 1024)
    const answer = await fetch(`${coordinator.url}/api/leases/${response.lease.id}/submission`, {
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

    const response = await client.lease(jobId, account.address)
    if (response.status !== 'leased') throw new Error('expected a lease')
    const initial = decodeTensorList(await client.blob(response.lease.unit.inputHash))
    const update = hashTensorList({ shapes: initial.shapes, values: initial.values.map((v) => new Float32Array(v.length).fill(1e-3)) })
    const signed = await signWorkClaim(
      account,
      { ...response.lease.unit, outputHash: update.hash, contributor: account.address, deviceClass: 'test' },
      await client.info(),
    )
    const answer = await fetch(`${coordinator.url}/api/leases/${response.lease.id}/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: encodeSubmission(signed, update.bytes) as BodyInit,
    })
    expect(answer.status).toBe(200)
    await expect.poll(() => messages.at(-1)!.progress.acceptedUnits).toBe(before + 1)
    expect(messages.at(-1)!.progress.contributors.map((c) => c.address)).toContain(account.address)
    socket.close()
  })
})
