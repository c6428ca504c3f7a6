import { createWalletClient, http, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { anvilAccount } from '../contracts/anvil.ts'
import { jobEscrowAbi, tabTokenAbi } from '../contracts/generated/index.ts'
import { CoordinatorClient, CoordinatorRequestError } from '../src/client/coordinatorClient.ts'
import { parseJobSpec, type Hash, type JobSpec, type Lease, type SignInResult } from '../src/protocol/index.ts'
import { memoryCached } from '../src/worker/blobSource.ts'
import { nodeDeviceClass } from '../src/worker/nodeDeviceClass.ts'
import { createUnitRunner } from '../src/worker/unitRunner.ts'
import type { Settlement } from './settlement/settlement.ts'
import { BARELY_CHECKED, jobVariant, leased, makeSubmission, signedLease, testJobBase, type TestJobBase, refusal } from './testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/** Small enough that the faucet's stake covers the job's minimum (see settlement.test.ts). */
const PRICE = 2n * 10n ** 9n
/** 3 rounds of 2 units would cost 6 units; the escrow holds 10. */
const BUDGET = 10n * PRICE

/**
 * Owner actions on a real local chain, as the requester's wallet and a program see them over HTTP: only the
 * requester the spec names, signed in with Ethereum, may pause, resume, cancel or re-budget its job; a
 * paused or cancelled job leases nothing, yet work already leased is handed in and paid; a cancelled job's
 * escrow is closed once that work is charged, and the refund is exactly what was never charged.
 */
describe('owner actions', () => {
  let coordinator: TemporaryCoordinator
  let settlement: Settlement
  let client: CoordinatorClient
  let base: TestJobBase
  let spec: JobSpec
  let jobId: Hash
  let volunteerJobId: Hash
  let owner: SignInResult
  /** Alice's lease of round 1, taken just before the job is cancelled. */
  let held: Lease
  const requester = anvilAccount(5)
  const alice = privateKeyToAccount(generatePrivateKey())
  const bob = privateKeyToAccount(generatePrivateKey())

  const chain = () => coordinator.chain!
  const contracts = () => chain().chain.contracts
  const wallet = (account: PrivateKeyAccount | typeof requester) =>
    createWalletClient({ account, chain: chain().transactions.wallet.chain, transport: http(chain().chain.rpcUrl) })
  const mined = async (hash: Hex) => {
    const receipt = await chain().publicClient.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
  }
  const tokenBalance = (address: Address) =>
    chain().publicClient.readContract({ address: contracts().token, abi: tabTokenAbi, functionName: 'balanceOf', args: [address] })

  /** Mints `amount` to the requester and deposits it into the job's escrow from the requester's wallet. */
  async function deposit(amount: bigint, deadline = 0n, forJob: Hash = jobId) {
    await mined(await chain().transactions.wallet.writeContract({ address: contracts().token, abi: tabTokenAbi, functionName: 'mint', args: [requester.address, amount] }))
    const asRequester = wallet(requester)
    await mined(await asRequester.writeContract({ address: contracts().token, abi: tabTokenAbi, functionName: 'approve', args: [contracts().jobEscrow, amount] }))
    await mined(await asRequester.writeContract({ address: contracts().jobEscrow, abi: jobEscrowAbi, functionName: 'deposit', args: [forJob, amount, deadline] }))
    await settlement.escrow.sync()
  }

  async function submit(lease: Lease, account: PrivateKeyAccount, seed: number) {
    const submission = await makeSubmission({ lease, account, shapes: base.shapes, seed, domain: coordinator.jobs.domain })
    return coordinator.jobs.submit(lease.id, submission.body)
  }


  beforeAll(async () => {
    base = await testJobBase()
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'local', port: 0 } })
    settlement = coordinator.settlement!
    // The test closes epochs itself, at the moments it checks.
    await settlement.stop()
    client = new CoordinatorClient(coordinator.url)
    spec = parseJobSpec({
      ...base.spec,
      name: 'owner actions test job',
      payment: { pricePerUnit: String(PRICE), budget: String(BUDGET), requester: requester.address },
      verification: BARELY_CHECKED,
      // Long enough that a lease taken in one test is still live when a later one hands it in.
      training: { ...base.spec.training, leaseTtlSeconds: 300 },
    })
    jobId = await coordinator.jobs.createJob(spec, base.blobs)
    volunteerJobId = await coordinator.jobs.createJob(jobVariant(base.spec, 'volunteer job nobody owns'), [])
    await deposit(BUDGET, BigInt(Math.floor(Date.now() / 1000) + 86_400))
    await settlement.drip(alice.address)
    await settlement.drip(bob.address)
    owner = await client.signIn(requester)
  }, 60_000)

  afterAll(async () => {
    await coordinator?.dispose()
  })

  it('lets nobody but the signed-in requester act, and nobody at all on a job without a requester', async () => {
    const anonymous = await fetch(`${coordinator.url}/api/jobs/${jobId}/pause`, { method: 'POST' })
    expect(anonymous.status).toBe(401)
    expect(await anonymous.json()).toMatchObject({ code: 'not_signed_in' })
    expect(await refusal(client.pauseJob(jobId, 'forged.token'))).toMatchObject({ status: 401, code: 'not_signed_in' })

    // Bob signs in as himself: a good session, but not the owner's.
    const bobs = await client.signIn(bob)
    for (const action of [client.pauseJob(jobId, bobs.token), client.cancelJob(jobId, bobs.token), client.setJobBudget(jobId, String(PRICE), bobs.token)]) {
      const error = await refusal(action)
      expect(error).toMatchObject({ status: 403, code: 'not_owner' })
      expect(error.message).toContain(`only the job's requester ${requester.address} may do this; you are signed in as ${bob.address}`)
    }
    expect(await refusal(client.pauseJob(volunteerJobId, owner.token))).toMatchObject({ status: 403, code: 'no_owner' })
    expect((await client.job(jobId)).status).toBe('active')
  })

  it('pauses: no new lease, while a unit leased before is still handed in; resume brings units back', async () => {
    const before = leased(await coordinator.jobs.lease(jobId, alice.address))
    const paused = await client.pauseJob(jobId, owner.token)
    expect(paused).toMatchObject({ action: 'pause', job: { id: jobId, status: 'paused' }, inFlight: { leases: 1, checks: 0 } })
    expect(paused.job.statusChangedAt).toBeGreaterThan(0)
    expect(paused.message).toMatch(/units already leased may still be handed in .* paid/)
    expect((await client.listJobs()).find((j) => j.id === jobId)?.status).toBe('paused')
    // Pausing again changes nothing.
    expect((await client.pauseJob(jobId, owner.token)).job.status).toBe('paused')

    const refused = await refusal(signedLease(client, bob, jobId))
    expect(refused).toMatchObject({ status: 409, code: 'job_paused' })
    expect(refused.message).toContain('paused by its owner')

    expect(await submit(before, alice, 1)).toMatchObject({ accepted: true })

    expect((await client.resumeJob(jobId, owner.token)).job.status).toBe('active')
    const after = leased(await signedLease(client, bob, jobId))
    expect(await submit(after, bob, 2)).toMatchObject({ accepted: true, roundClosed: true })
  })

  it('never lets the budget go below what contributors earned, nor above the escrow before a top-up', async () => {
    // Two units earned so far.
    const low = await refusal(client.setJobBudget(jobId, String(PRICE), owner.token))
    expect(low).toMatchObject({ status: 409, code: 'budget_below_owed' })
    expect(low.message).toContain(`the lowest budget is ${2n * PRICE}`)
    const high = await refusal(client.setJobBudget(jobId, String(BUDGET + 2n * PRICE), owner.token))
    expect(high).toMatchObject({ status: 409, code: 'escrow_too_small' })
    expect(high.message).toContain(`first deposit`)
    expect(high.message).toContain(`(${2n * PRICE} base units) with JobEscrow.deposit`)

    // Capped at three units: round 1 (units 3 and 4) cannot be paid in full, so nothing is leased.
    const capped = await client.setJobBudget(jobId, String(3n * PRICE), owner.token)
    expect(capped.job.payment).toMatchObject({ budgetCap: String(3n * PRICE), spendable: String(3n * PRICE), deposited: String(BUDGET) })
    const waiting = await coordinator.jobs.lease(jobId, alice.address)
    expect(waiting).toMatchObject({ status: 'wait', reason: expect.stringContaining("the owner's budget") })

    // Topped up first, then raised above the old deposit.
    await deposit(2n * PRICE)
    const raised = await client.setJobBudget(jobId, String(BUDGET + 2n * PRICE), owner.token)
    expect(raised.job.payment).toMatchObject({ budgetCap: String(BUDGET + 2n * PRICE), spendable: String(BUDGET + 2n * PRICE), status: 'funded' })
    held = leased(await coordinator.jobs.lease(jobId, alice.address))
  })

  it('cancels: nothing new is leased, work in flight is paid, then the escrow is closed and the refund is exactly deposit − charged', async () => {
    // Alice holds round 1's first unit (leased at the end of the previous test).
    const cancelled = await client.cancelJob(jobId, owner.token)
    expect(cancelled).toMatchObject({ action: 'cancel', job: { status: 'cancelled' }, inFlight: { leases: 1 } })
    expect(cancelled.message).toContain('JobEscrow.refund')
    expect(await refusal(signedLease(client, bob, jobId))).toMatchObject({ status: 409, code: 'job_cancelled' })
    expect(await refusal(client.resumeJob(jobId, owner.token))).toMatchObject({ status: 409, code: 'job_cancelled' })
    expect(await refusal(client.setJobBudget(jobId, String(BUDGET), owner.token))).toMatchObject({ status: 409, code: 'job_cancelled' })

    // An epoch charges the two units of round 0, but the escrow stays open while alice's lease is live.
    await settlement.closeEpoch()
    expect((await client.job(jobId)).payment).toMatchObject({ status: 'funded', charged: String(2n * PRICE), closeTxHash: null, refundable: '0' })

    // Alice hands her unit in after the cancel: it is paid, and only then is the escrow closed.
    expect(await submit(held, alice, 3)).toMatchObject({ accepted: true })
    await settlement.closeEpoch()
    const deposited = BUDGET + 2n * PRICE
    const payment = (await client.job(jobId)).payment!
    expect(payment).toMatchObject({
      status: 'closed',
      deposited: String(deposited),
      earned: String(3n * PRICE),
      charged: String(3n * PRICE),
      refundable: String(deposited - 3n * PRICE),
      refunded: false,
    })
    expect(payment.closeTxHash).toMatch(/^0x[0-9a-f]{64}$/)

    const before = await tokenBalance(requester.address)
    await mined(await wallet(requester).writeContract({ address: contracts().jobEscrow, abi: jobEscrowAbi, functionName: 'refund', args: [jobId] }))
    expect((await tokenBalance(requester.address)) - before).toBe(deposited - 3n * PRICE)
    await settlement.escrow.sync()
    expect((await client.job(jobId)).payment).toMatchObject({ status: 'closed', refunded: true, refundable: '0' })
    // Alice's pay is in the distributor: her leaf covers both her units.
    expect((await settlement.rewards(alice.address)).latest).toMatchObject({ cumulativeAmount: String(2n * PRICE) })
  })

  it("settles a cancelled job's answer still under check (the referee takes it), pays it, then closes the escrow", { timeout: 120_000 }, async () => {
    // A second job of the same requester whose every unit is re-executed by a peer.
    const checkedSpec = parseJobSpec({
      ...spec,
      name: 'owner actions test job, every unit checked',
      verification: { ...BARELY_CHECKED, initialCheckRate: 1, floorCheckRate: 1, canaryRate: 0 },
    })
    const checkedJob = await coordinator.jobs.createJob(checkedSpec, [])
    await deposit(BUDGET, BigInt(Math.floor(Date.now() / 1000) + 86_400), checkedJob)
    const carol = privateKeyToAccount(generatePrivateKey())
    await settlement.drip(carol.address)
    const lease = leased(await coordinator.jobs.lease(checkedJob, carol.address))
    // An honest answer, computed as a Node contributor computes it, so the referee agrees with it.
    const runner = createUnitRunner(memoryCached({ get: (hash) => client.blob(hash) }))
    const output = await runner.run(checkedSpec, lease.unit)
    const submission = await makeSubmission({
      lease,
      account: carol,
      updateBytes: output.updateBytes,
      domain: coordinator.jobs.domain,
      claim: { deviceClass: nodeDeviceClass(checkedSpec.kernelBundle) },
    })
    expect(await coordinator.jobs.submit(lease.id, submission.body)).toMatchObject({ accepted: true })

    const cancelled = await client.cancelJob(checkedJob, owner.token)
    expect(cancelled.inFlight).toEqual({ leases: 0, checks: 1 })
    // Nobody will lease the check of a cancelled job: the escrow stays open while it is pending.
    await settlement.closeEpoch()
    expect((await client.job(checkedJob)).payment).toMatchObject({ status: 'funded', closeTxHash: null })

    // The peer check waited its time (moved back rather than slept): the verification tick hands it to the referee.
    await coordinator.db.query(`UPDATE units SET check_wanted_at = 0 WHERE job_id = $1 AND check_status = 'wanted'`, [checkedJob])
    const deadline = Date.now() + 90_000
    let pending = 1
    while (pending > 0 && Date.now() < deadline) {
      await coordinator.jobs.tick()
      const [row] = await coordinator.db.query<{ n: string }>(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND verdict = 'pending'`, [checkedJob])
      pending = Number(row!.n)
      if (pending > 0) await new Promise((r) => setTimeout(r, 250))
    }
    const [verdict] = await coordinator.db.query<{ verdict: string }>(`SELECT verdict FROM attempts WHERE lease_id = $1`, [lease.id])
    expect(verdict!.verdict).toBe('passed')

    await settlement.closeEpoch()
    const payment = (await client.job(checkedJob)).payment!
    expect(payment).toMatchObject({ status: 'closed', earned: String(PRICE), charged: String(PRICE), refundable: String(BUDGET - PRICE) })
  })
})
