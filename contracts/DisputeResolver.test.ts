import { keccak256, toHex, zeroAddress, type Address, type Hash, type Hex, type HDAccount } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { claimDomain, signWorkClaim, workClaimDigest, workClaimTypes, type ClaimDomainParams, type WorkClaim } from '../src/protocol/claim.ts'
import { buildRewardTree, rewardProof } from '../src/protocol/rewards.ts'
import { ROLES } from './deploy.ts'
import { expectRevert, startTestChain, TEST_PARAMETERS, type AccountName, type TestChain } from './testing.ts'

let t: TestChain
let domain: ClaimDomainParams
let alice: Address

const JOB = keccak256(toHex('job: mnist preset')) as Hash
const WINDOW = BigInt(TEST_PARAMETERS.challengeWindowSeconds)
const STAKE = 1_000n
const h = (label: string) => keccak256(toHex(label)) as Hash

/** Alice's claim for (JOB, round 3, unit 7) on `input`, with output `output`. */
function claimOf(output: string, overrides: Partial<WorkClaim> = {}): WorkClaim {
  return {
    jobId: JOB,
    round: 3,
    unit: 7,
    inputHash: h('input'),
    outputHash: h(output),
    contributor: alice,
    deviceClass: 'webgpu|google/swiftshader|chrome-130|bundle',
    ...overrides,
  }
}

const sign = async (claim: WorkClaim, signer: HDAccount = t.accounts.alice, params: ClaimDomainParams = domain) =>
  (await signWorkClaim(signer, claim, params)).signature

/** A signature by `signer` over a claim that names someone else: what a forger can produce. */
const forge = (claim: WorkClaim, signer: HDAccount) =>
  signer.signTypedData({ domain: claimDomain(domain), types: workClaimTypes, primaryType: 'WorkClaim', message: claim })

async function stake(name: AccountName, amount: bigint) {
  await t.mined(t.as('deployer').token.write.mint([t.accounts[name].address, amount]))
  await t.mined(t.as(name).token.write.approve([t.contracts.stakeManager, amount]))
  await t.mined(t.as(name).stakeManager.write.stake([amount]))
}

/** Posts an epoch paying `balances`, charged to JOB. */
async function postEpoch(balances: [Address, bigint][]) {
  const tree = buildRewardTree(new Map(balances))
  const total = balances.reduce((sum, [, amount]) => sum + amount, 0n)
  const epoch = (await t.read.rewardDistributor.read.epochCount()) + 1n
  const [, previousTotal] = await t.read.rewardDistributor.read.epochs([epoch - 1n])
  await t.mined(t.as('coordinator').rewardDistributor.write.postRoot([epoch, tree.root as Hash, total, [{ specHash: JOB, amount: total - previousTotal }]]))
  const [, , , claimableAt] = await t.read.rewardDistributor.read.epochs([epoch])
  return { epoch, tree, claimableAt }
}

async function balances() {
  const [active, pending] = await t.read.stakeManager.read.stakeOf([alice])
  return {
    stake: active + pending,
    reporter: await t.balanceOf(t.accounts.reporter.address),
    treasury: await t.balanceOf(t.accounts.treasury.address),
    stakeManager: await t.balanceOf(t.contracts.stakeManager),
  }
}

beforeAll(async () => {
  t = await startTestChain()
  alice = t.accounts.alice.address
  domain = { chainId: t.anvil.chainId, verifyingContract: t.contracts.disputeResolver }
  await stake('alice', STAKE)
  await stake('bob', STAKE)
  await t.mined(t.as('deployer').token.write.mint([t.accounts.requester.address, 100_000n]))
  await t.mined(t.as('requester').token.write.approve([t.contracts.jobEscrow, 100_000n]))
  await t.mined(t.as('requester').jobEscrow.write.deposit([JOB, 100_000n, (await t.now()) + 30n * 86_400n]))
  await t.saveBaseline()
})
afterAll(() => t?.stop())
beforeEach(() => t.restoreBaseline())

describe('DisputeResolver.claimDigest', () => {
  it('equals workClaimDigest from src/protocol for the deployed address and chain id', async () => {
    for (const claim of [claimOf('out'), claimOf('other', { round: 0, unit: 0xffff_ffff, deviceClass: 'cpu|∂ unicode ✓|' + 'x'.repeat(200) })]) {
      expect(await t.read.disputeResolver.read.claimDigest([claim])).toBe(workClaimDigest(claim, domain))
    }
    const [, name, version, chainId, verifyingContract] = await t.read.disputeResolver.read.eip712Domain()
    expect({ name, version, chainId, verifyingContract }).toEqual({ name: 'TabTrain', version: '1', chainId: BigInt(t.anvil.chainId), verifyingContract: t.contracts.disputeResolver })
  })
})

describe('DisputeResolver.slashDoubleSign', () => {
  it('slashes a contributor who signed two outputs for one unit by exactly the basis points, and freezes them', async () => {
    const a = claimOf('out A')
    const b = claimOf('out B', { deviceClass: 'a different device class' })
    const before = await balances()
    const args = [a, await sign(a), b, await sign(b)] as const
    const { result } = await t.as('reporter').disputeResolver.simulate.slashDoubleSign(args, { account: t.accounts.reporter })
    expect(result).toBe(500n)
    const receipt = await t.mined(t.as('reporter').disputeResolver.write.slashDoubleSign(args))
    const after = await balances()
    const slashed = (STAKE * BigInt(TEST_PARAMETERS.slashBps)) / 10_000n
    const reward = (slashed * BigInt(TEST_PARAMETERS.reporterBps)) / 10_000n
    expect(before.stake - after.stake).toBe(slashed)
    expect(after.reporter - before.reporter).toBe(reward)
    expect(after.treasury - before.treasury).toBe(slashed - reward)
    expect(before.stakeManager - after.stakeManager).toBe(slashed)
    const frozenAt = (await t.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(frozenAt)
    const [log] = await t.read.disputeResolver.getEvents.DoubleSignSlashed({ contributor: alice }, { fromBlock: 0n })
    expect(log?.args).toEqual({ contributor: alice, jobId: JOB, round: 3, unit: 7, reporter: t.accounts.reporter.address, slashed })
    // Bob's stake is untouched.
    expect(await t.read.stakeManager.read.stakeOf([t.accounts.bob.address])).toEqual([STAKE, 0n, 0n])
  })

  it('rejects claims that do not conflict', async () => {
    const a = claimOf('out A')
    const sa = await sign(a)
    const notConflicting: WorkClaim[] = [
      claimOf('out A'), // the same output: agreement, not a conflict
      claimOf('out B', { unit: 8 }),
      claimOf('out B', { round: 4 }),
      claimOf('out B', { jobId: h('another job') }),
      claimOf('out B', { inputHash: h('another input') }),
    ]
    for (const b of notConflicting) {
      await expectRevert(t.as('reporter').disputeResolver.write.slashDoubleSign([a, sa, b, await sign(b)]), 'NotConflicting')
    }
    const bobs = claimOf('out B', { contributor: t.accounts.bob.address })
    await expectRevert(t.as('reporter').disputeResolver.write.slashDoubleSign([a, sa, bobs, await sign(bobs, t.accounts.bob)]), 'NotConflicting')
    expect((await balances()).stake).toBe(STAKE)
  })

  it('rejects forged and malformed signatures', async () => {
    const a = claimOf('out A')
    const b = claimOf('out B')
    const sa = await sign(a)
    // Bob fabricates a conflicting claim in alice's name.
    const [recovered] = await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([a, sa, b, await forge(b, t.accounts.bob)]), 'SignerMismatch')
    expect(recovered).toBe(t.accounts.bob.address)
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([b, await forge(b, t.accounts.bob), a, sa]), 'SignerMismatch')
    // One valid signature reused for the other claim.
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([a, sa, b, sa]), 'SignerMismatch')

    const sb = await sign(b)
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([a, sa, b, sb.slice(0, -2) as Hex]), 'ECDSAInvalidSignatureLength')
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([a, sa, b, `0x${'00'.repeat(65)}`]), 'ECDSAInvalidSignature')
    // The malleated twin (s → n − s, v flipped) of a valid signature is refused, not counted as new.
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    const s = BigInt(`0x${sb.slice(66, 130)}`)
    const v = parseInt(sb.slice(130, 132), 16)
    const twin = `${sb.slice(0, 66)}${(n - s).toString(16).padStart(64, '0')}${(v === 27 ? 28 : 27).toString(16)}` as Hex
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([a, sa, b, twin]), 'ECDSAInvalidSignatureS')
    expect((await balances()).stake).toBe(STAKE)
  })

  it('uses each piece of evidence once, in either order and with any third conflicting claim', async () => {
    const a = claimOf('out A')
    const b = claimOf('out B')
    const c = claimOf('out C')
    const [sa, sb, sc] = await Promise.all([sign(a), sign(b), sign(c)])
    await t.mined(t.as('reporter').disputeResolver.write.slashDoubleSign([a, sa, b, sb]))
    const key = keccak256(
      `0x${[alice.slice(2).toLowerCase().padStart(64, '0'), JOB.slice(2), (3).toString(16).padStart(64, '0'), (7).toString(16).padStart(64, '0'), h('input').slice(2)].join('')}`,
    )
    expect(await t.read.disputeResolver.read.evidenceUsed([key])).toBe(true)
    const afterFirst = await balances()
    expect(await expectRevert(t.as('reporter').disputeResolver.write.slashDoubleSign([a, sa, b, sb]), 'EvidenceAlreadyUsed')).toEqual([key])
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([b, sb, a, sa]), 'EvidenceAlreadyUsed')
    await expectRevert(t.as('bob').disputeResolver.write.slashDoubleSign([a, sa, c, sc]), 'EvidenceAlreadyUsed')
    expect(await balances()).toEqual(afterFirst)
    // A conflict on another unit is new evidence.
    const d = claimOf('out D', { unit: 8 })
    const e = claimOf('out E', { unit: 8 })
    await t.mined(t.as('bob').disputeResolver.write.slashDoubleSign([d, await sign(d), e, await sign(e)]))
    expect((await balances()).stake).toBe(afterFirst.stake / 2n)
  })

  it('rejects a claim signature replayed from another chain id or for another verifying contract', async () => {
    const a = claimOf('out A')
    const b = claimOf('out B')
    const sa = await sign(a)
    const otherChain = await sign(b, t.accounts.alice, { ...domain, chainId: 1 })
    await expectRevert(t.as('reporter').disputeResolver.write.slashDoubleSign([a, sa, b, otherChain]), 'SignerMismatch')
    const otherContract = await sign(b, t.accounts.alice, { ...domain, verifyingContract: t.contracts.rewardDistributor })
    await expectRevert(t.as('reporter').disputeResolver.write.slashDoubleSign([a, sa, b, otherContract]), 'SignerMismatch')
    await expectRevert(
      t.as('coordinator').disputeResolver.write.postVerdict([b, otherChain, 1n, h('referee'), t.accounts.reporter.address]),
      'SignerMismatch',
    )
    expect((await balances()).stake).toBe(STAKE)
  })

  it('reaches stake that is waiting to be unstaked: requesting an unstake does not dodge a slash', async () => {
    await t.mined(t.as('alice').stakeManager.write.requestUnstake([STAKE]))
    const a = claimOf('out A')
    const b = claimOf('out B')
    await t.mined(t.as('reporter').disputeResolver.write.slashDoubleSign([a, await sign(a), b, await sign(b)]))
    expect((await t.read.stakeManager.read.stakeOf([alice])).slice(0, 2)).toEqual([0n, STAKE / 2n])
    await t.increaseTime(TEST_PARAMETERS.unstakeDelaySeconds)
    await t.mined(t.as('alice').stakeManager.write.withdraw())
    expect(await t.balanceOf(alice)).toBe(STAKE / 2n)
  })

  it('still freezes a contributor with nothing staked', async () => {
    const carol = t.accounts.carol.address
    const a = claimOf('out A', { contributor: carol })
    const b = claimOf('out B', { contributor: carol })
    const { result } = await t.as('reporter').disputeResolver.simulate.slashDoubleSign([a, await sign(a, t.accounts.carol), b, await sign(b, t.accounts.carol)], {
      account: t.accounts.reporter,
    })
    expect(result).toBe(0n)
    await t.mined(t.as('reporter').disputeResolver.write.slashDoubleSign([a, await sign(a, t.accounts.carol), b, await sign(b, t.accounts.carol)]))
    expect(await t.read.rewardDistributor.read.frozenAt([carol])).toBeGreaterThan(0n)
  })
})

describe('DisputeResolver.postVerdict', () => {
  it('accepts verdicts from the referee only', async () => {
    const a = claimOf('out A')
    const sa = await sign(a)
    for (const name of ['outsider', 'alice', 'reporter', 'deployer'] as const) {
      const [account, role] = await expectRevert(
        t.as(name).disputeResolver.write.postVerdict([a, sa, 1n, h('referee'), t.accounts[name].address]),
        'AccessControlUnauthorizedAccount',
      )
      expect([account, role]).toEqual([t.accounts[name].address, ROLES.REFEREE_ROLE])
    }
  })

  it('slashes and freezes inside the challenge window: the disputed root becomes unclaimable, an earlier claimable one stays claimable', async () => {
    const bob = t.accounts.bob.address
    const first = await postEpoch([
      [alice, 100n],
      [bob, 100n],
    ])
    await t.increaseTime(WINDOW)
    // Epoch 2 pays the disputed unit; the referee's re-execution disagrees while its window is open.
    const second = await postEpoch([
      [alice, 250n],
      [bob, 150n],
    ])
    const claim = claimOf('out A')
    const digest = workClaimDigest(claim, domain)
    const before = await balances()
    const receipt = await t.mined(t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 2n, h('referee'), t.accounts.reporter.address]))
    const after = await balances()
    expect(before.stake - after.stake).toBe(500n)
    expect(after.reporter - before.reporter).toBe(50n)
    expect(after.treasury - before.treasury).toBe(450n)
    const frozenAt = (await t.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(frozenAt)
    const [log] = await t.read.disputeResolver.getEvents.VerdictSlashed({ contributor: alice }, { fromBlock: 0n })
    expect(log?.args).toEqual({ contributor: alice, jobId: JOB, epoch: 2n, claimDigest: digest, reporter: t.accounts.reporter.address, slashed: 500n })
    expect(await t.read.disputeResolver.read.evidenceUsed([digest])).toBe(true)

    await t.increaseTime(WINDOW)
    const a2 = rewardProof(second.tree, alice)!
    expect(await expectRevert(t.as('alice').rewardDistributor.write.claim([2n, alice, a2.cumulativeAmount, a2.proof]), 'RewardsFrozen')).toEqual([alice])
    const a1 = rewardProof(first.tree, alice)!
    await t.mined(t.as('alice').rewardDistributor.write.claim([1n, alice, a1.cumulativeAmount, a1.proof]))
    expect(await t.balanceOf(alice)).toBe(100n)
    const b2 = rewardProof(second.tree, bob)!
    await t.mined(t.as('bob').rewardDistributor.write.claim([2n, bob, b2.cumulativeAmount, b2.proof]))
    expect(await t.balanceOf(bob)).toBe(150n)

    await expectRevert(
      t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 3n, h('referee'), t.accounts.reporter.address]),
      'EvidenceAlreadyUsed',
    )
  })

  it('refuses a verdict once the epoch that paid the unit is claimable', async () => {
    const { claimableAt } = await postEpoch([[alice, 100n]])
    await t.increaseTime(WINDOW)
    const claim = claimOf('out A')
    const verdict = t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 1n, h('referee'), t.accounts.reporter.address])
    expect(await expectRevert(verdict, 'OutsideChallengeWindow')).toEqual([claimableAt])
    // Epoch 0 never pays anything and is always outside.
    await expectRevert(t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 0n, h('referee'), zeroAddress]), 'OutsideChallengeWindow')
    expect((await balances()).stake).toBe(STAKE)
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(0n)
  })

  it('accepts a verdict for an epoch not posted yet, and sends everything to the treasury without a reporter', async () => {
    await postEpoch([[alice, 100n]])
    const claim = claimOf('out A')
    const before = await balances()
    await t.mined(t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 2n, h('referee'), zeroAddress]))
    const after = await balances()
    expect(after.treasury - before.treasury).toBe(500n)
    expect(after.reporter).toBe(before.reporter)
    // The unposted epoch will be frozen for alice when it comes; epoch 1 was not claimable yet either.
    await t.increaseTime(WINDOW)
    await expectRevert(t.as('alice').rewardDistributor.write.claim([1n, alice, 100n, []]), 'RewardsFrozen')
  })

  it('rejects a verdict that agrees with the claim or whose signature is not the contributor’s', async () => {
    const claim = claimOf('out A')
    await expectRevert(
      t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 1n, claim.outputHash, t.accounts.reporter.address]),
      'VerdictAgreesWithClaim',
    )
    const [recovered] = await expectRevert(
      t.as('coordinator').disputeResolver.write.postVerdict([claim, await forge(claim, t.accounts.bob), 1n, h('referee'), t.accounts.reporter.address]),
      'SignerMismatch',
    )
    expect(recovered).toBe(t.accounts.bob.address)
    expect((await balances()).stake).toBe(STAKE)
  })
})
