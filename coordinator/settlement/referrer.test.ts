import { createWalletClient, http } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { anvilAccount } from '../../contracts/anvil.ts'
import { jobEscrowAbi, rewardDistributorAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import { parseJobSpec, signLeaseRequest, splitReferredPrice, verifyRewardProof, type Hash } from '../../src/protocol/index.ts'
import { BARELY_CHECKED, leased, makeSubmission, testJobBase } from '../testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'

/** Small enough that the faucet's minimum stake covers it (see settlement.test.ts); divisible by 10. */
const PRICE = 2n * 10n ** 9n
const BUDGET = 10n * PRICE

/**
 * A widget's host site named as referrer in the contributor's signed lease request is recorded with the
 * unit and paid its share through the same reward tree, out of the contributor's pay: the escrow is
 * charged the unit price once.
 */
describe('referrer share', () => {
  let coordinator: TemporaryCoordinator
  let jobId: Hash
  let shapes: Awaited<ReturnType<typeof testJobBase>>['shapes']
  const requester = anvilAccount(6)
  const contributor = privateKeyToAccount(generatePrivateKey())
  const site = privateKeyToAccount(generatePrivateKey()).address

  beforeAll(async () => {
    const base = await testJobBase()
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'local', port: 0 } })
    await coordinator.settlement!.stop()
    const spec = parseJobSpec({
      ...base.spec,
      name: 'referred job',
      payment: { pricePerUnit: String(PRICE), budget: String(BUDGET), requester: requester.address },
      verification: BARELY_CHECKED,
    })
    jobId = await coordinator.jobs.createJob(spec, base.blobs)
    const chain = coordinator.chain!
    const { token, jobEscrow } = chain.chain.contracts
    const mined = async (hash: `0x${string}`) => expect((await chain.publicClient.waitForTransactionReceipt({ hash })).status).toBe('success')
    await mined(await chain.transactions.wallet.writeContract({ address: token, abi: tabTokenAbi, functionName: 'mint', args: [requester.address, BUDGET] }))
    const asRequester = createWalletClient({ account: requester, chain: chain.transactions.wallet.chain, transport: http(chain.chain.rpcUrl) })
    await mined(await asRequester.writeContract({ address: token, abi: tabTokenAbi, functionName: 'approve', args: [jobEscrow, BUDGET] }))
    const deadline = BigInt(Math.floor(Date.now() / 1000) + 86_400)
    await mined(await asRequester.writeContract({ address: jobEscrow, abi: jobEscrowAbi, functionName: 'deposit', args: [jobId, BUDGET, deadline] }))
    await coordinator.settlement!.escrow.sync()
    await coordinator.settlement!.drip(contributor.address)
    shapes = base.shapes
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  it('records the signed referrer with the unit, and an epoch pays contributor and referrer their shares of one unit price', async () => {
    const client = new CoordinatorClient(coordinator.url)
    const info = await client.info()
    const lease = leased(await client.lease(jobId, await signLeaseRequest(contributor, { jobId, audience: info.coordinatorId, domain: info, referrer: site })))
    const [attempt] = await coordinator.db.query<{ referrer: string | null }>(`SELECT referrer FROM attempts WHERE lease_id = $1`, [lease.id])
    expect(attempt!.referrer).toBe(site)

    const submission = await makeSubmission({ lease, account: contributor, shapes, seed: 1, domain: coordinator.jobs.domain })
    await coordinator.jobs.submit(lease.id, submission.body)
    const epoch = await coordinator.settlement!.closeEpoch()
    // The escrow is charged the unit price once: the epoch's total is one price, split between two leaves.
    expect(epoch).toMatchObject({ epoch: 1, status: 'posted', accounts: 2, totalCumulative: String(PRICE) })
    const chain = coordinator.chain!
    const [, total] = await chain.publicClient.readContract({
      address: chain.chain.contracts.rewardDistributor,
      abi: rewardDistributorAbi,
      functionName: 'epochs',
      args: [1n],
    })
    expect(total).toBe(PRICE)
    expect((await coordinator.jobs.getJob(jobId)).payment).toMatchObject({ charged: String(PRICE), earned: String(PRICE) })

    const share = splitReferredPrice(PRICE)
    expect(share).toEqual({ contributor: (PRICE * 9n) / 10n, referrer: PRICE / 10n })
    const mine = await coordinator.settlement!.rewards(contributor.address)
    const theirs = await coordinator.settlement!.rewards(site)
    expect(mine).toMatchObject({ earned: String(share.contributor), latest: { epoch: 1, cumulativeAmount: String(share.contributor) } })
    expect(theirs).toMatchObject({ earned: String(share.referrer), latest: { epoch: 1, cumulativeAmount: String(share.referrer) } })
    expect(verifyRewardProof(theirs.latest!.root, site, share.referrer, theirs.latest!.proof)).toBe(true)
  })

  it('records no referrer when the request names none', async () => {
    const client = new CoordinatorClient(coordinator.url)
    const info = await client.info()
    const lease = leased(await client.lease(jobId, await signLeaseRequest(contributor, { jobId, audience: info.coordinatorId, domain: info })))
    const [attempt] = await coordinator.db.query<{ referrer: string | null }>(`SELECT referrer FROM attempts WHERE lease_id = $1`, [lease.id])
    expect(attempt!.referrer).toBeNull()
  })
})
