import { createPublicClient, defineChain, http, type Address, type Chain, type Hex } from 'viem'
import { rewardDistributorAbi, stakeManagerAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import type { ChainInfo } from '../../src/protocol/index.ts'

/** The viem chain for the coordinator's settlement chain; wallets are asked to add exactly this. */
export function viemChain(chain: ChainInfo): Chain {
  return defineChain({
    id: chain.chainId,
    name: chain.faucet ? `TabTrain local chain ${chain.chainId}` : `Chain ${chain.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [chain.rpcUrl] } },
  })
}

export interface StakeState {
  active: bigint
  pending: bigint
  /** Unix seconds at which the pending unstake can be withdrawn; 0 when nothing is pending. */
  unlockAt: number
}

export interface EpochOnChain {
  root: Hex
  totalCumulative: bigint
  postedAt: number
  claimableAt: number
}

export type ChainReader = ReturnType<typeof createChainReader>

/** Typed reads of the settlement contracts, straight from the chain's RPC rather than through any wallet. */
export function createChainReader(chain: ChainInfo) {
  const publicClient = createPublicClient({ chain: viemChain(chain), transport: http(chain.rpcUrl) })
  const { token, stakeManager, rewardDistributor } = chain.contracts
  return {
    chain,
    publicClient,
    tokenBalance: (account: Address) => publicClient.readContract({ address: token, abi: tabTokenAbi, functionName: 'balanceOf', args: [account] }),
    allowance: (owner: Address, spender: Address) =>
      publicClient.readContract({ address: token, abi: tabTokenAbi, functionName: 'allowance', args: [owner, spender] }),
    ethBalance: (account: Address) => publicClient.getBalance({ address: account }),
    async stakeOf(account: Address): Promise<StakeState> {
      const [active, pending, unlockAt] = await publicClient.readContract({
        address: stakeManager,
        abi: stakeManagerAbi,
        functionName: 'stakeOf',
        args: [account],
      })
      return { active, pending, unlockAt: Number(unlockAt) }
    },
    claimed: (account: Address) => publicClient.readContract({ address: rewardDistributor, abi: rewardDistributorAbi, functionName: 'claimed', args: [account] }),
    /** Unix seconds from which the account's rewards in later-claimable roots are frozen; 0 when not frozen. */
    async frozenAt(account: Address): Promise<number> {
      return Number(await publicClient.readContract({ address: rewardDistributor, abi: rewardDistributorAbi, functionName: 'frozenAt', args: [account] }))
    },
    async epoch(epoch: number): Promise<EpochOnChain> {
      const [root, totalCumulative, postedAt, claimableAt] = await publicClient.readContract({
        address: rewardDistributor,
        abi: rewardDistributorAbi,
        functionName: 'epochs',
        args: [BigInt(epoch)],
      })
      return { root, totalCumulative, postedAt: Number(postedAt), claimableAt: Number(claimableAt) }
    },
    /** The chain's own clock: challenge windows and unstake delays run on it, not on the browser's. */
    async latestBlockTime(): Promise<number> {
      return Number((await publicClient.getBlock({ blockTag: 'latest' })).timestamp)
    },
  }
}
