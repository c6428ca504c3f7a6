import { parseEther, type Address } from 'viem'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ROLES } from './deploy.ts'
import { expectRevert, startTestChain, TEST_PARAMETERS, type AccountName, type TestChain } from './testing.ts'

let t: TestChain

async function stakeFor(name: AccountName, amount: bigint) {
  await t.mined(t.as('deployer').token.write.mint([t.accounts[name].address, amount]))
  await t.mined(t.as(name).token.write.approve([t.contracts.stakeManager, amount]))
  await t.mined(t.as(name).stakeManager.write.stake([amount]))
}

beforeAll(async () => {
  t = await startTestChain()
  await t.saveBaseline()
})
afterAll(() => t?.stop())
beforeEach(() => t.restoreBaseline())

describe('TabToken', () => {
  it('has the test token metadata', async () => {
    expect(await t.read.token.read.name()).toBe('TabTrain Test Token')
    expect(await t.read.token.read.symbol()).toBe('TTT')
    expect(await t.read.token.read.decimals()).toBe(18)
    expect(await t.read.token.read.owner()).toBe(t.accounts.deployer.address)
  })

  it('mints for its owner only', async () => {
    await t.mined(t.as('deployer').token.write.mint([t.accounts.alice.address, 5n]))
    expect(await t.balanceOf(t.accounts.alice.address)).toBe(5n)
    const [caller] = await expectRevert(t.as('alice').token.write.mint([t.accounts.alice.address, 5n]), 'OwnableUnauthorizedAccount')
    expect(caller).toBe(t.accounts.alice.address)
    expect(await t.read.token.read.totalSupply()).toBe(5n)
  })
})

describe('StakeManager', () => {
  it('stakes, requests an unstake, refuses an early withdrawal and pays after the delay', async () => {
    const alice = t.accounts.alice.address
    await stakeFor('alice', parseEther('100'))
    expect(await t.read.stakeManager.read.stakeOf([alice])).toEqual([parseEther('100'), 0n, 0n])
    expect(await t.balanceOf(t.contracts.stakeManager)).toBe(parseEther('100'))

    const receipt = await t.mined(t.as('alice').stakeManager.write.requestUnstake([parseEther('40')]))
    const requestedAt = (await t.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    const unlockAt = requestedAt + BigInt(TEST_PARAMETERS.unstakeDelaySeconds)
    expect(await t.read.stakeManager.read.stakeOf([alice])).toEqual([parseEther('60'), parseEther('40'), unlockAt])

    const [lockedUntil] = await expectRevert(t.as('alice').stakeManager.write.withdraw(), 'UnstakeLocked')
    expect(lockedUntil).toBe(unlockAt)

    await t.increaseTime(TEST_PARAMETERS.unstakeDelaySeconds)
    await t.mined(t.as('alice').stakeManager.write.withdraw())
    expect(await t.balanceOf(alice)).toBe(parseEther('40'))
    expect(await t.read.stakeManager.read.stakeOf([alice])).toEqual([parseEther('60'), 0n, 0n])
    expect(await t.balanceOf(t.contracts.stakeManager)).toBe(parseEther('60'))
    await expectRevert(t.as('alice').stakeManager.write.withdraw(), 'NothingToWithdraw')
  })

  it('restarts the delay for everything pending when another unstake is requested', async () => {
    const alice = t.accounts.alice.address
    await stakeFor('alice', 100n)
    await t.mined(t.as('alice').stakeManager.write.requestUnstake([10n]))
    await t.increaseTime(TEST_PARAMETERS.unstakeDelaySeconds - 100)
    const receipt = await t.mined(t.as('alice').stakeManager.write.requestUnstake([15n]))
    const second = (await t.publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp
    expect(await t.read.stakeManager.read.stakeOf([alice])).toEqual([75n, 25n, second + BigInt(TEST_PARAMETERS.unstakeDelaySeconds)])

    // The first request's delay has passed, but it was restarted.
    await t.increaseTime(200)
    await expectRevert(t.as('alice').stakeManager.write.withdraw(), 'UnstakeLocked')
    await t.increaseTime(TEST_PARAMETERS.unstakeDelaySeconds)
    await t.mined(t.as('alice').stakeManager.write.withdraw())
    expect(await t.balanceOf(alice)).toBe(25n)
  })

  it('rejects zero amounts and unstaking more than is active', async () => {
    await stakeFor('alice', 100n)
    await expectRevert(t.as('alice').stakeManager.write.stake([0n]), 'ZeroAmount')
    await expectRevert(t.as('alice').stakeManager.write.requestUnstake([0n]), 'ZeroAmount')
    const [active] = await expectRevert(t.as('alice').stakeManager.write.requestUnstake([101n]), 'InsufficientStake')
    expect(active).toBe(100n)
    await t.mined(t.as('alice').stakeManager.write.requestUnstake([60n]))
    // Pending stake is no longer active: it cannot be requested twice.
    await expectRevert(t.as('alice').stakeManager.write.requestUnstake([41n]), 'InsufficientStake')
    // Staking without an allowance fails in the token.
    await t.mined(t.as('deployer').token.write.mint([t.accounts.bob.address, 10n]))
    await expectRevert(t.as('bob').stakeManager.write.stake([10n]), 'ERC20InsufficientAllowance')
  })

  it('stakes for another account with the sender\'s tokens: the account owns the stake, the sender cannot take it back', async () => {
    // A new burner wallet: no gas, no tokens. The local faucet (here bob) stakes the minimum for it.
    const burner = '0x000000000000000000000000000000000000bEEF'
    await t.mined(t.as('deployer').token.write.mint([t.accounts.bob.address, 30n]))
    await t.mined(t.as('bob').token.write.approve([t.contracts.stakeManager, 30n]))
    const receipt = await t.mined(t.as('bob').stakeManager.write.stakeFor([burner, 20n]))
    expect(await t.read.stakeManager.read.stakeOf([burner])).toEqual([20n, 0n, 0n])
    expect(await t.read.stakeManager.read.slashableOf([burner])).toBe(20n)
    expect(await t.read.stakeManager.read.stakeOf([t.accounts.bob.address])).toEqual([0n, 0n, 0n])
    expect(await t.balanceOf(t.accounts.bob.address)).toBe(10n)
    const [log] = await t.read.stakeManager.getEvents.Staked({ account: burner }, { blockHash: receipt.blockHash })
    expect(log?.args).toEqual({ account: burner, amount: 20n })
    // Adds to what the account staked itself; pending stake counts as slashable too.
    await stakeFor('alice', 5n)
    await t.mined(t.as('bob').stakeManager.write.stakeFor([t.accounts.alice.address, 10n]))
    await t.mined(t.as('alice').stakeManager.write.requestUnstake([6n]))
    expect(await t.read.stakeManager.read.slashableOf([t.accounts.alice.address])).toBe(15n)
    await expectRevert(t.as('bob').stakeManager.write.requestUnstake([1n]), 'InsufficientStake')
    await expectRevert(t.as('bob').stakeManager.write.stakeFor(['0x0000000000000000000000000000000000000000', 1n]), 'ZeroAddress')
    await expectRevert(t.as('bob').stakeManager.write.stakeFor([burner, 0n]), 'ZeroAmount')
    await expectRevert(t.as('bob').stakeManager.write.stakeFor([burner, 1n]), 'ERC20InsufficientAllowance')
  })

  describe('slash', () => {
    let slasher: Address
    beforeEach(async () => {
      // The resolver holds SLASHER_ROLE in a deployment; an EOA gets it here to test the arithmetic alone.
      slasher = t.accounts.carol.address
      await t.mined(t.as('deployer').stakeManager.write.grantRole([ROLES.SLASHER_ROLE, slasher]))
    })

    it('takes slashBps of active + pending, pending first, and splits it between reporter and treasury', async () => {
      const alice = t.accounts.alice.address
      await stakeFor('alice', 1_000n)
      await t.mined(t.as('alice').stakeManager.write.requestUnstake([300n]))
      const treasuryBefore = await t.balanceOf(t.accounts.treasury.address)

      // 50% of 1000 = 500: all 300 pending, then 200 of the active 700. Reporter: 10% of 500.
      const slashed = await t.as('carol').stakeManager.simulate.slash([alice, 5_000, t.accounts.reporter.address, 1_000], { account: t.accounts.carol })
      expect(slashed.result).toBe(500n)
      await t.mined(t.as('carol').stakeManager.write.slash([alice, 5_000, t.accounts.reporter.address, 1_000]))
      const [active, pending] = await t.read.stakeManager.read.stakeOf([alice])
      expect([active, pending]).toEqual([500n, 0n])
      expect(await t.balanceOf(t.accounts.reporter.address)).toBe(50n)
      expect((await t.balanceOf(t.accounts.treasury.address)) - treasuryBefore).toBe(450n)
      expect(await t.balanceOf(t.contracts.stakeManager)).toBe(500n)
      await t.increaseTime(TEST_PARAMETERS.unstakeDelaySeconds)
      await expectRevert(t.as('alice').stakeManager.write.withdraw(), 'NothingToWithdraw')
    })

    it('rounds down, sends everything to the treasury without a reporter, and slashes nothing from an empty stake', async () => {
      const alice = t.accounts.alice.address
      await stakeFor('alice', 999n)
      await t.mined(t.as('alice').stakeManager.write.requestUnstake([900n]))
      await t.mined(t.as('carol').stakeManager.write.slash([alice, 3_333, '0x0000000000000000000000000000000000000000', 1_000]))
      // floor(999 * 0.3333) = 332, taken from the 900 pending.
      expect((await t.read.stakeManager.read.stakeOf([alice])).slice(0, 2)).toEqual([99n, 568n])
      expect(await t.balanceOf(t.accounts.treasury.address)).toBe(332n)

      await t.mined(t.as('carol').stakeManager.write.slash([t.accounts.bob.address, 5_000, t.accounts.reporter.address, 1_000]))
      expect(await t.balanceOf(t.accounts.reporter.address)).toBe(0n)
    })

    it('rejects basis points above 10000', async () => {
      await expectRevert(t.as('carol').stakeManager.write.slash([t.accounts.alice.address, 10_001, t.accounts.reporter.address, 0]), 'InvalidBps')
      await expectRevert(t.as('carol').stakeManager.write.slash([t.accounts.alice.address, 100, t.accounts.reporter.address, 10_001]), 'InvalidBps')
    })
  })
})
