import { getAddress, isAddress, type Address, type Hex, type PublicClient } from 'viem'
import { tabTokenAbi } from '../../contracts/generated/index.ts'
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
  now?: () => number
}

/**
 * Local chain only: gives a wallet gas and test tokens, topping up to the grant rather than adding
 * it, so asking again (a page reload, a double click) costs nothing and cannot drain the faucet.
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
    if (txHashes.length) {
      await this.options.db.query(`INSERT INTO faucet_grants (deployment, address, granted_at, tx_hashes) VALUES ($1, $2, $3, $4)`, [
        this.options.deployment,
        address,
        (this.options.now ?? Date.now)(),
        JSON.stringify(txHashes),
      ])
    }
    return { address, txHashes, ether: String(sentEther), tokens: String(sentTokens) }
  }
}
