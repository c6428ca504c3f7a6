import { createTestClient, createWalletClient, http, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { anvilAccount } from '../../contracts/anvil.ts'
import { jobEscrowAbi, rewardDistributorAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import { DEFAULT_VERIFICATION, parseJobSpec, verifyRewardProof, type Hash, type JobSpec, type Lease } from '../../src/protocol/index.ts'
import { BARELY_CHECKED, leased, makeSubmission, testJobBase, type TestJobBase } from '../testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'
import { Settlement } from './settlement.ts'

/**
 * A small price: the job is checked at the lowest rate a spec allows (its updates are made up), and the
 * stake a paid job needs grows with price ÷ check rate (stakeNeeded); at this price it is the policy's
 * minimum, which the faucet stakes.
 */
const PRICE = 2n * 10n ** 9n
/** The job costs 3 rounds × 2 units = 6 units; the budget pays for 10, so 4 units' worth goes back. */
const BUDGET = 10n * PRICE
const CHALLENGE_WINDOW = 60

/**
 * Settlement against a real anvil: escrow gates the units, epochs post cumulative roots exactly once
 * across retries, restarts and a chain that lost blocks, contributors claim exactly what they earned, and
 * a finished job's escrow is closed so the requester gets the rest back.
 */
describe('settlement on the local chain', () => {
  let coordinator: TemporaryCoordinator
  let base: TestJobBase
  let spec: JobSpec
  let jobId: Hash
  let settlement: Settlement
  const requester = anvilAccount(5)
  const alice = privateKeyToAccount(generatePrivateKey())
  const bob = privateKeyToAccount(generatePrivateKey())
  let firstLease: Lease

  const chain = () => coordinator.chain!
  const contracts = () => chain().chain.contracts
  const testClient = () => createTestClient({ mode: 'anvil', transport: http(chain().chain.rpcUrl) })
  const wallet = (account: PrivateKeyAccount | typeof requester) =>
    createWalletClient({ account, chain: chain().transactions.wallet.chain, transport: http(chain().chain.rpcUrl) })
  const mined = async (hash: Hex) => {
    const receipt = await chain().publicClient.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
    return receipt
  }
  const tokenBalance = (address: Address) =>
    chain().publicClient.readContract({ address: contracts().token, abi: tabTokenAbi, functionName: 'balanceOf', args: [address] })
  const epochCount = () => chain().publicClient.readContract({ address: contracts().rewardDistributor, abi: rewardDistributorAbi, functionName: 'epochCount' })

  /** Leases the next unit for `account` and submits a valid signed update for it. */
  async function contribute(account: PrivateKeyAccount, seed: number) {
    const lease = leased(await coordinator.jobs.lease(jobId, account.address))
    const submission = await makeSubmission({ lease, account, shapes: base.shapes, seed, domain: coordinator.jobs.domain })
    return coordinator.jobs.submit(lease.id, submission.body)
  }

  beforeAll(async () => {
    base = await testJobBase()
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'local', port: 0, challengeWindowSeconds: CHALLENGE_WINDOW } })
    settlement = coordinator.settlement!
    // Timers would race the test's explicit epochs; the test drives settlement by hand.
    await settlement.stop()
    // Made-up updates: checked at the lowest rate a job can ask for, so no re-execution rejects them.
    spec = parseJobSpec({
      ...base.spec,
      name: 'paid settlement test job',
      payment: { pricePerUnit: String(PRICE), budget: String(BUDGET), requester: requester.address },
      verification: BARELY_CHECKED,
    })
    jobId = await coordinator.jobs.createJob(spec, base.blobs)
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  it('gives new wallets gas, test tokens and the minimum stake once, topping up rather than adding', async () => {
    const first = await settlement.drip(alice.address)
    // Gas, tokens, then the stake: tokens minted to the faucet, its allowance (once), stakeFor.
    expect(first.txHashes).toHaveLength(5)
    expect(await tokenBalance(alice.address)).toBe(BigInt(first.tokens))
    expect(first.staked).toBe(DEFAULT_VERIFICATION.minStake)
    expect(await settlement.stakeOf(alice.address)).toBe(BigInt(DEFAULT_VERIFICATION.minStake))
    const again = await settlement.drip(alice.address)
    expect(again).toMatchObject({ txHashes: [], staked: '0' })
    expect((await settlement.drip(bob.address)).txHashes).toHaveLength(4)
  })

  it('issues no unit of a paid job until its escrow deposit is seen on-chain, then shows the deposit', async () => {
    const waiting = await coordinator.jobs.lease(jobId, alice.address)
    expect(waiting.status).toBe('wait')
    expect(waiting.status === 'wait' && waiting.reason).toMatch(/escrow deposit \(0 TTT of 0\.00000002 TTT deposited\)/)
    expect((await coordinator.jobs.getJob(jobId)).payment).toMatchObject({ status: 'awaiting_deposit', deposited: '0' })

    const owner = chain().transactions.wallet
    await mined(await owner.writeContract({ address: contracts().token, abi: tabTokenAbi, functionName: 'mint', args: [requester.address, BUDGET] }))
    const asRequester = wallet(requester)
    await mined(await asRequester.writeContract({ address: contracts().token, abi: tabTokenAbi, functionName: 'approve', args: [contracts().jobEscrow, BUDGET] }))
    const deadline = BigInt(Math.floor(Date.now() / 1000) + 86_400)
    const deposit = await asRequester.writeContract({ address: contracts().jobEscrow, abi: jobEscrowAbi, functionName: 'deposit', args: [jobId, BUDGET, deadline] })
    await mined(deposit)
    await settlement.escrow.sync()

    firstLease = leased(await coordinator.jobs.lease(jobId, alice.address))
    const payment = (await coordinator.jobs.getJob(jobId)).payment!
    expect(payment).toMatchObject({ status: 'funded', deposited: String(BUDGET), earned: '0', requester: requester.address })
    expect(payment.deposits).toEqual([expect.objectContaining({ txHash: deposit, amount: String(BUDGET) })])
  })

  it('leases a paid job only to an address with the minimum stake, and says how much is missing', async () => {
    const stranger = privateKeyToAccount(generatePrivateKey())
    await expect(coordinator.jobs.lease(jobId, stranger.address)).rejects.toMatchObject({
      code: 'stake_required',
      status: 403,
      message: expect.stringMatching(/at least 40 TTT in StakeManager .* has 0 TTT/),
    })
    await settlement.drip(stranger.address)
    const lease = leased(await coordinator.jobs.lease(jobId, stranger.address))
    // Handed back by expiry: the test's later rounds need the unit for alice and bob.
    await coordinator.db.query(`UPDATE attempts SET expires_at = 0 WHERE lease_id = $1`, [lease.id])
    await coordinator.db.query(`UPDATE units SET lease_expires_at = 0 WHERE lease_id = $1`, [lease.id])
  })

  it('builds an epoch once and posts it once, even when the coordinator restarts between the two', async () => {
    // Alice's lease from the first test is round 0 unit 0; bob takes unit 1; alice does round 1.
    const submission = await makeSubmission({ lease: firstLease, account: alice, shapes: base.shapes, seed: 1, domain: coordinator.jobs.domain })
    await coordinator.jobs.submit(firstLease.id, submission.body)
    await contribute(bob, 2)
    await contribute(alice, 3)
    expect((await contribute(alice, 4)).roundClosed).toBe(true)

    const built = await settlement.epochs.prepare()
    expect(built).toMatchObject({ epoch: 1, status: 'built', accounts: 2, totalCumulative: String(4n * PRICE) })
    expect(await epochCount()).toBe(0n)

    // A new process on the same store and chain: it posts the stored root rather than building another.
    const restarted = new Settlement({ ...settlement.options })
    const posted = await restarted.closeEpoch()
    expect(posted).toMatchObject({ epoch: 1, status: 'posted', root: built!.root })
    expect(posted!.txHash).toMatch(/^0x[0-9a-f]{64}$/)
    expect(await epochCount()).toBe(1n)
    const [root, total] = await chain().publicClient.readContract({ address: contracts().rewardDistributor, abi: rewardDistributorAbi, functionName: 'epochs', args: [1n] })
    expect(root).toBe(built!.root)
    expect(total).toBe(4n * PRICE)

    // Nothing new earned: no new epoch, no transaction.
    expect(await restarted.closeEpoch()).toMatchObject({ epoch: 1 })
    expect(await epochCount()).toBe(1n)
    expect((await coordinator.jobs.getJob(jobId)).payment).toMatchObject({ earned: String(4n * PRICE), charged: String(4n * PRICE), remaining: String(6n * PRICE) })
  })

  it('serves proofs that hold against the posted root, claimable only after the challenge window', async () => {
    const view = await settlement.rewards(alice.address)
    expect(view.earned).toBe(String(3n * PRICE))
    expect(view.latest).toMatchObject({ epoch: 1, cumulativeAmount: String(3n * PRICE) })
    expect(view.claimable).toBeNull()
    expect(verifyRewardProof(view.latest!.root, alice.address, 3n * PRICE, view.latest!.proof)).toBe(true)
    expect(view.latest!.claimableAt - view.chainTime).toBeGreaterThan(CHALLENGE_WINDOW - 10)

    await testClient().increaseTime({ seconds: CHALLENGE_WINDOW + 1 })
    await testClient().mine({ blocks: 1 })
    const later = await settlement.rewards(alice.address)
    expect(later.claimable).toMatchObject({ epoch: 1, cumulativeAmount: String(3n * PRICE) })

    const before = await tokenBalance(alice.address)
    const { epoch, cumulativeAmount, proof } = later.claimable!
    await mined(
      await wallet(alice).writeContract({
        address: contracts().rewardDistributor,
        abi: rewardDistributorAbi,
        functionName: 'claim',
        args: [BigInt(epoch), alice.address, BigInt(cumulativeAmount), proof],
      }),
    )
    expect((await tokenBalance(alice.address)) - before).toBe(3n * PRICE)
  })

  it('posts again, with the same root, an epoch the chain lost; and never twice an epoch it has', async () => {
    const snapshot = await testClient().snapshot()
    await contribute(bob, 5)
    const second = await settlement.closeEpoch()
    expect(second).toMatchObject({ epoch: 2, status: 'posted', totalCumulative: String(5n * PRICE) })

    // The local chain restored from an older state: epoch 2 is gone from it, not from the store.
    await testClient().revert({ id: snapshot })
    expect(await epochCount()).toBe(1n)
    const reposted = await settlement.closeEpoch()
    expect(reposted).toMatchObject({ epoch: 2, status: 'posted', root: second!.root })
    expect(await epochCount()).toBe(2n)

    // Died after sending, before recording the receipt: the chain already has it, so nothing is sent.
    await coordinator.db.query(`UPDATE epochs SET status = 'sent', posted_at = NULL WHERE epoch = 2`)
    const blockBefore = await chain().publicClient.getBlockNumber()
    expect(await settlement.closeEpoch()).toMatchObject({ epoch: 2, status: 'posted' })
    expect(await chain().publicClient.getBlockNumber()).toBe(blockBefore)
  })

  it('closes a finished job escrow once fully charged, and the requester gets exactly the unspent rest', async () => {
    expect((await contribute(bob, 6)).roundClosed).toBe(true)
    expect((await coordinator.jobs.getJob(jobId)).status).toBe('finished')
    const third = await settlement.closeEpoch()
    expect(third).toMatchObject({ epoch: 3, totalCumulative: String(6n * PRICE) })
    const payment = (await coordinator.jobs.getJob(jobId)).payment!
    expect(payment).toMatchObject({ status: 'closed', earned: String(6n * PRICE), charged: String(6n * PRICE), remaining: String(4n * PRICE) })
    expect(payment.closeTxHash).toMatch(/^0x[0-9a-f]{64}$/)

    const before = await tokenBalance(requester.address)
    await mined(await wallet(requester).writeContract({ address: contracts().jobEscrow, abi: jobEscrowAbi, functionName: 'refund', args: [jobId] }))
    expect((await tokenBalance(requester.address)) - before).toBe(4n * PRICE)

    // Bob never claimed: his cumulative leaf now covers all three of his units.
    const view = await settlement.rewards(bob.address)
    expect(view.latest).toMatchObject({ epoch: 3, cumulativeAmount: String(3n * PRICE) })
  })
})
