import type { PublicClient } from 'viem'
import { rewardDistributorAbi, stakeManagerAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import type { ChainInfo, ContractAddresses } from '../../src/protocol/index.ts'

/** What the site needs to know about a deployment, read from the contracts themselves rather than configured twice. */
export async function readChainInfo(
  client: PublicClient,
  base: { chainId: number; rpcUrl: string; contracts: ContractAddresses; faucet: boolean },
): Promise<ChainInfo> {
  const { contracts } = base
  const [chainId, challengeWindow, unstakeDelay, symbol, decimals] = await Promise.all([
    client.getChainId(),
    client.readContract({ address: contracts.rewardDistributor, abi: rewardDistributorAbi, functionName: 'challengeWindow' }),
    client.readContract({ address: contracts.stakeManager, abi: stakeManagerAbi, functionName: 'unstakeDelay' }),
    client.readContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'symbol' }),
    client.readContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'decimals' }),
  ])
  if (chainId !== base.chainId) throw new Error(`the RPC at ${base.rpcUrl} serves chain ${chainId}, expected ${base.chainId}`)
  return {
    ...base,
    challengeWindowSeconds: Number(challengeWindow),
    unstakeDelaySeconds: Number(unstakeDelay),
    token: { symbol, decimals },
  }
}
