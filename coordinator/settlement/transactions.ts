import { EventEmitter } from 'node:events'
import {
  BaseError,
  ContractFunctionRevertedError,
  decodeErrorResult,
  defineChain,
  type Abi,
  type Account,
  type Chain,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
  type Transport,
  type WalletClient,
} from 'viem'
import { disputeResolverAbi, jobEscrowAbi, rewardDistributorAbi, stakeManagerAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import type { ChainInfo } from '../../src/protocol/index.ts'
import type { Database } from '../db.ts'

/** A transaction the coordinator sent was mined but reverted, or never got a receipt. */
export class ChainTransactionError extends Error {
  override name = 'ChainTransactionError'
  constructor(
    readonly label: string,
    readonly txHash: Hex | null,
    message: string,
  ) {
    super(message)
  }
}

export type CoordinatorWallet = WalletClient<Transport, Chain, Account>

/**
 * What every settlement service that reads and writes the chain is built with: the store, the chain and
 * its contracts, the coordinator's transaction queue, and the clock and log (injectable for tests).
 */
export interface ChainServiceOptions {
  db: Database
  publicClient: PublicClient
  transactions: TransactionQueue
  chain: ChainInfo
  now?: () => number
  log?: (message: string) => void
}

/** A viem chain object for a chain known only by id and RPC URL (anvil, a testnet, an L2). */
export function chainFromRpc(chainId: number, rpcUrl: string): Chain {
  return defineChain({
    id: chainId,
    name: chainId === 31337 ? 'Anvil (local)' : `Chain ${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  })
}

/**
 * Every transaction the coordinator's account sends goes through one queue: epoch roots, escrow
 * closes and faucet grants would otherwise race for the same nonce. `onSent` runs with the hash before
 * the receipt is awaited, so a caller can record the hash first and find the transaction again after a
 * crash.
 */
export class TransactionQueue {
  private tail: Promise<unknown> = Promise.resolve()
  /** `outcome` (label, 'sent' | 'mined' | 'failed') for each transaction: what metrics count (coordinator/ops/metrics.ts). */
  readonly outcomes = new EventEmitter()

  constructor(
    readonly publicClient: PublicClient,
    readonly wallet: CoordinatorWallet,
  ) {}

  send(label: string, send: () => Promise<Hex>, onSent?: (hash: Hex) => Promise<void>): Promise<TransactionReceipt> {
    const run = async () => {
      const hash = await send()
      this.outcomes.emit('outcome', label, 'sent')
      await onSent?.(hash)
      let receipt: TransactionReceipt
      try {
        receipt = await this.publicClient.waitForTransactionReceipt({ hash, timeout: 60_000 })
      } catch (error) {
        throw new ChainTransactionError(label, hash, `${label}: no receipt for ${hash}: ${(error as Error).message}`)
      }
      if (receipt.status !== 'success') throw new ChainTransactionError(label, hash, `${label}: transaction ${hash} reverted`)
      return receipt
    }
    const observed = () =>
      run().then(
        (receipt) => {
          this.outcomes.emit('outcome', label, 'mined')
          return receipt
        },
        (error: unknown) => {
          this.outcomes.emit('outcome', label, 'failed')
          throw error
        },
      )
    const result = this.tail.then(observed, observed)
    this.tail = result.catch(() => {})
    return result
  }
}

/** Every custom error of TabTrain's contracts: a revert bubbled up from a nested call (the escrow under postRoot) decodes too. */
const ALL_ERRORS = [...tabTokenAbi, ...stakeManagerAbi, ...jobEscrowAbi, ...rewardDistributorAbi, ...disputeResolverAbi].filter(
  (entry) => entry.type === 'error',
) as Abi

/** The custom error a call or its gas estimate reverted with, decoded against every TabTrain ABI; undefined for anything else. */
export function revertOf(error: unknown): { errorName: string; args: readonly unknown[] } | undefined {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined
  if (reverted.raw) {
    try {
      const decoded = decodeErrorResult({ abi: ALL_ERRORS, data: reverted.raw })
      return { errorName: decoded.errorName, args: decoded.args ?? [] }
    } catch {
      // not one of ours: fall through to what viem decoded itself
    }
  }
  if (reverted.data?.errorName) return { errorName: reverted.data.errorName, args: reverted.data.args ?? [] }
  return undefined
}
