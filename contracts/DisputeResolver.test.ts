import { keccak256, toHex, zeroAddress, zeroHash, type Address, type Hash, type Hex, type HDAccount } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { claimDomain, signWorkClaim, workClaimDigest, workClaimTypes, type ClaimDomainParams, type TypedDataSigner, type WorkClaim } from '../src/protocol/claim.ts'
import { buildRewardTree, rewardProof } from '../src/protocol/rewards.ts'
import { buildClaimsTree, claimProof, claimsRootOf, type ClaimsTree } from '../coordinator/settlement/claimsTree.ts'
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

const sign = async (claim: WorkClaim, signer: TypedDataSigner = t.accounts.alice, params: ClaimDomainParams = domain) =>
  (await signWorkClaim(signer, claim, params)).signature

/** A signature by `signer` over a claim that names someone else: what a forger can produce. */
const forge = (claim: WorkClaim, signer: HDAccount) =>
  signer.signTypedData({ domain: claimDomain(domain), types: workClaimTypes, primaryType: 'WorkClaim', message: claim })

async function stake(name: AccountName, amount: bigint) {
  await t.mined(t.as('deployer').token.write.mint([t.accounts[name].address, amount]))
  await t.mined(t.as(name).token.write.approve([t.contracts.stakeManager, amount]))
  await t.mined(t.as(name).stakeManager.write.stake([amount]))
}

/** Posts an epoch paying `balances`, charged to JOB, committing the claims `committed`. */
async function postEpoch(balances: [Address, bigint][], committed: WorkClaim[] = []) {
  const tree = buildRewardTree(new Map(balances))
  const claims = buildClaimsTree(committed.map((c) => workClaimDigest(c, domain)))
  const total = balances.reduce((sum, [, amount]) => sum + amount, 0n)
  const epoch = (await t.read.rewardDistributor.read.epochCount()) + 1n
  const [, previousTotal] = await t.read.rewardDistributor.read.epochs([epoch - 1n])
  const charges = total > previousTotal ? [{ specHash: JOB, requester: t.accounts.requester.address, amount: total - previousTotal }] : []
  await t.mined(t.as('coordinator').rewardDistributor.write.postRoot([epoch, tree.root as Hash, claimsRootOf(claims), total, charges]))
  const [, , , claimableAt] = await t.read.rewardDistributor.read.epochs([epoch])
  return { epoch, tree, claims, claimableAt }
}

/** The proof that `claim` is committed in `claims`; fails the test when it is not. */
function committedProof(claims: ClaimsTree | null, claim: WorkClaim): Hash[] {
  const proof = claimProof(claims, workClaimDigest(claim, domain))
  if (!proof) throw new Error('claim not in the claims tree')
  return proof
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
    const b = claimOf('out B')
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
      // Another device class: in the default kernel bundle two honest classes may differ in the last bits.
      claimOf('out B', { deviceClass: 'wasm|cpu|node-20|bundle' }),
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
      t.as('coordinator').disputeResolver.write.postVerdict([b, otherChain, 1n, [], h('referee'), t.accounts.reporter.address]),
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

  it('slashes a new burner wallet whose minimum stake the faucet paid with stakeFor', async () => {
    // A fresh key: no gas, no tokens, never sent a transaction. The faucet (here the deployer) stakes for it.
    const burner = privateKeyToAccount(generatePrivateKey())
    await t.mined(t.as('deployer').token.write.mint([t.accounts.deployer.address, STAKE]))
    await t.mined(t.as('deployer').token.write.approve([t.contracts.stakeManager, STAKE]))
    await t.mined(t.as('deployer').stakeManager.write.stakeFor([burner.address, STAKE]))
    expect(await t.read.stakeManager.read.slashableOf([burner.address])).toBe(STAKE)
    const a = claimOf('out A', { contributor: burner.address })
    const b = claimOf('out B', { contributor: burner.address })
    const args = [a, await sign(a, burner), b, await sign(b, burner)] as const
    const { result } = await t.as('reporter').disputeResolver.simulate.slashDoubleSign(args, { account: t.accounts.reporter })
    expect(result).toBe(STAKE / 2n)
    await t.mined(t.as('reporter').disputeResolver.write.slashDoubleSign(args))
    expect(await t.read.stakeManager.read.slashableOf([burner.address])).toBe(STAKE / 2n)
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
        t.as(name).disputeResolver.write.postVerdict([a, sa, 1n, [], h('referee'), t.accounts[name].address]),
        'AccessControlUnauthorizedAccount',
      )
      expect([account, role]).toEqual([t.accounts[name].address, ROLES.REFEREE_ROLE])
    }
  })

  it('slashes and freezes inside the challenge window of the epoch that committed the claim: that root becomes unclaimable, an earlier claimable one stays claimable', async () => {
    const bob = t.accounts.bob.address
    const claim = claimOf('out A')
    const first = await postEpoch([
      [alice, 100n],
      [bob, 100n],
    ])
    await t.increaseTime(WINDOW)
    // Epoch 2 pays and commits the disputed unit; the referee's re-execution disagrees while its window is open.
    const second = await postEpoch(
      [
        [alice, 250n],
        [bob, 150n],
      ],
      [claimOf('out X', { unit: 1 }), claim, claimOf('out Y', { unit: 2, contributor: bob })],
    )
    const digest = workClaimDigest(claim, domain)
    const before = await balances()
    const receipt = await t.mined(
      t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 2n, committedProof(second.claims, claim), h('referee'), t.accounts.reporter.address]),
    )
    const after = await balances()
    expect(before.stake - after.stake).toBe(500n)
    expect(after.reporter - before.reporter).toBe(50n)
    expect(after.treasury - before.treasury).toBe(450n)
    const frozenAt = (await t.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(frozenAt)
    const [log] = await t.read.disputeResolver.getEvents.VerdictSlashed({ contributor: alice }, { fromBlock: 0n })
    expect(log?.args).toEqual({ contributor: alice, jobId: JOB, epoch: 2n, claimDigest: digest, reporter: t.accounts.reporter.address, slashed: 500n })

    await t.increaseTime(WINDOW)
    const a2 = rewardProof(second.tree, alice)!
    expect(await expectRevert(t.as('alice').rewardDistributor.write.claim([2n, alice, a2.cumulativeAmount, a2.proof]), 'RewardsFrozen')).toEqual([alice])
    const a1 = rewardProof(first.tree, alice)!
    await t.mined(t.as('alice').rewardDistributor.write.claim([1n, alice, a1.cumulativeAmount, a1.proof]))
    expect(await t.balanceOf(alice)).toBe(100n)
    const b2 = rewardProof(second.tree, bob)!
    await t.mined(t.as('bob').rewardDistributor.write.claim([2n, bob, b2.cumulativeAmount, b2.proof]))
    expect(await t.balanceOf(bob)).toBe(150n)
  })

  it('refuses a verdict once the epoch that committed the claim is claimable', async () => {
    const claim = claimOf('out A')
    const { claimableAt, claims } = await postEpoch([[alice, 100n]], [claim])
    await t.increaseTime(WINDOW)
    const verdict = t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 1n, committedProof(claims, claim), h('referee'), zeroAddress])
    expect(await expectRevert(verdict, 'OutsideChallengeWindow')).toEqual([claimableAt])
    expect((await balances()).stake).toBe(STAKE)
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(0n)
  })

  it('refuses a verdict naming an unposted epoch, epoch 0 or 2^64 − 1: the referee cannot reopen a closed window', async () => {
    // The claim was paid in epoch 1, whose window closed long ago.
    const claim = claimOf('out A')
    const { claims } = await postEpoch([[alice, 100n]], [claim])
    await t.increaseTime(10n * WINDOW)
    const signature = await sign(claim)
    const proof = committedProof(claims, claim)
    for (const epoch of [2n, 0n, 2n ** 64n - 1n]) {
      const verdict = t.as('coordinator').disputeResolver.write.postVerdict([claim, signature, epoch, proof, h('referee'), zeroAddress])
      expect(await expectRevert(verdict, 'UnknownEpoch')).toEqual([epoch])
    }
    expect((await balances()).stake).toBe(STAKE)
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(0n)
  })

  it('refuses a verdict naming an open epoch that did not commit the claim', async () => {
    const claim = claimOf('out A')
    const first = await postEpoch([[alice, 100n]], [claim])
    await t.increaseTime(WINDOW)
    // Epoch 2 is open, but it committed other claims; epoch 1's proof does not hold against it.
    const other = claimOf('out B', { unit: 8 })
    const second = await postEpoch([[alice, 200n]], [other])
    const digest = workClaimDigest(claim, domain)
    const signature = await sign(claim)
    const write = t.as('coordinator').disputeResolver.write
    expect(await expectRevert(write.postVerdict([claim, signature, 2n, committedProof(first.claims, claim), h('referee'), zeroAddress]), 'ClaimNotInEpoch')).toEqual([2n, digest])
    await expectRevert(write.postVerdict([claim, signature, 2n, committedProof(second.claims, other), h('referee'), zeroAddress]), 'ClaimNotInEpoch')
    await expectRevert(write.postVerdict([claim, signature, 2n, [], h('referee'), zeroAddress]), 'ClaimNotInEpoch')
    // An epoch that committed no claim at all (zero claims root) proves nothing either.
    await t.mined(t.as('coordinator').rewardDistributor.write.postRoot([3n, second.tree.root as Hash, zeroHash, 200n, []]))
    await expectRevert(write.postVerdict([claim, signature, 3n, [], h('referee'), zeroAddress]), 'ClaimNotInEpoch')
    expect((await balances()).stake).toBe(STAKE)
  })

  it('slashes a fault once: a verdict and double-sign evidence for the same unit and input, in either order', async () => {
    const wrong = claimOf('out A')
    const other = claimOf('out B')
    const { claims } = await postEpoch([[alice, 100n]], [wrong])
    const [sw, so] = await Promise.all([sign(wrong), sign(other)])
    await t.mined(t.as('coordinator').disputeResolver.write.postVerdict([wrong, sw, 1n, committedProof(claims, wrong), h('referee'), zeroAddress]))
    const afterVerdict = await balances()
    expect(afterVerdict.stake).toBe(STAKE / 2n)
    await expectRevert(t.as('reporter').disputeResolver.write.slashDoubleSign([wrong, sw, other, so]), 'EvidenceAlreadyUsed')
    expect(await balances()).toEqual(afterVerdict)

    // The other order, on another unit: double signing first, then the referee's verdict on either claim.
    const x = claimOf('out X', { unit: 9 })
    const y = claimOf('out Y', { unit: 9 })
    const second = await postEpoch([[alice, 200n]], [x, y])
    const [sx, sy] = await Promise.all([sign(x), sign(y)])
    await t.mined(t.as('reporter').disputeResolver.write.slashDoubleSign([x, sx, y, sy]))
    const afterDoubleSign = await balances()
    expect(afterDoubleSign.stake).toBe(STAKE / 4n)
    for (const c of [x, y]) {
      await expectRevert(
        t.as('coordinator').disputeResolver.write.postVerdict([c, c === x ? sx : sy, 2n, committedProof(second.claims, c), h('referee'), zeroAddress]),
        'EvidenceAlreadyUsed',
      )
    }
    expect(await balances()).toEqual(afterDoubleSign)
  })

  it('rejects a verdict that agrees with the claim or whose signature is not the contributor’s', async () => {
    const claim = claimOf('out A')
    const { claims } = await postEpoch([[alice, 100n]], [claim])
    const proof = committedProof(claims, claim)
    await expectRevert(
      t.as('coordinator').disputeResolver.write.postVerdict([claim, await sign(claim), 1n, proof, claim.outputHash, t.accounts.reporter.address]),
      'VerdictAgreesWithClaim',
    )
    const [recovered] = await expectRevert(
      t.as('coordinator').disputeResolver.write.postVerdict([claim, await forge(claim, t.accounts.bob), 1n, proof, h('referee'), t.accounts.reporter.address]),
      'SignerMismatch',
    )
    expect(recovered).toBe(t.accounts.bob.address)
    expect((await balances()).stake).toBe(STAKE)
  })
})
