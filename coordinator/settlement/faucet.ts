import { getAddress, isAddress, type Address, type Hex, type PublicClient } from 'viem'
import { stakeManagerAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import type { ChainInfo, FaucetResult } from '../../src/protocol/index.ts'
import type { Database } from '../db.ts'
import { CoordinatorError } from '../errors.ts'
import type { TransactionQueue } from './transactions.ts'

export interface FaucetOptions {
  db: Database
  publicClient: PublicClient
  transactions: TransactionQueue
  chain: ChainInfo
  deployment: string
  ether: bigint
  tokens: bigint
  /** Stake to hold in StakeManager for the address: the minimum a paid job asks before leasing. */
  stake: bigint
  now?: () => number
}

/**
 * Local chain only: gives a wallet gas, test tokens and the minimum stake, topping up to the grant rather
 * than adding it, so asking again (a page reload, a double click) costs nothing and cannot drain the
 * faucet. The stake is the faucet's own tokens staked for the address (StakeManager.stakeFor): a burner
 * wallet can work on the paid preset at once, and its claims carry a real slash from the first unit. A
 * banned address gets no stake: it gets no units either.
 */
export class Faucet {
  constructor(private readonly options: FaucetOptions) {}

  async drip(addressInput: unknown): Promise<FaucetResult> {
    if (typeof addressInput !== 'string' || !isAddress(addressInput, { strict: false })) {
      throw new CoordinatorError('malformed_request', 'address must be a 20-byte hex address')
    }
    const address: Address = getAddress(addressInput)
    const { publicClient, transactions, chain, ether, tokens } = this.options
    const [balance, tokenBalance] = await Promise.all([
      publicClient.getBalance({ address }),
      publicClient.readContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'balanceOf', args: [address] }),
    ])
    const txHashes: Hex[] = []
    let sentEther = 0n
    let sentTokens = 0n
    let staked = 0n
    if (balance < ether) {
      sentEther = ether - balance
      const receipt = await transactions.send('faucet gas', () =>
        transactions.wallet.sendTransaction({ to: address, value: ether - balance }),
      )
      txHashes.push(receipt.transactionHash)
    }
    if (tokenBalance < tokens) {
      sentTokens = tokens - tokenBalance
      const receipt = await transactions.send('faucet tokens', () =>
        transactions.wallet.writeContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'mint', args: [address, tokens - tokenBalance] }),
      )
      txHashes.push(receipt.transactionHash)
    }
    const stake = await this.missingStake(address)
    if (stake > 0n) {
      const faucet = transactions.wallet.account.address
      const send = async (label: string, write: () => Promise<Hex>) => txHashes.push((await transactions.send(label, write)).transactionHash)
      await send('faucet stake tokens', () =>
        transactions.wallet.writeContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'mint', args: [faucet, stake] }),
      )
      const allowance = await publicClient.readContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'allowance', args: [faucet, chain.contracts.stakeManager] })
      if (allowance < stake) {
        // Once, for every later grant.
        await send('faucet stake allowance', () =>
          transactions.wallet.writeContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'approve', args: [chain.contracts.stakeManager, 2n ** 256n - 1n] }),
        )
      }
      await send('faucet stake', () =>
        transactions.wallet.writeContract({ address: chain.contracts.stakeManager, abi: stakeManagerAbi, functionName: 'stakeFor', args: [address, stake] }),
      )
      staked = stake
    }
    if (txHashes.length) {
      await this.options.db.query(`INSERT INTO faucet_grants (deployment, address, granted_at, tx_hashes) VALUES ($1, $2, $3, $4)`, [
        this.options.deployment,
        address,
        (this.options.now ?? Date.now)(),
        JSON.stringify(txHashes),
      ])
    }
    return { address, txHashes, ether: String(sentEther), tokens: String(sentTokens), staked: String(staked) }
  }

  /** What is missing from the address's slashable stake to reach the grant; 0 for a banned address. */
  private async missingStake(address: Address): Promise<bigint> {
    const { publicClient, chain, stake } = this.options
    if (stake <= 0n) return 0n
    const [banned] = await this.options.db.query<{ address: string }>(`SELECT address FROM reputation WHERE address = $1 AND banned_at IS NOT NULL`, [address])
    if (banned) return 0n
    const current = await publicClient.readContract({ address: chain.contracts.stakeManager, abi: stakeManagerAbi, functionName: 'slashableOf', args: [address] })
    return current < stake ? stake - current : 0n
  }
}
