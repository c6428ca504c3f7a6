import { createPublicClient, http, type Hex, type PublicClient, type TransactionReceipt } from 'viem'
import { jobEscrowAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import type { ChainInfo, Hash } from '../../src/protocol/index.ts'
import { chainNow } from './chainTime.ts'
import { viemChain } from './chainClient.ts'
import { transact } from './transactions.ts'
import type { ChainWalletClient } from './wallets.ts'

/**
 * How long an escrow may wait for the coordinator before its requester can take it back unasked: the
 * coordinator closes it (and allows the refund at once) when the job ends or is cancelled; this deadline
 * only matters if the coordinator stops doing so.
 */
export const ESCROW_DEADLINE_SECONDS = 30 * 24 * 3600

/** Simulated against the pending block so a transaction just sent (the approval) is seen by the next. */
const SIMULATE = { blockTag: 'pending' } as const

export interface EscrowStep {
  kind: 'approve' | 'deposit' | 'refund'
  hash: Hex
}

function publicClientFor(chain: ChainInfo): PublicClient {
  return createPublicClient({ chain: viemChain(chain), transport: http(chain.rpcUrl) }) as PublicClient
}

/**
 * Escrows `amount` for the job with id `jobId` (its spec hash) from the wallet: an approval when the
 * escrow contract may not yet take that much, then the deposit. `onSent` hears each transaction's hash
 * as soon as the wallet returns it, before it is mined.
 */
export async function depositToEscrow(
  chain: ChainInfo,
  wallet: ChainWalletClient,
  jobId: Hash,
  amount: bigint,
  onSent: (step: EscrowStep) => void,
): Promise<TransactionReceipt> {
  const publicClient = publicClientFor(chain)
  const { token, jobEscrow } = chain.contracts
  const account = wallet.account
  const allowance = await publicClient.readContract({ address: token, abi: tabTokenAbi, functionName: 'allowance', args: [account.address, jobEscrow] })
  if (allowance < amount) {
    await transact(
      publicClient,
      async () => {
        const { request } = await publicClient.simulateContract({ ...SIMULATE, account, address: token, abi: tabTokenAbi, functionName: 'approve', args: [jobEscrow, amount] })
        return wallet.writeContract(request)
      },
      (hash) => onSent({ kind: 'approve', hash }),
    )
  }
  const now = (await chainNow(chain.rpcUrl)) ?? Math.floor(Date.now() / 1000)
  const deadline = BigInt(now + ESCROW_DEADLINE_SECONDS)
  return transact(
    publicClient,
    async () => {
      const { request } = await publicClient.simulateContract({ ...SIMULATE, account, address: jobEscrow, abi: jobEscrowAbi, functionName: 'deposit', args: [jobId, amount, deadline] })
      return wallet.writeContract(request)
    },
    (hash) => onSent({ kind: 'deposit', hash }),
  )
}

/** Takes back what the job's escrow was not charged; the contract allows it once the coordinator closed the job. */
export async function refundEscrow(chain: ChainInfo, wallet: ChainWalletClient, jobId: Hash, onSent: (step: EscrowStep) => void): Promise<TransactionReceipt> {
  const publicClient = publicClientFor(chain)
  const account = wallet.account
  return transact(
    publicClient,
    async () => {
      const { request } = await publicClient.simulateContract({ ...SIMULATE, account, address: chain.contracts.jobEscrow, abi: jobEscrowAbi, functionName: 'refund', args: [jobId] })
      return wallet.writeContract(request)
    },
    (hash) => onSent({ kind: 'refund', hash }),
  )
}

/** The wallet's token balance, for the line under the wallet picker. */
export async function tokenBalanceOf(chain: ChainInfo, address: Hex): Promise<bigint> {
  return publicClientFor(chain).readContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'balanceOf', args: [address] })
}
