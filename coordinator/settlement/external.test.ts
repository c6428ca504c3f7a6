import { toHex } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestChain, type TestChain } from '../../contracts/testing.ts'
import { CoordinatorClient, CoordinatorRequestError } from '../../src/client/coordinatorClient.ts'
import { DEFAULT_VERIFICATION, signLeaseRequest, type Hash } from '../../src/protocol/index.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'

/**
 * The same coordinator code against a chain it did not start: contracts deployed by someone else, known
 * only by RPC URL and addresses. Nothing is funded for it and there is no faucet.
 */
describe('coordinator on an external chain', () => {
  let chain: TestChain
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient

  /** A lease request signed by `name` for the preset, as a page sends it. */
  const signedBy = async (name: 'alice' | 'bob', jobId: Hash) => {
    const info = await client.info()
    return signLeaseRequest(chain.accounts[name], { jobId, audience: info.coordinatorId, domain: info })
  }

  beforeAll(async () => {
    chain = await startTestChain()
    const key = chain.accounts.coordinator.getHdKey().privateKey!
    coordinator = await startTemporaryCoordinator({
      chain: { mode: 'external', rpcUrl: chain.anvil.rpcUrl, contracts: chain.contracts, coordinatorKey: toHex(key), fromBlock: 0n },
    })
    client = new CoordinatorClient(coordinator.url)
  })

  afterAll(async () => {
    await coordinator?.dispose()
    await chain?.stop()
  })

  it('signs claims for the given DisputeResolver and reads the windows from the contracts', async () => {
    const info = await client.info()
    expect(info.verifyingContract).toBe(chain.contracts.disputeResolver)
    expect(info.chain).toMatchObject({ chainId: 31337, rpcUrl: chain.anvil.rpcUrl, faucet: false, token: { symbol: 'TTT', decimals: 18 } })
    expect(info.chain!.challengeWindowSeconds).toBe(Number(await chain.read.rewardDistributor.read.challengeWindow()))
  })

  it('leaves the paid preset waiting for a real deposit, and has no faucet', async () => {
    const jobId = coordinator.presetJobId as Hash
    expect((await client.job(jobId)).payment).toMatchObject({ status: 'awaiting_deposit', deposited: '0', deposits: [] })
    const response = await client.lease(jobId, await signedBy('alice', jobId))
    expect(response).toMatchObject({ status: 'wait', reason: expect.stringMatching(/escrow deposit/) })
    const error = await client.faucet(chain.accounts.alice.address).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CoordinatorRequestError)
    expect((error as CoordinatorRequestError).code).toBe('faucet_unavailable')
  })

  it("sees a deposit made by the spec's requester on that chain, ignores anyone else's, and starts issuing units to a staked address", async () => {
    const jobId = coordinator.presetJobId as Hash
    const payment = (await client.job(jobId)).payment!
    const budget = BigInt(payment.budget)
    // The preset names the local chain's requester, anvil's account #1: the external chain's "coordinator" account here.
    const named = payment.requester!
    expect(named).toBe(chain.accounts.coordinator.address)
    // Someone else funds the same spec hash first: it is their escrow, not the job's.
    await chain.mined(chain.as('deployer').token.write.mint([chain.accounts.requester.address, budget]))
    await chain.mined(chain.as('requester').token.write.approve([chain.contracts.jobEscrow, budget]))
    await chain.mined(chain.as('requester').jobEscrow.write.deposit([jobId, budget, (await chain.now()) + 86_400n]))
    await coordinator.settlement!.escrow.sync()
    expect(await client.lease(jobId, await signedBy('alice', jobId))).toMatchObject({ status: 'wait', reason: expect.stringMatching(/escrow deposit/) })
    expect((await client.job(jobId)).payment).toMatchObject({ status: 'awaiting_deposit', deposited: '0', deposits: [] })

    await chain.mined(chain.as('deployer').token.write.mint([named, budget]))
    await chain.mined(chain.as('coordinator').token.write.approve([chain.contracts.jobEscrow, budget]))
    const deposit = await chain.mined(chain.as('coordinator').jobEscrow.write.deposit([jobId, budget, (await chain.now()) + 86_400n]))
    await coordinator.settlement!.escrow.sync()
    // A paid job leases only to an address with the minimum stake at risk.
    const minStake = BigInt(DEFAULT_VERIFICATION.minStake)
    await chain.mined(chain.as('deployer').token.write.mint([chain.accounts.deployer.address, minStake]))
    await chain.mined(chain.as('deployer').token.write.approve([chain.contracts.stakeManager, minStake]))
    await chain.mined(chain.as('deployer').stakeManager.write.stakeFor([chain.accounts.alice.address, minStake]))
    expect((await client.lease(jobId, await signedBy('alice', jobId))).status).toBe('leased')
    expect((await client.job(jobId)).payment).toMatchObject({
      status: 'funded',
      requester: named,
      deposits: [expect.objectContaining({ txHash: deposit.transactionHash, amount: String(budget) })],
    })
  })
})
