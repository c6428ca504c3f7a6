import { getAddress, keccak256, parseEventLogs, toHex, zeroHash, type Address, type Hash, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { disputeResolverAbi } from '../../contracts/generated/index.ts'
import { startTestChain, type AccountName, type TestChain } from '../../contracts/testing.ts'
import { signWorkClaim, verifyRewardProof, workClaimDigest, type ClaimDomainParams, type WorkClaim } from '../../src/protocol/index.ts'
import { migrate, openPglite, type Database } from '../db.ts'
import { readChainInfo } from './chainInfo.ts'
import { buildClaimsTree } from './claimsTree.ts'
import { Settlement } from './settlement.ts'
import { TransactionQueue } from './transactions.ts'

const PRICE = 10n ** 18n
const STAKE = 10n * PRICE
const DEVICE = 'webgpu|google/swiftshader|chrome-130|bundle'
const h = (label: string) => keccak256(toHex(label)) as Hash

/**
 * Settlement under the attacks an audit found, against a real anvil and store: a refunded escrow must not
 * block other jobs' epochs, every settled claim is committed in the epoch whose window its verdict gets,
 * one fault is slashed once, banned addresses leave later trees without shrinking charged totals, their
 * frozen rewards go to the treasury, and nobody else's deposit funds or blocks a job.
 *
 * Attempts are written straight into the store (as the verification code would), so these tests depend
 * only on settlement.
 */
describe('settlement under attack', () => {
  let t: TestChain
  let db: Database
  let settlement: Settlement
  let domain: ClaimDomainParams
  let requester: Address
  let jobs = 0
  let leases = 0
  const logs: string[] = []

  const fresh = () => privateKeyToAccount(generatePrivateKey())

  async function createJob(budget: bigint, named: Address = requester): Promise<Hash> {
    const spec = { name: `attack job ${++jobs}`, training: { unitsPerRound: 2, innerSteps: 10, batchSize: 32 }, payment: { pricePerUnit: String(PRICE), budget: String(budget), requester: named } }
    const id = h(JSON.stringify(spec))
    await db.query(`INSERT INTO jobs (id, spec, checkpoint, created_at) VALUES ($1, $2, $3, $4)`, [id, JSON.stringify(spec), zeroHash, Date.now()])
    return id
  }

  async function deposit(jobId: Hash, amount: bigint, who: AccountName = 'requester', deadline?: bigint) {
    await t.mined(t.as('deployer').token.write.mint([t.accounts[who].address, amount]))
    await t.mined(t.as(who).token.write.approve([t.contracts.jobEscrow, amount]))
    await t.mined(t.as(who).jobEscrow.write.deposit([jobId, amount, deadline ?? (await t.now()) + 30n * 86_400n]))
  }

  /** A signed answer for one unit, as the verification code stores it. */
  async function attempt(
    jobId: Hash,
    signer: PrivateKeyAccount,
    unit: number,
    options: { output?: string; verdict?: 'unchecked' | 'passed' | 'rejected' | 'pending'; deviceClass?: string; round?: number } = {},
  ) {
    const claim: WorkClaim = {
      jobId,
      round: options.round ?? 0,
      unit,
      inputHash: h(`input ${jobId} ${options.round ?? 0}`),
      outputHash: h(options.output ?? `output ${unit}`),
      contributor: signer.address,
      deviceClass: options.deviceClass ?? DEVICE,
    }
    const { signature } = await signWorkClaim(signer, claim, domain)
    const leaseId = `lease-${++leases}`
    const digest = workClaimDigest(claim, domain)
    await db.query(
      `INSERT INTO attempts (lease_id, job_id, round, unit, contributor, kind, status, issued_at, expires_at, input_hash, output_hash,
                             device_class, claim, signature, claim_digest, submitted_at, verdict)
       VALUES ($1, $2, $3, $4, $5, 'primary', 'submitted', $6, $6, $7, $8, $9, $10, $11, $12, $6, $13)`,
      [leaseId, jobId, claim.round, unit, signer.address, 1_000 + leases, claim.inputHash, claim.outputHash, claim.deviceClass, JSON.stringify(claim), signature, digest, options.verdict ?? 'unchecked'],
    )
    return { leaseId, claim, digest }
  }

  async function stakeFor(account: Address, amount = STAKE) {
    await t.mined(t.as('deployer').token.write.mint([t.accounts.deployer.address, amount]))
    await t.mined(t.as('deployer').token.write.approve([t.contracts.stakeManager, amount]))
    await t.mined(t.as('deployer').stakeManager.write.stakeFor([account, amount]))
  }

  async function dispute(kind: 'verdict' | 'double_sign', leaseId: string, contributor: Address, other?: string) {
    const id = `${kind}:${leaseId}`
    await db.query(
      `INSERT INTO disputes (id, kind, job_id, round, unit, contributor, lease_id, other_lease_id, referee_hash, created_at)
       SELECT $1, $2, job_id, round, unit, $3, lease_id, $4, $5, $6 FROM attempts WHERE lease_id = $7`,
      [id, kind, contributor, other ?? null, kind === 'verdict' ? h('referee output') : null, Date.now(), leaseId],
    )
    return id
  }

  const disputeRow = async (id: string) =>
    (await db.query<{ status: string; slashed: string | null; tx_hash: Hex | null; error: string | null }>(`SELECT status, slashed, tx_hash, error FROM disputes WHERE id = $1`, [id]))[0]!
  const epochOf = async (leaseId: string) => (await db.query<{ epoch: number | null }>(`SELECT epoch FROM attempts WHERE lease_id = $1`, [leaseId]))[0]!.epoch
  const onChainEpoch = (epoch: number | bigint) => t.read.rewardDistributor.read.epochs([BigInt(epoch)])
  const escrowOf = (jobId: Hash) => t.read.jobEscrow.read.jobs([jobId, requester])
  const window = async () => t.increaseTime(await t.read.rewardDistributor.read.challengeWindow())

  beforeAll(async () => {
    t = await startTestChain()
    requester = t.accounts.requester.address
    domain = { chainId: t.anvil.chainId, verifyingContract: t.contracts.disputeResolver }
    db = await openPglite()
    await migrate(db)
    const chain = await readChainInfo(t.publicClient, { chainId: t.anvil.chainId, rpcUrl: t.anvil.rpcUrl, contracts: t.contracts, faucet: false })
    settlement = new Settlement({
      db,
      chain,
      publicClient: t.publicClient,
      transactions: new TransactionQueue(t.publicClient, t.wallets.coordinator),
      deployment: 'attacks',
      fromBlock: t.deployment.blockNumber,
      epochSeconds: 3600,
      log: (message) => logs.push(message),
    })
  })

  afterAll(async () => {
    await db?.close()
    await t?.stop()
  })

  it('funds a job only from the requester its spec names: an earlier deposit by someone else neither funds nor blocks it', async () => {
    const jobId = await createJob(4n * PRICE)
    // A squatter deposits first under the same spec hash, with a short deadline.
    await deposit(jobId, 1n, 'outsider', (await t.now()) + 60n)
    await settlement.escrow.sync()
    expect(await settlement.escrow.state(jobId)).toMatchObject({ requester, deposited: 0n })
    const job = { id: jobId, spec: (await db.query<{ spec: never }>(`SELECT spec FROM jobs WHERE id = $1`, [jobId]))[0]!.spec, round: 0 }
    expect(await settlement.escrow.leaseBlocker(job)).toMatch(/waiting for the requester's escrow deposit/)
    await deposit(jobId, 4n * PRICE)
    await settlement.escrow.sync()
    expect(await settlement.escrow.state(jobId)).toMatchObject({ requester, deposited: 4n * PRICE, refunded: false })
    expect(await settlement.escrow.leaseBlocker(job)).toBeNull()
    // The squatter's refund changes nothing for the job.
    await t.increaseTime(61n + (await t.read.jobEscrow.read.settlementPeriod()))
    await t.mined(t.as('outsider').jobEscrow.write.refund([jobId]))
    await settlement.escrow.sync()
    expect(await settlement.escrow.state(jobId)).toMatchObject({ deposited: 4n * PRICE, refunded: false })
    expect((await settlement.escrow.fundedJobs()).find((j) => j.id === jobId)).toMatchObject({ deposited: 4n * PRICE, refunded: false })
  })

  it('commits every settled claim in the epoch that pays it, and posts an epoch for a refused claim alone', async () => {
    const jobId = await createJob(10n * PRICE)
    await deposit(jobId, 10n * PRICE)
    const alice = fresh()
    const a = await attempt(jobId, alice, 0)
    const b = await attempt(jobId, alice, 1)
    // Waiting for its check: neither paid nor committed yet.
    const waiting = await attempt(jobId, alice, 2, { verdict: 'pending' })
    const first = (await settlement.closeEpoch())!
    expect(first.status).toBe('posted')
    expect(await epochOf(a.leaseId)).toBe(first.epoch)
    expect(await epochOf(b.leaseId)).toBe(first.epoch)
    expect(await epochOf(waiting.leaseId)).toBeNull()
    const [root, , , , claimsRoot] = await onChainEpoch(first.epoch)
    expect(claimsRoot).toBe(buildClaimsTree([a.digest, b.digest])!.root)
    expect((await escrowOf(jobId))[4]).toBe(2n * PRICE)

    // A refused claim awaiting a verdict: an epoch with nothing to charge, the same reward root, its claim committed.
    const refused = await attempt(jobId, alice, 3, { verdict: 'rejected', output: 'wrong' })
    const second = (await settlement.closeEpoch())!
    expect(second.epoch).toBe(first.epoch + 1)
    const [root2, total2, , , claimsRoot2] = await onChainEpoch(second.epoch)
    expect(root2).toBe(root)
    expect(total2).toBe(BigInt(first.totalCumulative))
    expect(claimsRoot2).toBe(buildClaimsTree([refused.digest])!.root)
    expect(await epochOf(refused.leaseId)).toBe(second.epoch)
    // Nothing new: no epoch.
    expect((await settlement.closeEpoch())!.epoch).toBe(second.epoch)
  })

  it('posts a verdict with the proof of the epoch that committed the claim, once that epoch is posted; the same fault is slashed once', async () => {
    const jobId = await createJob(10n * PRICE)
    await deposit(jobId, 10n * PRICE)
    const carol = fresh()
    await stakeFor(carol.address)
    const wrong = await attempt(jobId, carol, 0, { verdict: 'rejected', output: 'wrong' })
    const verdict = await dispute('verdict', wrong.leaseId, carol.address)
    // Not committed yet: the verdict waits, it is not sent against some other epoch.
    expect(await settlement.disputes.tick()).toEqual([])
    expect((await disputeRow(verdict)).status).toBe('pending')

    const epoch = (await settlement.closeEpoch())!.epoch
    expect(await epochOf(wrong.leaseId)).toBe(epoch)
    const done = await disputeRow(verdict)
    expect(done).toMatchObject({ status: 'done', slashed: String(STAKE / 2n), error: null })
    expect(await t.read.stakeManager.read.slashableOf([carol.address])).toBe(STAKE / 2n)
    const receipt = await t.publicClient.getTransactionReceipt({ hash: done.tx_hash! })
    const [slashed] = parseEventLogs({ abi: disputeResolverAbi, eventName: 'VerdictSlashed', logs: receipt.logs })
    expect(slashed?.args).toMatchObject({ contributor: carol.address, epoch: BigInt(epoch), claimDigest: wrong.digest, reporter: '0x0000000000000000000000000000000000000000' })
    const [reputation] = await db.query<{ slashes: number; banned_at: string | null }>(`SELECT slashes, banned_at FROM reputation WHERE address = $1`, [carol.address])
    expect(reputation).toMatchObject({ slashes: 1 })
    expect(reputation!.banned_at).not.toBeNull()

    // Double-sign evidence for the same unit and input afterwards: already slashed, counted as done, no second slash.
    const other = await attempt(jobId, carol, 0, { output: 'another wrong' })
    const doubleSign = await dispute('double_sign', other.leaseId, carol.address, wrong.leaseId)
    await settlement.disputes.tick()
    expect(await disputeRow(doubleSign)).toMatchObject({ status: 'done', slashed: '0', error: expect.stringMatching(/EvidenceAlreadyUsed/) })
    expect(await t.read.stakeManager.read.slashableOf([carol.address])).toBe(STAKE / 2n)
    expect((await db.query<{ slashes: number }>(`SELECT slashes FROM reputation WHERE address = $1`, [carol.address]))[0]!.slashes).toBe(1)
  })

  it('slashes double signing at once, and records the chain’s refusal of claims from different device classes', async () => {
    const jobId = await createJob(10n * PRICE)
    const dave = fresh()
    await stakeFor(dave.address)
    const a = await attempt(jobId, dave, 5, { output: 'A', verdict: 'rejected' })
    const b = await attempt(jobId, dave, 5, { output: 'B', verdict: 'rejected', deviceClass: 'wasm|cpu|node-20|bundle' })
    const c = await attempt(jobId, dave, 5, { output: 'C', verdict: 'rejected' })
    const refused = await dispute('double_sign', b.leaseId, dave.address, a.leaseId)
    const slash = await dispute('double_sign', c.leaseId, dave.address, a.leaseId)
    const outcomes = await settlement.disputes.tick()
    expect(Object.fromEntries(outcomes.map((o) => [o.id, o.status]))).toEqual({ [refused]: 'failed', [slash]: 'done' })
    expect(await disputeRow(refused)).toMatchObject({ status: 'failed', error: 'NotConflicting()' })
    expect(await disputeRow(slash)).toMatchObject({ status: 'done', slashed: String(STAKE / 2n) })
  })

  it('discards a built epoch that charges an escrow refunded before it was posted, and settles the other jobs', async () => {
    const kept = await createJob(10n * PRICE)
    const refunded = await createJob(10n * PRICE)
    await deposit(kept, 10n * PRICE)
    await deposit(refunded, 10n * PRICE)
    const erin = fresh()
    await attempt(kept, erin, 0)
    await attempt(refunded, erin, 0)
    const first = (await settlement.closeEpoch())!
    expect((await escrowOf(refunded))[4]).toBe(PRICE)

    // More work on both; the coordinator builds the next epoch, then the requester takes its escrow back.
    const keptUnit = await attempt(kept, erin, 1)
    const lostUnit = await attempt(refunded, erin, 1)
    const built = (await settlement.epochs.prepare())!
    expect(built).toMatchObject({ epoch: first.epoch + 1, status: 'built', totalCumulative: String(BigInt(first.totalCumulative) + 2n * PRICE) })
    await t.mined(t.as('coordinator').jobEscrow.write.close([refunded, requester]))
    await t.mined(t.as('requester').jobEscrow.write.refund([refunded]))

    // The stored epoch would revert with AlreadyRefunded; it is rebuilt without the refunded job's new unit.
    const posted = (await settlement.closeEpoch())!
    expect(logs).toContainEqual(expect.stringMatching(new RegExp(`epoch ${built.epoch} charged refunded escrow\\(s\\) ${refunded.slice(0, 10)}; discarded it`)))
    expect(posted).toMatchObject({ epoch: first.epoch + 1, status: 'posted', totalCumulative: String(BigInt(first.totalCumulative) + PRICE) })
    expect(await t.read.rewardDistributor.read.epochCount()).toBe(BigInt(first.epoch + 1))
    expect((await escrowOf(kept))[4]).toBe(2n * PRICE)
    expect((await escrowOf(refunded))[4]).toBe(PRICE)
    expect(await epochOf(keptUnit.leaseId)).toBe(posted.epoch)
    expect(await epochOf(lostUnit.leaseId)).toBe(posted.epoch)
    const leaf = await settlement.epochs.leaf(posted.epoch, erin.address)
    expect(leaf?.cumulativeAmount).toBe(3n * PRICE)

    // Later work on the refunded job is never charged: its cap is what was charged before the refund.
    await attempt(refunded, erin, 2)
    expect((await settlement.closeEpoch())!.epoch).toBe(posted.epoch)
  })

  it('leaves a slashed address out of later trees, keeps what was charged for it, claims its unfrozen leaf for it and sweeps the rest to the treasury', async () => {
    const jobId = await createJob(20n * PRICE)
    await deposit(jobId, 20n * PRICE)
    const frank = fresh()
    const grace = fresh()
    await stakeFor(grace.address)
    await attempt(jobId, frank, 0)
    await attempt(jobId, grace, 1)
    const first = (await settlement.closeEpoch())!
    await window()

    // Grace: one more paid unit, then one proven wrong; the verdict lands inside the epoch that commits both.
    const paid = await attempt(jobId, grace, 2)
    const wrong = await attempt(jobId, grace, 3, { verdict: 'rejected', output: 'wrong' })
    await dispute('verdict', wrong.leaseId, grace.address)
    const second = (await settlement.closeEpoch())!
    expect(await epochOf(paid.leaseId)).toBe(second.epoch)
    expect((await settlement.epochs.leaf(second.epoch, grace.address))?.cumulativeAmount).toBe(2n * PRICE)
    expect(await t.read.rewardDistributor.read.frozenAt([grace.address])).toBeGreaterThan(0n)
    // What the verification code does to a caught address: its unverified work is dropped.
    await db.query(`UPDATE attempts SET verdict = 'dropped' WHERE contributor = $1 AND verdict = 'unchecked'`, [grace.address])

    await attempt(jobId, frank, 4)
    const third = (await settlement.closeEpoch())!
    expect(await settlement.epochs.leaf(third.epoch, grace.address)).toBeNull()
    expect((await settlement.epochs.leaf(third.epoch, frank.address))?.cumulativeAmount).toBe(2n * PRICE)
    // Grace's two charged units stay in the job's total: charged money is never un-charged.
    expect((await escrowOf(jobId))[4]).toBe(4n * PRICE)
    expect(third.totalCumulative).toBe(String(BigInt(second.totalCumulative) + PRICE))

    // Once the frozen root is claimable: grace's leaf of epoch 1 (claimable before the freeze) is paid to
    // her, the unit epoch 2 added goes to the treasury.
    const treasury = t.accounts.treasury.address
    const treasuryBefore = await t.balanceOf(treasury)
    await window()
    const sweeps = await settlement.frozen.tick()
    expect(sweeps).toEqual([expect.objectContaining({ account: grace.address, epoch: second.epoch, swept: PRICE, paidToAccount: PRICE })])
    expect(await t.balanceOf(grace.address)).toBe(PRICE)
    expect((await t.balanceOf(treasury)) - treasuryBefore).toBe(PRICE)
    expect(await t.read.rewardDistributor.read.claimed([grace.address])).toBe(2n * PRICE)
    expect(await settlement.frozen.tick()).toEqual([])
    // Frank's leaf still holds against the root and pays in full.
    const view = await settlement.rewards(frank.address)
    expect(verifyRewardProof(view.claimable!.root, frank.address, 2n * PRICE, view.claimable!.proof)).toBe(true)
    expect(first.epoch).toBeLessThan(second.epoch)
  })

  it('reads stakes for the lease gate: active and pending stake, a stake cached for a few seconds, no stake never', async () => {
    const henry = privateKeyToAccount(generatePrivateKey())
    expect(await settlement.stakeOf(henry.address)).toBe(0n)
    await stakeFor(henry.address)
    // No stake is not remembered: the address that was just refused is the one about to stake.
    expect(await settlement.stakeOf(henry.address)).toBe(STAKE)
    await stakeFor(henry.address)
    expect(await settlement.stakeOf(henry.address)).toBe(STAKE) // cached
    expect(await settlement.stakeOf(getAddress(henry.address.toLowerCase()))).toBe(STAKE)
    await new Promise((resolve) => setTimeout(resolve, 5_100))
    expect(await settlement.stakeOf(henry.address)).toBe(2n * STAKE)
  })
})
