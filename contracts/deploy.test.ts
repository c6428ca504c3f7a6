import { keccak256, toHex, zeroAddress, type Address } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { contractAddressesSchema } from '../src/protocol/chain.ts'
import { contractsOf, DEFAULT_DEPLOY_PARAMETERS, deployTabTrain, DeploymentError, ROLES } from './deploy.ts'
import { expectRevert, startTestChain, TEST_PARAMETERS, type TestChain } from './testing.ts'

let t: TestChain

beforeAll(async () => {
  t = await startTestChain()
})
afterAll(() => t?.stop())

const base = () => ({
  walletClient: t.wallets.deployer,
  publicClient: t.publicClient,
  admin: t.accounts.deployer.address,
  coordinator: t.accounts.coordinator.address,
  treasury: t.accounts.treasury.address,
  ...TEST_PARAMETERS,
})

describe('deployTabTrain', () => {
  it('records chain, deployer, first block and valid addresses', async () => {
    const { deployment } = t
    expect(deployment.chainId).toBe(31337)
    expect(deployment.deployer).toBe(t.accounts.deployer.address)
    expect(contractAddressesSchema.parse(deployment.contracts)).toEqual(deployment.contracts)
    const firstDeploy = await t.publicClient.getBlock({ blockNumber: deployment.blockNumber, includeTransactions: true })
    expect(firstDeploy.transactions[0]?.to).toBeNull()
    for (const address of Object.values(deployment.contracts)) {
      expect((await t.publicClient.getCode({ address }))?.length).toBeGreaterThan(2)
    }
  })

  it('wires the contracts and parameters together', async () => {
    const { read, contracts } = t
    expect(await read.token.read.owner()).toBe(t.accounts.deployer.address)
    expect(await read.stakeManager.read.token()).toBe(contracts.token)
    expect(await read.stakeManager.read.treasury()).toBe(t.accounts.treasury.address)
    expect(await read.stakeManager.read.unstakeDelay()).toBe(BigInt(TEST_PARAMETERS.unstakeDelaySeconds))
    expect(await read.jobEscrow.read.token()).toBe(contracts.token)
    expect(await read.jobEscrow.read.settlementPeriod()).toBe(BigInt(TEST_PARAMETERS.settlementPeriodSeconds))
    expect(await read.rewardDistributor.read.token()).toBe(contracts.token)
    expect(await read.rewardDistributor.read.escrow()).toBe(contracts.jobEscrow)
    expect(await read.rewardDistributor.read.treasury()).toBe(t.accounts.treasury.address)
    expect(await read.rewardDistributor.read.challengeWindow()).toBe(BigInt(TEST_PARAMETERS.challengeWindowSeconds))
    expect(await read.disputeResolver.read.stakes()).toBe(contracts.stakeManager)
    expect(await read.disputeResolver.read.distributor()).toBe(contracts.rewardDistributor)
    expect(await read.disputeResolver.read.slashBps()).toBe(TEST_PARAMETERS.slashBps)
    expect(await read.disputeResolver.read.reporterBps()).toBe(TEST_PARAMETERS.reporterBps)
  })

  it('grants each operational role to exactly its holder', async () => {
    const { read, contracts, accounts } = t
    const holders: [string, { read: { hasRole: (args: readonly [`0x${string}`, Address]) => Promise<boolean> } }, `0x${string}`, Address][] = [
      ['escrow CHARGER', read.jobEscrow, ROLES.CHARGER_ROLE, contracts.rewardDistributor],
      ['escrow COORDINATOR', read.jobEscrow, ROLES.COORDINATOR_ROLE, accounts.coordinator.address],
      ['distributor POSTER', read.rewardDistributor, ROLES.POSTER_ROLE, accounts.coordinator.address],
      ['distributor FREEZER', read.rewardDistributor, ROLES.FREEZER_ROLE, contracts.disputeResolver],
      ['stakes SLASHER', read.stakeManager, ROLES.SLASHER_ROLE, contracts.disputeResolver],
      ['resolver REFEREE', read.disputeResolver, ROLES.REFEREE_ROLE, accounts.coordinator.address],
    ]
    const everyone = [...Object.values(accounts).map((a) => a.address), ...Object.values(contracts)]
    for (const [what, contract, role, holder] of holders) {
      for (const address of everyone) {
        expect(await contract.read.hasRole([role, address]), `${what} for ${address}`).toBe(address === holder)
      }
    }
    expect(keccak256(toHex('SLASHER_ROLE'))).toBe(await read.stakeManager.read.SLASHER_ROLE())
    expect(ROLES.REFEREE_ROLE).toBe(await read.disputeResolver.read.REFEREE_ROLE())
  })

  it('keeps unauthorised addresses away from charge, postRoot, sweepFrozen, freeze, slash, close and postVerdict', async () => {
    const job = keccak256(toHex('job'))
    const victim = t.accounts.alice.address
    // The deployer is the admin, which can grant roles but holds none of them itself.
    for (const name of ['outsider', 'deployer', 'alice'] as const) {
      const c = t.as(name)
      await expectRevert(c.jobEscrow.write.charge([job, victim, 1n]), 'AccessControlUnauthorizedAccount')
      await expectRevert(c.jobEscrow.write.close([job, victim]), 'AccessControlUnauthorizedAccount')
      await expectRevert(c.rewardDistributor.write.postRoot([1n, job, job, 0n, []]), 'AccessControlUnauthorizedAccount')
      await expectRevert(c.rewardDistributor.write.sweepFrozen([1n, victim, 1n, []]), 'AccessControlUnauthorizedAccount')
      await expectRevert(c.rewardDistributor.write.freeze([victim]), 'AccessControlUnauthorizedAccount')
      await expectRevert(c.stakeManager.write.slash([victim, 10_000, t.accounts[name].address, 10_000]), 'AccessControlUnauthorizedAccount')
    }
    // The coordinator posts and referees but cannot slash or freeze directly, bypassing the resolver's evidence checks.
    await expectRevert(t.as('coordinator').stakeManager.write.slash([victim, 10_000, t.accounts.coordinator.address, 10_000]), 'AccessControlUnauthorizedAccount')
    await expectRevert(t.as('coordinator').rewardDistributor.write.freeze([victim]), 'AccessControlUnauthorizedAccount')
    await expectRevert(t.as('coordinator').jobEscrow.write.charge([job, victim, 1n]), 'AccessControlUnauthorizedAccount')
    // Only the admin grants roles.
    await expectRevert(t.as('coordinator').stakeManager.write.grantRole([ROLES.SLASHER_ROLE, t.accounts.coordinator.address]), 'AccessControlUnauthorizedAccount')
  })

  it('hands the admin role over when the admin is not the deployer', async () => {
    const deployment = await deployTabTrain({ ...base(), admin: t.accounts.carol.address })
    const c = contractsOf(deployment, t.publicClient)
    for (const contract of [c.stakeManager, c.jobEscrow, c.rewardDistributor, c.disputeResolver]) {
      expect(await contract.read.hasRole([ROLES.DEFAULT_ADMIN_ROLE, t.accounts.carol.address])).toBe(true)
      expect(await contract.read.hasRole([ROLES.DEFAULT_ADMIN_ROLE, t.accounts.deployer.address])).toBe(false)
    }
    expect(await c.jobEscrow.read.hasRole([ROLES.CHARGER_ROLE, deployment.contracts.rewardDistributor])).toBe(true)
  })

  it('throws DeploymentError for a reverting constructor or invalid parameters', async () => {
    await expect(deployTabTrain({ ...base(), treasury: zeroAddress })).rejects.toThrow(DeploymentError)
    await expect(deployTabTrain({ ...base(), treasury: zeroAddress })).rejects.toThrow(/deploying stakeManager failed/)
    await expect(deployTabTrain({ ...base(), slashBps: 10_001 })).rejects.toThrow(DeploymentError)
    await expect(deployTabTrain({ ...base(), unstakeDelaySeconds: 10, challengeWindowSeconds: 11 })).rejects.toThrow(/at least challengeWindowSeconds/)
  })

  it('has defaults whose unstake delay covers the challenge window', () => {
    expect(DEFAULT_DEPLOY_PARAMETERS.unstakeDelaySeconds).toBeGreaterThanOrEqual(DEFAULT_DEPLOY_PARAMETERS.challengeWindowSeconds)
    expect(DEFAULT_DEPLOY_PARAMETERS.slashBps).toBe(5_000)
    expect(DEFAULT_DEPLOY_PARAMETERS.reporterBps).toBe(1_000)
  })
})
