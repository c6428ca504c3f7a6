import { keccak256, toHex, zeroHash, type Address, type Hash } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { buildRewardTree, rewardProof, type RewardTree } from '../src/protocol/rewards.ts'
import { ROLES } from './deploy.ts'
import { expectRevert, startTestChain, TEST_PARAMETERS, type TestChain } from './testing.ts'

let t: TestChain
/** A stand-in claims root per epoch: the distributor only stores it (DisputeResolver proves against it). */
const claimsRootOf = (epoch: bigint) => keccak256(toHex(`claims of epoch ${epoch}`))
const JOB = keccak256(toHex('job: mnist preset'))
const WINDOW = BigInt(TEST_PARAMETERS.challengeWindowSeconds)

/** Posts `balances` as the next epoch, charging the job for the growth of the total. */
async function post(balances: Record<string, bigint>): Promise<{ epoch: bigint; tree: RewardTree; claimableAt: bigint }> {
  const tree = buildRewardTree(new Map(Object.entries(balances) as [Address, bigint][]))
  const total = Object.values(balances).reduce((a, b) => a + b, 0n)
  const epoch = (await t.read.rewardDistributor.read.epochCount()) + 1n
  const [, previousTotal] = await t.read.rewardDistributor.read.epochs([epoch - 1n])
  const charges = total > previousTotal ? [{ specHash: JOB, requester: t.accounts.requester.address, amount: total - previousTotal }] : []
  await t.mined(t.as('coordinator').rewardDistributor.write.postRoot([epoch, tree.root as Hash, claimsRootOf(epoch), total, charges]))
  const [, , , claimableAt] = await t.read.rewardDistributor.read.epochs([epoch])
  return { epoch, tree, claimableAt }
}

function proofOf(tree: RewardTree, account: Address) {
  const p = rewardProof(tree, account)
  if (!p) throw new Error(`no leaf for ${account}`)
  return p
}

const claim = (by: 'alice' | 'bob' | 'carol' | 'outsider', epoch: bigint, account: Address, amount: bigint, proof: Hash[]) =>
  t.as(by).rewardDistributor.write.claim([epoch, account, amount, proof])

let alice: Address, bob: Address, carol: Address

beforeAll(async () => {
  t = await startTestChain()
  ;({ alice, bob, carol } = { alice: t.accounts.alice.address, bob: t.accounts.bob.address, carol: t.accounts.carol.address })
  await t.mined(t.as('deployer').token.write.mint([t.accounts.requester.address, 10_000n]))
  await t.mined(t.as('requester').token.write.approve([t.contracts.jobEscrow, 10_000n]))
  await t.mined(t.as('requester').jobEscrow.write.deposit([JOB, 10_000n, (await t.now()) + 30n * 86_400n]))
  await t.saveBaseline()
})
afterAll(() => t?.stop())
beforeEach(() => t.restoreBaseline())

describe('RewardDistributor.postRoot', () => {
  it('posts an epoch, charges the escrow and starts the challenge window', async () => {
    const { epoch, tree, claimableAt } = await post({ [alice]: 300n, [bob]: 200n })
    expect(epoch).toBe(1n)
    expect(await t.read.rewardDistributor.read.epochCount()).toBe(1n)
    const [root, total, postedAt, claimable, claimsRoot] = await t.read.rewardDistributor.read.epochs([1n])
    expect([root, total, claimable, claimsRoot]).toEqual([tree.root, 500n, postedAt + WINDOW, claimsRootOf(1n)])
    expect(claimableAt).toBe(postedAt + WINDOW)
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(500n)
    expect(await t.read.jobEscrow.read.remaining([JOB, t.accounts.requester.address])).toBe(9_500n)
    const [log] = await t.read.rewardDistributor.getEvents.RootPosted({ epoch: 1n }, { fromBlock: 0n })
    expect(log?.args).toEqual({ epoch: 1n, root: tree.root, totalCumulative: 500n, claimableAt })
  })

  it('rejects a non-poster, a wrong epoch number, a zero root that charges and a total that does not match the charges', async () => {
    const root = keccak256(toHex('root'))
    const claims = claimsRootOf(1n)
    const requester = t.accounts.requester.address
    for (const name of ['outsider', 'requester', 'deployer'] as const) {
      const [account, role] = await expectRevert(t.as(name).rewardDistributor.write.postRoot([1n, root, claims, 0n, []]), 'AccessControlUnauthorizedAccount')
      expect([account, role]).toEqual([t.accounts[name].address, ROLES.POSTER_ROLE])
    }
    const poster = t.as('coordinator').rewardDistributor.write
    expect(await expectRevert(poster.postRoot([0n, root, claims, 0n, []]), 'WrongEpoch')).toEqual([1n])
    expect(await expectRevert(poster.postRoot([2n, root, claims, 0n, []]), 'WrongEpoch')).toEqual([1n])
    await expectRevert(poster.postRoot([1n, zeroHash, claims, 100n, [{ specHash: JOB, requester, amount: 100n }]]), 'ZeroRoot')
    // A root claiming more than it charges would pay contributors out of other jobs' charges.
    expect(await expectRevert(poster.postRoot([1n, root, claims, 101n, [{ specHash: JOB, requester, amount: 100n }]]), 'TotalMismatch')).toEqual([100n])
    expect(await expectRevert(poster.postRoot([1n, root, claims, 99n, [{ specHash: JOB, requester, amount: 100n }]]), 'TotalMismatch')).toEqual([100n])

    await post({ [alice]: 100n })
    expect(await expectRevert(poster.postRoot([1n, root, claims, 100n, []]), 'WrongEpoch')).toEqual([2n])
    // The total is cumulative: the second epoch's total includes the first's.
    expect(await expectRevert(poster.postRoot([2n, root, claims, 50n, [{ specHash: JOB, requester, amount: 50n }]]), 'TotalMismatch')).toEqual([150n])
    expect(await t.read.rewardDistributor.read.epochCount()).toBe(1n)
  })

  it('posts an epoch that only commits claims: the same reward root again, or none before anyone earned, and no charge', async () => {
    const poster = t.as('coordinator').rewardDistributor.write
    // Nobody has earned yet, but refused claims await a verdict: a zero reward root with a claims root.
    await t.mined(poster.postRoot([1n, zeroHash, claimsRootOf(1n), 0n, []]))
    const first = await post({ [alice]: 100n })
    expect(first.epoch).toBe(2n)
    await t.mined(poster.postRoot([3n, first.tree.root as Hash, claimsRootOf(3n), 100n, []]))
    const [root, total, , , claimsRoot] = await t.read.rewardDistributor.read.epochs([3n])
    expect([root, total, claimsRoot]).toEqual([first.tree.root, 100n, claimsRootOf(3n)])
    expect(await t.read.jobEscrow.read.remaining([JOB, t.accounts.requester.address])).toBe(9_900n)
    // Epoch 3 pays alice what epoch 2 did, once.
    await t.increaseTime(WINDOW)
    const p = proofOf(first.tree, alice)
    await t.mined(claim('alice', 3n, alice, p.cumulativeAmount, p.proof))
    await expectRevert(claim('alice', 2n, alice, p.cumulativeAmount, p.proof), 'NothingToClaim')
    await expectRevert(claim('alice', 1n, alice, p.cumulativeAmount, p.proof), 'InvalidProof')
  })
})

describe('RewardDistributor.claim', () => {
  it('refuses a claim before the challenge window ends and for an unknown epoch', async () => {
    const { tree, claimableAt } = await post({ [alice]: 300n, [bob]: 200n })
    const p = proofOf(tree, alice)
    expect(await expectRevert(claim('alice', 1n, alice, p.cumulativeAmount, p.proof), 'RootNotClaimable')).toEqual([claimableAt])
    await t.increaseTime(WINDOW - 20n)
    await expectRevert(claim('alice', 1n, alice, p.cumulativeAmount, p.proof), 'RootNotClaimable')
    await t.increaseTime(20n)
    expect(await expectRevert(claim('alice', 2n, alice, p.cumulativeAmount, p.proof), 'UnknownEpoch')).toEqual([2n])
    expect(await expectRevert(claim('alice', 0n, alice, p.cumulativeAmount, p.proof), 'UnknownEpoch')).toEqual([0n])
  })

  it('pays exactly the leaf amount after the window, and nothing on a second claim', async () => {
    const { tree } = await post({ [alice]: 300n, [bob]: 200n })
    await t.increaseTime(WINDOW)
    const p = proofOf(tree, alice)
    await t.mined(claim('alice', 1n, alice, p.cumulativeAmount, p.proof))
    expect(await t.balanceOf(alice)).toBe(300n)
    expect(await t.read.rewardDistributor.read.claimed([alice])).toBe(300n)
    await expectRevert(claim('alice', 1n, alice, p.cumulativeAmount, p.proof), 'NothingToClaim')
    expect(await t.balanceOf(alice)).toBe(300n)
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(200n)
    const [log] = await t.read.rewardDistributor.getEvents.Claimed({ account: alice }, { fromBlock: 0n })
    expect(log?.args).toEqual({ account: alice, epoch: 1n, amount: 300n, cumulativeAmount: 300n })
  })

  it('pays only the difference on a later epoch, lets a skipped epoch be claimed later, and never pays an older root after a newer one', async () => {
    const first = await post({ [alice]: 300n, [bob]: 200n })
    await t.increaseTime(WINDOW)
    const a1 = proofOf(first.tree, alice)
    await t.mined(claim('alice', 1n, alice, a1.cumulativeAmount, a1.proof))

    const second = await post({ [alice]: 450n, [bob]: 200n, [carol]: 100n })
    await t.increaseTime(WINDOW)
    const a2 = proofOf(second.tree, alice)
    await t.mined(claim('alice', 2n, alice, a2.cumulativeAmount, a2.proof))
    expect(await t.balanceOf(alice)).toBe(450n)

    // Bob skipped epoch 1: epoch 2 alone pays his whole cumulative amount; epoch 1 afterwards pays nothing.
    const b2 = proofOf(second.tree, bob)
    await t.mined(claim('bob', 2n, bob, b2.cumulativeAmount, b2.proof))
    const b1 = proofOf(first.tree, bob)
    await expectRevert(claim('bob', 1n, bob, b1.cumulativeAmount, b1.proof), 'NothingToClaim')
    expect(await t.balanceOf(bob)).toBe(200n)

    // Carol claims the new epoch; alice replaying her epoch-1 leaf after her epoch-2 claim gets nothing.
    const c2 = proofOf(second.tree, carol)
    await t.mined(claim('carol', 2n, carol, c2.cumulativeAmount, c2.proof))
    await expectRevert(claim('alice', 1n, alice, a1.cumulativeAmount, a1.proof), 'NothingToClaim')

    // Everything charged was paid, nothing more.
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(0n)
    expect((await t.balanceOf(alice)) + (await t.balanceOf(bob)) + (await t.balanceOf(carol))).toBe(750n)
  })

  it("rejects another address's proof, an inflated amount and a leaf from another epoch", async () => {
    const first = await post({ [alice]: 300n, [bob]: 200n })
    const second = await post({ [alice]: 400n, [bob]: 250n })
    await t.increaseTime(WINDOW)
    const a = proofOf(first.tree, alice)
    // Bob presents alice's leaf as his own, sent by himself or with himself as the account.
    await expectRevert(claim('bob', 1n, bob, a.cumulativeAmount, a.proof), 'InvalidProof')
    await expectRevert(claim('bob', 1n, bob, 200n, a.proof), 'InvalidProof')
    await expectRevert(claim('alice', 1n, alice, a.cumulativeAmount + 1n, a.proof), 'InvalidProof')
    await expectRevert(claim('alice', 2n, alice, a.cumulativeAmount, a.proof), 'InvalidProof')
    await expectRevert(claim('alice', 1n, alice, a.cumulativeAmount, []), 'InvalidProof')
    const a2 = proofOf(second.tree, alice)
    await expectRevert(claim('alice', 1n, alice, a2.cumulativeAmount, a2.proof), 'InvalidProof')
    expect(await t.balanceOf(bob)).toBe(0n)
    expect(await t.balanceOf(alice)).toBe(0n)
  })

  it('pays the leaf account when a third party submits a valid leaf', async () => {
    const { tree } = await post({ [alice]: 300n, [bob]: 200n })
    await t.increaseTime(WINDOW)
    const p = proofOf(tree, alice)
    const outsiderBefore = await t.balanceOf(t.accounts.outsider.address)
    await t.mined(claim('outsider', 1n, alice, p.cumulativeAmount, p.proof))
    expect(await t.balanceOf(alice)).toBe(300n)
    expect(await t.balanceOf(t.accounts.outsider.address)).toBe(outsiderBefore)
    // Alice herself now has nothing left to claim on it.
    await expectRevert(claim('alice', 1n, alice, p.cumulativeAmount, p.proof), 'NothingToClaim')
  })
})

describe('RewardDistributor.freeze', () => {
  it('lets only the freezer freeze, and the first freeze time sticks', async () => {
    for (const name of ['outsider', 'coordinator', 'deployer'] as const) {
      const [account, role] = await expectRevert(t.as(name).rewardDistributor.write.freeze([alice]), 'AccessControlUnauthorizedAccount')
      expect([account, role]).toEqual([t.accounts[name].address, ROLES.FREEZER_ROLE])
    }
    // The resolver holds FREEZER_ROLE in a deployment; an EOA gets it here to test freeze alone.
    await t.mined(t.as('deployer').rewardDistributor.write.grantRole([ROLES.FREEZER_ROLE, t.accounts.carol.address]))
    const receipt = await t.mined(t.as('carol').rewardDistributor.write.freeze([alice]))
    const frozenAt = (await t.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(frozenAt)
    await t.increaseTime(1_000)
    await t.mined(t.as('carol').rewardDistributor.write.freeze([alice]))
    expect(await t.read.rewardDistributor.read.frozenAt([alice])).toBe(frozenAt)
    expect(await t.read.rewardDistributor.getEvents.Frozen({ account: alice }, { fromBlock: 0n })).toHaveLength(1)
  })

  it('blocks roots not yet claimable at freeze time and keeps earlier ones claimable', async () => {
    await t.mined(t.as('deployer').rewardDistributor.write.grantRole([ROLES.FREEZER_ROLE, t.accounts.carol.address]))
    const first = await post({ [alice]: 300n, [bob]: 200n })
    await t.increaseTime(WINDOW)
    const second = await post({ [alice]: 500n, [bob]: 300n })
    await t.mined(t.as('carol').rewardDistributor.write.freeze([alice]))
    await t.increaseTime(WINDOW)

    const a2 = proofOf(second.tree, alice)
    expect(await expectRevert(claim('alice', 2n, alice, a2.cumulativeAmount, a2.proof), 'RewardsFrozen')).toEqual([alice])
    // A third party cannot route around the freeze either.
    await expectRevert(claim('outsider', 2n, alice, a2.cumulativeAmount, a2.proof), 'RewardsFrozen')
    const a1 = proofOf(first.tree, alice)
    await t.mined(claim('alice', 1n, alice, a1.cumulativeAmount, a1.proof))
    expect(await t.balanceOf(alice)).toBe(300n)
    // Later epochs stay frozen for alice, and bob is unaffected.
    const third = await post({ [alice]: 600n, [bob]: 400n })
    await t.increaseTime(WINDOW)
    const a3 = proofOf(third.tree, alice)
    await expectRevert(claim('alice', 3n, alice, a3.cumulativeAmount, a3.proof), 'RewardsFrozen')
    const b3 = proofOf(third.tree, bob)
    await t.mined(claim('bob', 3n, bob, b3.cumulativeAmount, b3.proof))
    expect(await t.balanceOf(bob)).toBe(400n)
  })
})

describe('RewardDistributor.sweepFrozen', () => {
  beforeEach(async () => {
    // The resolver holds FREEZER_ROLE in a deployment; an EOA gets it here to test the sweep alone.
    await t.mined(t.as('deployer').rewardDistributor.write.grantRole([ROLES.FREEZER_ROLE, t.accounts.carol.address]))
  })
  const sweep = (epoch: bigint, account: Address, amount: bigint, proof: Hash[]) =>
    t.as('coordinator').rewardDistributor.write.sweepFrozen([epoch, account, amount, proof])

  it('sends what a frozen account was never paid to the treasury once the frozen root is claimable, and leaves its earlier root to it', async () => {
    const treasury = t.accounts.treasury.address
    expect(await t.read.rewardDistributor.read.treasury()).toBe(treasury)
    const first = await post({ [alice]: 300n, [bob]: 200n })
    await t.increaseTime(WINDOW)
    const second = await post({ [alice]: 500n, [bob]: 300n })
    await t.mined(t.as('carol').rewardDistributor.write.freeze([alice]))
    const a1 = proofOf(first.tree, alice)
    const a2 = proofOf(second.tree, alice)

    // Epoch 1 was claimable before the freeze: it is alice's, not the treasury's.
    expect(await expectRevert(sweep(1n, alice, a1.cumulativeAmount, a1.proof), 'EpochNotFrozen')).toEqual([1n, alice])
    // Epoch 2's window is still open: verdicts about it may still land.
    expect(await expectRevert(sweep(2n, alice, a2.cumulativeAmount, a2.proof), 'RootNotClaimable')).toEqual([second.claimableAt])
    await t.increaseTime(WINDOW)
    await expectRevert(sweep(2n, alice, a2.cumulativeAmount + 1n, a2.proof), 'InvalidProof')
    const b2 = proofOf(second.tree, bob)
    expect(await expectRevert(sweep(2n, bob, b2.cumulativeAmount, b2.proof), 'NotFrozen')).toEqual([bob])
    await expectRevert(sweep(3n, alice, a2.cumulativeAmount, a2.proof), 'UnknownEpoch')
    for (const name of ['alice', 'outsider', 'requester', 'deployer'] as const) {
      await expectRevert(t.as(name).rewardDistributor.write.sweepFrozen([2n, alice, a2.cumulativeAmount, a2.proof]), 'AccessControlUnauthorizedAccount')
    }

    // The coordinator's order: first alice's unfrozen leaf, paid to her, then the rest to the treasury.
    await t.mined(claim('outsider', 1n, alice, a1.cumulativeAmount, a1.proof))
    const receipt = await t.mined(sweep(2n, alice, a2.cumulativeAmount, a2.proof))
    expect(await t.balanceOf(alice)).toBe(300n)
    expect(await t.balanceOf(treasury)).toBe(200n)
    expect(await t.read.rewardDistributor.read.claimed([alice])).toBe(500n)
    const [log] = await t.read.rewardDistributor.getEvents.FrozenSwept({ account: alice }, { blockHash: receipt.blockHash })
    expect(log?.args).toEqual({ account: alice, epoch: 2n, amount: 200n, cumulativeAmount: 500n })
    await expectRevert(sweep(2n, alice, a2.cumulativeAmount, a2.proof), 'NothingToClaim')
    await expectRevert(claim('alice', 2n, alice, a2.cumulativeAmount, a2.proof), 'RewardsFrozen')

    // Bob is unaffected, and everything charged is accounted for.
    await t.mined(claim('bob', 2n, bob, b2.cumulativeAmount, b2.proof))
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(0n)
  })

  it('sweeps only the growth when a later frozen root adds to a swept account', async () => {
    await post({ [alice]: 100n })
    await t.mined(t.as('carol').rewardDistributor.write.freeze([alice]))
    const second = await post({ [alice]: 150n, [bob]: 10n })
    const third = await post({ [alice]: 175n, [bob]: 20n })
    await t.increaseTime(WINDOW)
    const a2 = proofOf(second.tree, alice)
    const a3 = proofOf(third.tree, alice)
    await t.mined(sweep(2n, alice, a2.cumulativeAmount, a2.proof))
    await t.mined(sweep(3n, alice, a3.cumulativeAmount, a3.proof))
    expect(await t.balanceOf(t.accounts.treasury.address)).toBe(175n)
    // What is left is bob's, to the token.
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(20n)
  })
})
