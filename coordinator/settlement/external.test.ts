import { toHex } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestChain, type TestChain } from '../../contracts/testing.ts'
import { CoordinatorClient, CoordinatorRequestError } from '../../src/client/coordinatorClient.ts'
import type { Hash } from '../../src/protocol/index.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'

/**
 * The same coordinator code against a chain it did not start: contracts deployed by someone else, known
 * only by RPC URL and addresses. Nothing is funded for it and there is no faucet.
 */
describe('coordinator on an external chain', () => {
  let chain: TestChain
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient

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
    const response = await client.lease(jobId, chain.accounts.alice.address)
    expect(response).toMatchObject({ status: 'wait', reason: expect.stringMatching(/escrow deposit/) })
    const error = await client.faucet(chain.accounts.alice.address).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CoordinatorRequestError)
    expect((error as CoordinatorRequestError).code).toBe('faucet_unavailable')
  })

  it('sees a deposit made by the requester on that chain and starts issuing units', async () => {
    const jobId = coordinator.presetJobId as Hash
    const budget = BigInt((await client.job(jobId)).payment!.budget)
    await chain.mined(chain.as('deployer').token.write.mint([chain.accounts.requester.address, budget]))
    await chain.mined(chain.as('requester').token.write.approve([chain.contracts.jobEscrow, budget]))
    const deadline = (await chain.now()) + 86_400n
    const deposit = await chain.mined(chain.as('requester').jobEscrow.write.deposit([jobId, budget, deadline]))
    await coordinator.settlement!.escrow.sync()
    expect((await client.lease(jobId, chain.accounts.alice.address)).status).toBe('leased')
    expect((await client.job(jobId)).payment).toMatchObject({
      status: 'funded',
      requester: chain.accounts.requester.address,
      deposits: [expect.objectContaining({ txHash: deposit.transactionHash, amount: String(budget) })],
    })
  })
})
