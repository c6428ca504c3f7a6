import {
  BaseError,
  ContractFunctionRevertedError,
  InsufficientFundsError,
  UserRejectedRequestError,
  type Abi,
  type Address,
  type ContractFunctionArgs,
  type ContractFunctionName,
  type Hex,
  type PublicClient,
  type SimulateContractParameters,
  type TransactionReceipt,
} from 'viem'
import { WalletError, type ChainWalletClient } from './wallets.ts'
import { formatToken, formatWhen, type TokenFormat } from './amounts.ts'

/** A transaction that was mined but reverted (the simulation before it passed, the chain moved meanwhile). */
export class TransactionRevertedError extends Error {
  override name = 'TransactionRevertedError'
  constructor(readonly hash: Hex) {
    super(`Transaction ${hash} was mined but reverted.`)
  }
}

/**
 * Sends one transaction and waits for it to be mined. `send` simulates first (so a revert comes back
 * decoded, before any gas is spent) and then writes; `onSent` hears the hash as soon as there is one.
 */
export async function transact(publicClient: PublicClient, send: () => Promise<Hex>, onSent?: (hash: Hex) => void): Promise<TransactionReceipt> {
  const hash = await send()
  onSent?.(hash)
  const receipt = await publicClient.waitForTransactionReceipt({ hash })
  if (receipt.status !== 'success') throw new TransactionRevertedError(hash)
  return receipt
}

/**
 * Simulations run on the pending block: the contracts check block.timestamp (challenge windows, unstake
 * delays), and an idle chain's latest block keeps an old time that the transaction's own block will not have.
 */
const SIMULATE = { blockTag: 'pending' } as const

type Writable = 'nonpayable' | 'payable'

/** One contract function call, typed by its ABI: what `sendContractTransaction` simulates and sends. */
export interface ContractCall<
  abi extends Abi,
  functionName extends ContractFunctionName<abi, Writable>,
  args extends ContractFunctionArgs<abi, Writable, functionName>,
> {
  address: Address
  abi: abi
  functionName: functionName
  args?: args
}

/**
 * The one way the pages send a contract transaction: simulated on the pending block from the wallet's
 * account (a revert comes back decoded, before the wallet asks anything), written through the wallet,
 * then waited for. `onSent` hears the hash as soon as the wallet gives it.
 */
export function sendContractTransaction<
  const abi extends Abi,
  functionName extends ContractFunctionName<abi, Writable>,
  const args extends ContractFunctionArgs<abi, Writable, functionName>,
>(
  publicClient: PublicClient,
  walletClient: ChainWalletClient,
  call: ContractCall<abi, functionName, args>,
  onSent?: (hash: Hex) => void,
): Promise<TransactionReceipt> {
  return transact(
    publicClient,
    async () => {
      // viem's inference cannot follow the generic call through; the call's own type is checked above.
      const { request } = await publicClient.simulateContract({ ...SIMULATE, account: walletClient.account, ...call } as unknown as SimulateContractParameters)
      return walletClient.writeContract(request as Parameters<ChainWalletClient['writeContract']>[0])
    },
    onSent,
  )
}

export interface ExplainContext {
  token: TokenFormat | null
  /** The chain's clock, for errors that carry a time. */
  chainTime: number | null
}

/** What each contract error means for the person who pressed the button. */
function plainWords(name: string, args: readonly unknown[], context: ExplainContext): string | null {
  const time = (value: unknown) => (context.chainTime === null ? new Date(Number(value) * 1000).toLocaleString() : formatWhen(Number(value), context.chainTime))
  const amount = (value: unknown) => formatToken(BigInt(value as bigint), context.token)
  switch (name) {
    case 'UnstakeLocked':
      return `the unstaked tokens stay locked until ${time(args[0])}.`
    case 'NothingToWithdraw':
      return 'there is nothing to withdraw: request an unstake first, then wait for it to unlock.'
    case 'InsufficientStake':
      return `you cannot unstake more than your active stake (${amount(args[0])}).`
    case 'ZeroAmount':
      return 'the amount must be more than zero.'
    case 'RootNotClaimable':
      return `this reward root is still in its challenge window; it becomes claimable at ${time(args[0])}.`
    case 'RewardsFrozen':
      return 'rewards for this address are frozen after a dispute verdict against one of its claims.'
    case 'InvalidProof':
      return "the chain did not accept the Merkle proof for this address's reward."
    case 'NothingToClaim':
      return 'everything in this root was already paid to this address.'
    case 'UnknownEpoch':
      return `reward epoch ${String(args[0])} is not on chain.`
    case 'ERC20InsufficientBalance':
      return `the wallet holds ${amount(args[1])}, less than the ${amount(args[2])} needed.`
    case 'ERC20InsufficientAllowance':
      return `the contract may only take ${amount(args[1])} of your tokens, less than the ${amount(args[2])} needed.`
    case 'ReentrancyGuardReentrantCall':
      return 'the contract refused a re-entrant call.'
    default:
      return null
  }
}

/** One line for the page: the contract error's name and what it means, or the wallet's or node's own words. */
export function explainError(error: unknown, context: ExplainContext): string {
  if (error instanceof WalletError || error instanceof TransactionRevertedError) return error.message
  if (error instanceof BaseError) {
    const revert = error.walk((e) => e instanceof ContractFunctionRevertedError)
    if (revert instanceof ContractFunctionRevertedError) {
      const name = revert.data?.errorName
      if (name && name !== 'Error') {
        const words = plainWords(name, revert.data?.args ?? [], context)
        return `${name}: ${words ?? revert.shortMessage}`
      }
      if (revert.reason) return `Reverted: ${revert.reason}`
      return revert.shortMessage
    }
    if (error.walk((e) => e instanceof UserRejectedRequestError)) return 'You declined the transaction in your wallet.'
    if (error.walk((e) => e instanceof InsufficientFundsError)) return 'Not enough ETH in the wallet to pay for gas.'
    return error.shortMessage
  }
  return error instanceof Error ? error.message : String(error)
}
