import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { decodeTensorList, parseJobSpec, signLeaseRequest, type Hash, type JobSpec } from '../src/protocol/index.ts'
import { BARELY_CHECKED, TEST_DOMAIN, jobVariant, leased, makeSubmission } from './testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/**
 * Units sized to the contributor's device: a lease request asks for an H (signed), the coordinator clamps it
 * to the job's [innerSteps, maxInnerSteps], records it on the unit, and counts the answer's examples as
 * H × batch size (what it is averaged and paid by). A check of that unit runs the same H.
 */
describe('units sized by the contributor (maxInnerSteps)', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let preset: JobSpec
  let jobCounter = 0

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    preset = (await client.job(coordinator.presetJobId)).spec
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  const fresh = () => privateKeyToAccount(generatePrivateKey())
  const ask = async (account: ReturnType<typeof fresh>, jobId: Hash, innerSteps?: number) => {
    const info = await client.info()
    return leased(await client.lease(jobId, await signLeaseRequest(account, { jobId, audience: info.coordinatorId, domain: info, innerSteps })))
  }
  const job = async (training: Partial<JobSpec['training']>, checked = false) => {
    const spec = jobVariant(preset, `unit sizing test job ${++jobCounter}`, { unitsPerRound: 8, ...training })
    const withChecks = checked ? parseJobSpec({ ...spec, verification: { ...BARELY_CHECKED, initialCheckRate: 1, floorCheckRate: 1, canaryRate: 0 } }) : spec
    return (await coordinator.jobs.createJob(withChecks, [])) as Hash
  }

  it('clamps the asked H to the job bounds and returns it in the unit; the job H is left out', async () => {
    const jobId = await job({ innerSteps: 10, maxInnerSteps: 40 })
    const alice = fresh()
    expect((await ask(alice, jobId, 25)).unit.innerSteps).toBe(25)
    const bob = fresh()
    expect((await ask(bob, jobId, 1000)).unit.innerSteps).toBe(40)
    const carol = fresh()
    const small = await ask(carol, jobId, 3)
    expect('innerSteps' in small.unit).toBe(false)
    expect('innerSteps' in (await ask(carol, jobId)).unit).toBe(false)
    // The unit record says which H a verifier must re-execute.
    expect((await client.unit(jobId, 0, 0)).unit.innerSteps).toBe(25)
    expect('innerSteps' in (await client.unit(jobId, 0, 2)).unit).toBe(false)
  })

  it('gives a job without maxInnerSteps its own H whatever is asked', async () => {
    const jobId = await job({ innerSteps: 10 })
    expect('innerSteps' in (await ask(fresh(), jobId, 25)).unit).toBe(false)
  })

  it('counts an answer as H × batch examples, and a check of the unit runs the same H', async () => {
    const jobId = await job({ innerSteps: 10, maxInnerSteps: 40 }, true)
    const shapes = decodeTensorList(await client.blob(preset.model.initialWeights)).shapes
    const alice = fresh()
    const lease = await ask(alice, jobId, 30)
    const submission = await makeSubmission({ lease, account: alice, shapes, domain: coordinator.jobs.domain })
    expect(await coordinator.jobs.submit(lease.id, submission.body)).toMatchObject({ accepted: true })
    const [attempt] = await coordinator.db.query<{ examples: number }>(`SELECT examples FROM attempts WHERE lease_id = $1`, [lease.id])
    expect(Number(attempt!.examples)).toBe(30 * preset.training.batchSize)
    // Every unit is checked: bob's lease is the check of alice's unit, at her H whatever he asks.
    const bob = fresh()
    const check = await ask(bob, jobId, 12)
    expect(check.unit).toMatchObject({ round: 0, unit: lease.unit.unit, innerSteps: 30 })
  })
})
