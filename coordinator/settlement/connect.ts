import { join } from 'node:path'
import { createPublicClient, createWalletClient, http, type Hex, type PublicClient } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import type { ChainInfo, Hash, PaymentTerms } from '../../src/protocol/index.ts'
import type { ChainConfig } from '../config.ts'
import { readChainInfo } from './chainInfo.ts'
import { FAUCET_ETHER, FAUCET_STAKE, FAUCET_TOKENS, startLocalChain } from './localChain.ts'
import { chainFromRpc, TransactionQueue } from './transactions.ts'

export interface ConnectedChain {
  chain: ChainInfo
  publicClient: PublicClient
  transactions: TransactionQueue
  /** Scopes everything the store derives from this chain (see the settlement migration). */
  deployment: string
  fromBlock: bigint
  faucet?: { ether: bigint; tokens: bigint; stake: bigint }
  /** Local chain only: escrows a job's budget from the local requester account. */
  fundJob?: (jobId: Hash, payment: PaymentTerms) => Promise<Hex | null>
  stop(): Promise<void>
}

/** Starts the local chain or connects to the configured one; null when settlement is off. */
export async function connectChain(config: ChainConfig, dataDir: string, log: (message: string) => void): Promise<ConnectedChain | null> {
  if (config.mode === 'off') return null
  if (config.mode === 'local') {
    const local = await startLocalChain({
      dir: join(dataDir, 'chain'),
      port: config.port,
      challengeWindowSeconds: config.challengeWindowSeconds,
      unstakeDelaySeconds: config.unstakeDelaySeconds,
      log,
    })
    return {
      chain: local.chain,
      publicClient: local.publicClient,
      transactions: local.transactions,
      deployment: `${local.chain.chainId}:${local.chain.contracts.rewardDistributor}:${local.deployment.blockHash}`,
      fromBlock: BigInt(local.deployment.blockNumber),
      faucet: { ether: FAUCET_ETHER, tokens: FAUCET_TOKENS, stake: FAUCET_STAKE },
      fundJob: local.fundJob,
      stop: local.stop,
    }
  }
  const probe = createPublicClient({ transport: http(config.rpcUrl) })
  const chainId = await probe.getChainId()
  const chain = chainFromRpc(chainId, config.rpcUrl)
  const publicClient = createPublicClient({ chain, transport: http(config.rpcUrl), pollingInterval: 1000 }) as PublicClient
  const wallet = createWalletClient({ account: privateKeyToAccount(config.coordinatorKey), chain, transport: http(config.rpcUrl) })
  const info = await readChainInfo(publicClient, { chainId, rpcUrl: config.rpcUrl, contracts: config.contracts, faucet: false })
  log(`chain ${chainId} at ${config.rpcUrl}: coordinator account ${wallet.account.address}`)
  return {
    chain: info,
    publicClient,
    transactions: new TransactionQueue(publicClient, wallet),
    deployment: `${chainId}:${config.contracts.rewardDistributor}:${config.fromBlock}`,
    fromBlock: config.fromBlock,
    async stop() {},
  }
}
