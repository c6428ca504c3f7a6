import { formatUnits, getAddress, type Address, type Hex } from 'viem'
import { rewardDistributorAbi } from '../../contracts/generated/index.ts'
import { KeyedMutex } from '../mutex.ts'
import type { EpochService } from './epochs.ts'
import type { ChainServiceOptions } from './transactions.ts'

export interface SweepOutcome {
  account: Address
  epoch: number
  /** What went to the treasury. */
  swept: bigint
  /** What the account was still owed from a root claimable before its freeze, claimed for it first. */
  paidToAccount: bigint
  txHash: Hex
}

/**
 * Sends frozen rewards to the treasury (RewardDistributor.sweepFrozen), so they do not stay in the
 * distributor forever. A freeze follows a slash, by this coordinator's dispute or by anyone's double-sign
 * evidence, so every `Frozen` event is read from the chain: the address is banned here (no more units, no
 * leaf in later trees) and remembered in `reputation.frozen_at`.
 *
 * Once the latest root that still holds a frozen account is claimable (every verdict about it has landed),
 * the account's leaf in the latest root claimable before its freeze is first claimed for it (that money
 * is its own: the challenge window of that root passed before the fault was proven), then the rest of its
 * leaf in the frozen root is swept. Later trees leave a banned account out, so one sweep usually ends it.
 */
export class FrozenSweeper {
  private readonly lock = new KeyedMutex()
  /** Per account, the newest claimable epoch already looked at: nothing changes for it until a newer one. */
  private readonly checked = new Map<Address, number>()

  constructor(
    private readonly options: ChainServiceOptions & {
    deployment: string
    fromBlock: bigint
    epochs: Pick<EpochService, 'postedEpochs' | 'leaf'>
    },
  ) {}

  private get now() {
    return this.options.now ?? Date.now
  }

  async tick(): Promise<SweepOutcome[]> {
    return this.lock.run('frozen', async () => {
      await this.scanFreezes()
      const rows = await this.options.db.query<{ address: string }>(`SELECT address FROM reputation WHERE frozen_at IS NOT NULL ORDER BY address`)
      const outcomes: SweepOutcome[] = []
      for (const { address } of rows) {
        try {
          const outcome = await this.sweep(getAddress(address))
          if (outcome) outcomes.push(outcome)
        } catch (error) {
          this.options.log?.(`sweeping frozen rewards of ${address}: ${(error as Error).message}; retried on the next epoch`)
        }
      }
      return outcomes
    })
  }

  /** Reads new Frozen events; the cursor shares chain_cursor under its own key. */
  private async scanFreezes(): Promise<void> {
    const { db, publicClient, chain, deployment } = this.options
    const key = `${deployment}#frozen`
    const latest = await publicClient.getBlockNumber({ cacheTime: 0 })
    const [cursor] = await db.query<{ next_block: string }>(`SELECT next_block FROM chain_cursor WHERE deployment = $1`, [key])
    let from = cursor ? BigInt(cursor.next_block) : this.options.fromBlock
    // A local chain restored from an older state file is behind the cursor: scan again (the upsert is idempotent).
    if (from > latest + 1n) from = this.options.fromBlock
    if (from > latest) return
    const logs = await publicClient.getContractEvents({
      address: chain.contracts.rewardDistributor,
      abi: rewardDistributorAbi,
      eventName: 'Frozen',
      fromBlock: from,
      toBlock: latest,
    })
    const now = this.now()
    for (const log of logs) {
      await db.query(
        `INSERT INTO reputation (address, frozen_at, banned_at, banned_reason, updated_at) VALUES ($1, $2, $3, $4, $3)
         ON CONFLICT (address) DO UPDATE SET frozen_at = EXCLUDED.frozen_at, banned_at = coalesce(reputation.banned_at, $3),
                banned_reason = coalesce(reputation.banned_reason, $4), updated_at = $3`,
        [getAddress(log.args.account!), Number(log.args.frozenAt!), now, 'slashed on-chain: rewards frozen'],
      )
    }
    await db.query(
      `INSERT INTO chain_cursor (deployment, next_block) VALUES ($1, $2) ON CONFLICT (deployment) DO UPDATE SET next_block = EXCLUDED.next_block`,
      [key, String(latest + 1n)],
    )
  }

  private async sweep(account: Address): Promise<SweepOutcome | null> {
    const { publicClient, chain, transactions } = this.options
    const distributor = { address: chain.contracts.rewardDistributor, abi: rewardDistributorAbi } as const
    const frozenAt = Number(await publicClient.readContract({ ...distributor, functionName: 'frozenAt', args: [account] }))
    if (frozenAt === 0) return null // frozen on another deployment of the contracts
    const block = await publicClient.getBlock({ blockTag: 'latest' })
    // A chain that mines only on demand (anvil) keeps the last block's time while idle, but the sweep's own
    // block gets the wall time: judge claimability by whichever is later.
    const chainTime = Math.max(Number(block.timestamp), Math.floor(Date.now() / 1000))
    const posted = await this.options.epochs.postedEpochs()
    const frozenClaimable = posted.filter((e) => e.claimableAt > frozenAt && e.claimableAt <= chainTime)
    const newest = frozenClaimable.at(-1)?.epoch
    if (newest === undefined || this.checked.get(account) === newest) return null

    let target: { epoch: number; cumulativeAmount: bigint; proof: Hex[] } | null = null
    for (const e of [...frozenClaimable].reverse()) {
      const leaf = await this.options.epochs.leaf(e.epoch, account)
      if (leaf) {
        target = { epoch: e.epoch, ...leaf }
        break
      }
    }
    let claimed = await publicClient.readContract({ ...distributor, functionName: 'claimed', args: [account] })
    if (!target || target.cumulativeAmount <= claimed) {
      this.checked.set(account, newest)
      return null
    }
    let paidToAccount = 0n
    for (const e of posted.filter((p) => p.claimableAt <= frozenAt).reverse()) {
      const leaf = await this.options.epochs.leaf(e.epoch, account)
      if (!leaf) continue
      if (leaf.cumulativeAmount > claimed) {
        await transactions.send(`claim the unfrozen rewards of ${account} before sweeping`, () =>
          transactions.wallet.writeContract({ ...distributor, functionName: 'claim', args: [BigInt(e.epoch), account, leaf.cumulativeAmount, leaf.proof] }),
        )
        paidToAccount = leaf.cumulativeAmount - claimed
        claimed = leaf.cumulativeAmount
      }
      break
    }
    const { epoch, cumulativeAmount, proof } = target
    const receipt = await transactions.send(`sweep frozen rewards of ${account}`, () =>
      transactions.wallet.writeContract({ ...distributor, functionName: 'sweepFrozen', args: [BigInt(epoch), account, cumulativeAmount, proof] }),
    )
    this.checked.set(account, newest)
    const swept = cumulativeAmount - claimed
    this.options.log?.(`swept ${formatUnits(swept, this.options.chain.token.decimals)} ${this.options.chain.token.symbol} of frozen rewards of ${account} (epoch ${epoch}) to the treasury (${receipt.transactionHash})`)
    return { account, epoch, swept, paidToAccount, txHash: receipt.transactionHash }
  }
}
