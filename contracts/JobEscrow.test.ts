import { keccak256, toHex, type Address, type Hash } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ROLES } from './deploy.ts'
import { expectRevert, startTestChain, TEST_PARAMETERS, type AccountName, type TestChain } from './testing.ts'

let t: TestChain
const JOB = keccak256(toHex('job: mnist preset'))
const OTHER_JOB = keccak256(toHex('job: shakespeare'))
const DAY = 86_400n

async function deposit(name: AccountName, specHash: Hash, amount: bigint, deadline: bigint) {
  await t.mined(t.as('deployer').token.write.mint([t.accounts[name].address, amount]))
  await t.mined(t.as(name).token.write.approve([t.contracts.jobEscrow, amount]))
  return t.mined(t.as(name).jobEscrow.write.deposit([specHash, amount, deadline]))
}

/** Charges through the real path: the coordinator posts the next epoch, whose charges the distributor takes from escrow. */
async function postCharges(charges: { specHash: Hash; amount: bigint; requester?: Address }[]) {
  const epoch = (await t.read.rewardDistributor.read.epochCount()) + 1n
  const [, previousTotal] = await t.read.rewardDistributor.read.epochs([epoch - 1n])
  const total = previousTotal + charges.reduce((sum, c) => sum + c.amount, 0n)
  const withRequester = charges.map((c) => ({ specHash: c.specHash, requester: c.requester ?? requester, amount: c.amount }))
  return t.as('coordinator').rewardDistributor.write.postRoot([epoch, keccak256(toHex(`root ${epoch}`)), keccak256(toHex(`claims ${epoch}`)), total, withRequester])
}

let deadline: bigint
let requester: Address

beforeAll(async () => {
  t = await startTestChain()
  requester = t.accounts.requester.address
  deadline = (await t.now()) + DAY
  await deposit('requester', JOB, 1_000n, deadline)
  await t.saveBaseline()
})
afterAll(() => t?.stop())
beforeEach(() => t.restoreBaseline())

describe('JobEscrow deposits', () => {
  it('opens a job for the first depositor', async () => {
    expect(await t.read.jobEscrow.read.jobs([JOB, requester])).toEqual([deadline, false, false, 1_000n, 0n])
    expect(await t.read.jobEscrow.read.remaining([JOB, requester])).toBe(1_000n)
    expect(await t.balanceOf(t.contracts.jobEscrow)).toBe(1_000n)
    const [log] = await t.read.jobEscrow.getEvents.Deposited({ specHash: JOB }, { fromBlock: 0n })
    expect(log?.args).toEqual({ specHash: JOB, requester: t.accounts.requester.address, amount: 1_000n, totalDeposited: 1_000n, deadline })
  })

  it('accepts top-ups from the requester, which can extend but never shorten the deadline', async () => {
    await deposit('requester', JOB, 500n, deadline - 100n)
    expect(await t.read.jobEscrow.read.jobs([JOB, requester])).toEqual([deadline, false, false, 1_500n, 0n])
    await deposit('requester', JOB, 1n, deadline + DAY)
    expect((await t.read.jobEscrow.read.jobs([JOB, requester]))[0]).toBe(deadline + DAY)
    expect(await t.read.jobEscrow.read.remaining([JOB, requester])).toBe(1_501n)
  })

  it("keeps another address's deposit under the same spec hash in its own escrow: it cannot touch the requester's refund or deadline", async () => {
    await deposit('alice', JOB, 100n, deadline + 10n * DAY)
    expect(await t.read.jobEscrow.read.jobs([JOB, requester])).toEqual([deadline, false, false, 1_000n, 0n])
    expect(await t.read.jobEscrow.read.jobs([JOB, t.accounts.alice.address])).toEqual([deadline + 10n * DAY, false, false, 100n, 0n])
    expect(await t.read.jobEscrow.read.remaining([JOB, requester])).toBe(1_000n)
  })

  it('cannot be squatted: a 1-token deposit with a short deadline under someone else\'s spec hash neither blocks nor steals it, before or after its refund', async () => {
    // The attacker gets there first, with a deadline a minute away.
    const squatter = t.accounts.outsider.address
    await deposit('outsider', OTHER_JOB, 1n, (await t.now()) + 60n)
    // The real requester still opens its own escrow with its own deadline.
    await deposit('requester', OTHER_JOB, 500n, deadline)
    expect(await t.read.jobEscrow.read.jobs([OTHER_JOB, requester])).toEqual([deadline, false, false, 500n, 0n])
    await t.increaseTime(61n + BigInt(TEST_PARAMETERS.settlementPeriodSeconds))
    // The squatter's refund is its own token back, nothing of the requester's.
    await t.mined(t.as('outsider').jobEscrow.write.refund([OTHER_JOB]))
    expect(await t.balanceOf(squatter)).toBe(1n)
    expect(await t.read.jobEscrow.read.remaining([OTHER_JOB, requester])).toBe(500n)
    // After it, the spec hash is still fundable, chargeable and refundable for the requester.
    await deposit('requester', OTHER_JOB, 250n, 0n)
    await t.mined(postCharges([{ specHash: OTHER_JOB, amount: 700n }]))
    await expectRevert(postCharges([{ specHash: OTHER_JOB, amount: 1n, requester: squatter }]), 'AlreadyRefunded')
    await expectRevert(t.as('outsider').jobEscrow.write.refund([OTHER_JOB]), 'AlreadyRefunded')
    expect(await t.read.jobEscrow.read.remaining([OTHER_JOB, requester])).toBe(50n)
  })

  it('rejects zero amounts and deadlines that are not in the future', async () => {
    await expectRevert(t.as('requester').jobEscrow.write.deposit([OTHER_JOB, 0n, deadline]), 'ZeroAmount')
    const [rejected] = await expectRevert(deposit('requester', OTHER_JOB, 10n, (await t.now()) - 1n), 'DeadlineNotInFuture')
    expect(typeof rejected).toBe('bigint')
  })
})

describe('JobEscrow charges', () => {
  it('lets only the reward distributor charge', async () => {
    for (const name of ['outsider', 'coordinator', 'requester', 'deployer'] as const) {
      const [account, role] = await expectRevert(t.as(name).jobEscrow.write.charge([JOB, requester, 1n]), 'AccessControlUnauthorizedAccount')
      expect([account, role]).toEqual([t.accounts[name].address, ROLES.CHARGER_ROLE])
    }
  })

  it('moves charged escrow to the distributor', async () => {
    await t.mined(postCharges([{ specHash: JOB, amount: 300n }]))
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(300n)
    expect(await t.balanceOf(t.contracts.jobEscrow)).toBe(700n)
    expect(await t.read.jobEscrow.read.remaining([JOB, requester])).toBe(700n)
    expect((await t.read.jobEscrow.read.jobs([JOB, requester]))[4]).toBe(300n)
  })

  it('rejects a charge above what remains, and a charge to an unknown job', async () => {
    await t.mined(postCharges([{ specHash: JOB, amount: 300n }]))
    const [left] = await expectRevert(postCharges([{ specHash: JOB, amount: 701n }]), 'InsufficientEscrow')
    expect(left).toBe(700n)
    // Two charges of the same job in one epoch count together.
    await expectRevert(
      postCharges([
        { specHash: JOB, amount: 400n },
        { specHash: JOB, amount: 301n },
      ]),
      'InsufficientEscrow',
    )
    await expectRevert(postCharges([{ specHash: OTHER_JOB, amount: 1n }]), 'UnknownJob')
    // Nor can a charge reach a deposit of the same spec hash by someone else than the named requester.
    await deposit('alice', JOB, 500n, deadline)
    await expectRevert(postCharges([{ specHash: JOB, amount: 701n }]), 'InsufficientEscrow')
    await expectRevert(postCharges([{ specHash: JOB, amount: 1n, requester: t.accounts.bob.address }]), 'UnknownJob')
    await t.mined(postCharges([{ specHash: JOB, amount: 700n }]))
    expect(await t.read.jobEscrow.read.remaining([JOB, requester])).toBe(0n)
  })
})

describe('JobEscrow close and refund', () => {
  it('refuses a refund before close or deadline + settlement: that escrow may be owed to contributors', async () => {
    const [allowedAt] = await expectRevert(t.as('requester').jobEscrow.write.refund([JOB]), 'RefundNotYetAllowed')
    expect(allowedAt).toBe(deadline + BigInt(TEST_PARAMETERS.settlementPeriodSeconds))
    // Past the deadline but inside the settlement period: the coordinator may still charge the last units.
    await t.increaseTime(DAY + 10n)
    await expectRevert(t.as('requester').jobEscrow.write.refund([JOB]), 'RefundNotYetAllowed')
    await t.mined(postCharges([{ specHash: JOB, amount: 250n }]))
    expect(await t.balanceOf(t.contracts.rewardDistributor)).toBe(250n)
  })

  it('lets only the coordinator close, once', async () => {
    const [account, role] = await expectRevert(t.as('requester').jobEscrow.write.close([JOB, requester]), 'AccessControlUnauthorizedAccount')
    expect([account, role]).toEqual([t.accounts.requester.address, ROLES.COORDINATOR_ROLE])
    await expectRevert(t.as('coordinator').jobEscrow.write.close([OTHER_JOB, requester]), 'UnknownJob')
    await expectRevert(t.as('coordinator').jobEscrow.write.close([JOB, t.accounts.alice.address]), 'UnknownJob')
    await t.mined(t.as('coordinator').jobEscrow.write.close([JOB, requester]))
    expect((await t.read.jobEscrow.read.jobs([JOB, requester]))[1]).toBe(true)
    await expectRevert(t.as('coordinator').jobEscrow.write.close([JOB, requester]), 'JobAlreadyClosed')
    await expectRevert(deposit('requester', JOB, 1n, deadline), 'JobAlreadyClosed')
  })

  it('after close, refunds exactly deposited − charged, once, and refuses later charges', async () => {
    await t.mined(postCharges([{ specHash: JOB, amount: 375n }]))
    await t.mined(t.as('coordinator').jobEscrow.write.close([JOB, requester]))
    // Another address has no escrow here: refund only ever reaches the sender's own.
    await expectRevert(t.as('alice').jobEscrow.write.refund([JOB]), 'UnknownJob')

    await t.mined(t.as('requester').jobEscrow.write.refund([JOB]))
    expect(await t.balanceOf(t.accounts.requester.address)).toBe(625n)
    expect(await t.balanceOf(t.contracts.jobEscrow)).toBe(0n)
    expect(await t.read.jobEscrow.read.remaining([JOB, requester])).toBe(0n)
    expect(await t.read.jobEscrow.read.jobs([JOB, requester])).toEqual([deadline, true, true, 1_000n, 375n])

    await expectRevert(t.as('requester').jobEscrow.write.refund([JOB]), 'AlreadyRefunded')
    await expectRevert(postCharges([{ specHash: JOB, amount: 1n }]), 'AlreadyRefunded')
    await expectRevert(deposit('requester', JOB, 1n, deadline), 'AlreadyRefunded')
    expect(await t.balanceOf(t.accounts.requester.address)).toBe(625n + 1n) // the minted 1, not deposited
  })

  it('allows a refund without close once deadline + settlement period has passed', async () => {
    await t.mined(postCharges([{ specHash: JOB, amount: 100n }]))
    await t.increaseTime(DAY + BigInt(TEST_PARAMETERS.settlementPeriodSeconds))
    await t.mined(t.as('requester').jobEscrow.write.refund([JOB]))
    expect(await t.balanceOf(t.accounts.requester.address)).toBe(900n)
    const [log] = await t.read.jobEscrow.getEvents.Refunded({ specHash: JOB }, { fromBlock: 0n })
    expect(log?.args).toEqual({ specHash: JOB, requester: t.accounts.requester.address, amount: 900n })
  })

  it('treats a deadline near 2^64 as refundable only after close, without overflowing', async () => {
    const max = 2n ** 64n - 1n
    await deposit('requester', OTHER_JOB, 10n, max)
    expect(await expectRevert(t.as('requester').jobEscrow.write.refund([OTHER_JOB]), 'RefundNotYetAllowed')).toEqual([max])
    await t.mined(t.as('coordinator').jobEscrow.write.close([OTHER_JOB, requester]))
    await t.mined(t.as('requester').jobEscrow.write.refund([OTHER_JOB]))
    expect(await t.balanceOf(t.accounts.requester.address)).toBe(10n)
  })

  it('still charges a closed job until it is refunded (a final epoch posted after close)', async () => {
    await t.mined(t.as('coordinator').jobEscrow.write.close([JOB, requester]))
    await t.mined(postCharges([{ specHash: JOB, amount: 1_000n }]))
    await t.mined(t.as('requester').jobEscrow.write.refund([JOB]))
    expect(await t.balanceOf(t.accounts.requester.address)).toBe(0n)
  })
})
