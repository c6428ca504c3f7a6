import { getAddress, type Address, type Hex, type PublicClient } from 'viem'
import { rewardDistributorAbi } from '../../contracts/generated/index.ts'
import {
  buildRewardTree,
  loadRewardTree,
  rewardProof,
  serializeRewardTree,
  type ChainInfo,
  type EpochRecord,
  type Hash,
  type PaymentTerms,
  type RewardProofRecord,
  type RewardTree,
} from '../../src/protocol/index.ts'
import type { Database } from '../db.ts'
import { KeyedMutex } from '../mutex.ts'
import { computeEarnings } from './earnings.ts'
import type { TransactionQueue } from './transactions.ts'

/** The chain holds a different root for an epoch than the one this coordinator built: stop, a person must look. */
export class EpochConflictError extends Error {
  override name = 'EpochConflictError'
}

interface EpochRow {
  epoch: number
  root: Hex
  total_cumulative: string
  job_totals: Record<string, string>
  tree: ReturnType<RewardTree['dump']>
  accounts: number
  status: EpochRecord['status']
  tx_hash: Hex | null
  built_at: string
  posted_at: string | null
  claimable_at: string | null
}

const EPOCH_COLUMNS = `epoch, root, total_cumulative, job_totals, accounts, status, tx_hash, built_at, posted_at, claimable_at`

/**
 * Reward epochs. Each epoch freezes what every account has earned into a cumulative Merkle tree, stores
 * the tree, and only then posts its root; the stored row is the single source for every retry, so a
 * root is built once and posted once even if the process dies between any two steps:
 * - died before sending: the row is `built`; the next tick sends the same root;
 * - died after sending: the row is `sent` with its hash; the chain's epoch count says whether it landed;
 * - the chain lost the epoch (a local chain restored from an older state): the row goes back to `built`.
 */
export class EpochService {
  private readonly lock = new KeyedMutex()
  private readonly trees = new Map<number, RewardTree>()

  constructor(
    private readonly options: {
      db: Database
      publicClient: PublicClient
      transactions: TransactionQueue
      chain: ChainInfo
      deployment: string
      /** Jobs whose escrow holds something, and how much: the only jobs an epoch pays from. */
      fundedJobs: () => Promise<Array<{ id: Hash; payment: PaymentTerms; deposited: bigint }>>
      now?: () => number
      log?: (message: string) => void
    },
  ) {}

  private get now() {
    return this.options.now ?? Date.now
  }

  /** Posts any unfinished epoch, then builds and posts a new one if earnings changed. Returns the newest epoch. */
  async tick(): Promise<EpochRecord | null> {
    return this.lock.run('epoch', async () => {
      await this.reconcile()
      const built = await this.buildNext()
      if (built) await this.post(built)
      const [last] = await this.rows(`ORDER BY epoch DESC LIMIT 1`)
      return last ? toRecord(last) : null
    })
  }

  /**
   * Builds and stores the next epoch without posting it: the state a coordinator is in when it dies
   * between the two. The next `tick` posts it.
   */
  async prepare(): Promise<EpochRecord | null> {
    return this.lock.run('epoch', async () => {
      await this.reconcile()
      const built = await this.buildNext()
      return built ? toRecord(built) : null
    })
  }

  /** Brings stored rows in line with the chain and sends those not yet on it, in epoch order. */
  private async reconcile(): Promise<void> {
    const { db, deployment } = this.options
    const onChain = Number(await this.readEpochCount())
    const lost = await db.query<{ epoch: number }>(
      `UPDATE epochs SET status = 'built', tx_hash = NULL, posted_at = NULL, claimable_at = NULL
        WHERE deployment = $1 AND epoch > $2 AND status <> 'built' RETURNING epoch`,
      [deployment, onChain],
    )
    if (lost.length) this.options.log?.(`epochs ${lost.map((r) => r.epoch).join(', ')} are not on the chain any more; posting them again`)
    const pending = await this.rows(`AND status <> 'posted' ORDER BY epoch`)
    for (const row of pending) await this.post(row)
  }

  private async buildNext(): Promise<EpochRow | null> {
    const { db, deployment } = this.options
    const [previous] = await this.rows(`ORDER BY epoch DESC LIMIT 1`)
    const funded = await this.options.fundedJobs()
    const { balances, jobTotals } = await computeEarnings(db, funded)
    const previousTotals = new Map(Object.entries(previous?.job_totals ?? {}).map(([job, amount]) => [job, BigInt(amount)]))
    const charges: Array<{ specHash: Hash; amount: bigint }> = []
    for (const [job, total] of [...jobTotals].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const before = previousTotals.get(job) ?? 0n
      if (total < before) throw new EpochConflictError(`job ${job} earned ${total} now but ${before} in epoch ${previous!.epoch}: accepted work vanished`)
      if (total > before) charges.push({ specHash: job, amount: total - before })
    }
    if (charges.length === 0) return null
    const total = [...balances.values()].reduce((a, b) => a + b, 0n)
    const tree = buildRewardTree(balances)
    const epoch = (previous?.epoch ?? 0) + 1
    const totals = Object.fromEntries([...previousTotals, ...jobTotals].map(([job, amount]) => [job, String(amount)]))
    await db.query(
      `INSERT INTO epochs (deployment, epoch, root, total_cumulative, job_totals, tree, accounts, status, built_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'built', $8)`,
      [deployment, epoch, tree.root, String(total), JSON.stringify(totals), serializeRewardTree(tree), balances.size, this.now()],
    )
    this.trees.set(epoch, tree)
    this.options.log?.(`epoch ${epoch}: ${balances.size} accounts, ${charges.length} jobs charged, root ${tree.root.slice(0, 10)}`)
    const [row] = await this.rows(`AND epoch = $2`, [epoch])
    return row!
  }

  private async post(row: EpochRow): Promise<void> {
    const { db, deployment, chain, publicClient, transactions } = this.options
    const onChain = Number(await this.readEpochCount())
    if (onChain >= row.epoch) {
      const [root] = await publicClient.readContract({ address: chain.contracts.rewardDistributor, abi: rewardDistributorAbi, functionName: 'epochs', args: [BigInt(row.epoch)] })
      if (root.toLowerCase() !== row.root.toLowerCase()) {
        throw new EpochConflictError(`the chain has root ${root} for epoch ${row.epoch}; this coordinator built ${row.root}`)
      }
      await this.markPosted(row.epoch, row.tx_hash)
      return
    }
    if (onChain < row.epoch - 1) return // an earlier epoch goes first; reconcile() sends them in order
    const previousTotals = row.epoch > 1 ? ((await this.rows(`AND epoch = $2`, [row.epoch - 1]))[0]?.job_totals ?? {}) : {}
    const charges = Object.entries(row.job_totals)
      .map(([job, amount]) => ({ specHash: job as Hash, amount: BigInt(amount) - BigInt(previousTotals[job] ?? '0') }))
      .filter((c) => c.amount > 0n)
    await transactions.send(
      `post root of epoch ${row.epoch}`,
      () =>
        transactions.wallet.writeContract({
          address: chain.contracts.rewardDistributor,
          abi: rewardDistributorAbi,
          functionName: 'postRoot',
          args: [BigInt(row.epoch), row.root, BigInt(row.total_cumulative), charges],
        }),
      async (hash) => {
        await db.query(`UPDATE epochs SET status = 'sent', tx_hash = $3 WHERE deployment = $1 AND epoch = $2`, [deployment, row.epoch, hash])
      },
    )
    const [sent] = await this.rows(`AND epoch = $2`, [row.epoch])
    await this.markPosted(row.epoch, sent?.tx_hash ?? null)
  }

  private async markPosted(epoch: number, txHash: Hex | null): Promise<void> {
    const { db, deployment, chain, publicClient } = this.options
    const [, , postedAt, claimableAt] = await publicClient.readContract({
      address: chain.contracts.rewardDistributor,
      abi: rewardDistributorAbi,
      functionName: 'epochs',
      args: [BigInt(epoch)],
    })
    let hash = txHash
    if (!hash) {
      const logs = await publicClient.getContractEvents({
        address: chain.contracts.rewardDistributor,
        abi: rewardDistributorAbi,
        eventName: 'RootPosted',
        args: { epoch: BigInt(epoch) },
        fromBlock: 0n,
      })
      hash = logs[0]?.transactionHash ?? null
    }
    await db.query(
      `UPDATE epochs SET status = 'posted', tx_hash = $3, posted_at = $4, claimable_at = $5 WHERE deployment = $1 AND epoch = $2`,
      [deployment, epoch, hash, Number(postedAt), Number(claimableAt)],
    )
    this.options.log?.(`epoch ${epoch} posted (${hash ?? 'transaction hash unknown'}), claimable at ${new Date(Number(claimableAt) * 1000).toISOString()}`)
  }

  async list(limit = 50): Promise<EpochRecord[]> {
    return (await this.rows(`ORDER BY epoch DESC LIMIT $2`, [limit])).map(toRecord)
  }

  /** Per job, what posted roots have charged its escrow. */
  async charged(jobId: Hash): Promise<bigint> {
    const [row] = await this.options.db.query<{ amount: string | null }>(
      `SELECT job_totals->>$2 AS amount FROM epochs WHERE deployment = $1 AND status = 'posted' ORDER BY epoch DESC LIMIT 1`,
      [this.options.deployment, jobId],
    )
    return BigInt(row?.amount ?? '0')
  }

  /**
   * The account's leaf in the latest posted root and in the latest root already claimable at the chain's
   * time. Cumulative amounts only grow, so the newest root holding the account is the one worth using.
   */
  async proofs(account: Address, chainTime: number): Promise<{ latest: RewardProofRecord | null; claimable: RewardProofRecord | null }> {
    const wanted = getAddress(account)
    const rows = await this.rows(`AND status = 'posted' ORDER BY epoch DESC LIMIT 20`)
    let latest: RewardProofRecord | null = null
    let claimable: RewardProofRecord | null = null
    for (const row of rows) {
      const leaf = rewardProof(await this.tree(row), wanted)
      if (!leaf) continue
      const record: RewardProofRecord = {
        epoch: row.epoch,
        root: row.root,
        cumulativeAmount: String(leaf.cumulativeAmount),
        proof: leaf.proof,
        claimableAt: Number(row.claimable_at),
        txHash: row.tx_hash!,
      }
      latest ??= record
      if (record.claimableAt <= chainTime) {
        claimable = record
        break
      }
    }
    return { latest, claimable }
  }

  private async tree(row: Pick<EpochRow, 'epoch'>): Promise<RewardTree> {
    let tree = this.trees.get(row.epoch)
    if (!tree) {
      const [stored] = await this.options.db.query<{ tree: EpochRow['tree'] }>(`SELECT tree FROM epochs WHERE deployment = $1 AND epoch = $2`, [
        this.options.deployment,
        row.epoch,
      ])
      tree = loadRewardTree(stored!.tree)
      this.trees.set(row.epoch, tree)
      // Keep the newest few trees parsed; proofs are asked for the latest roots.
      for (const epoch of [...this.trees.keys()].sort((a, b) => a - b).slice(0, -8)) this.trees.delete(epoch)
    }
    return tree
  }

  private readEpochCount(): Promise<bigint> {
    return this.options.publicClient.readContract({ address: this.options.chain.contracts.rewardDistributor, abi: rewardDistributorAbi, functionName: 'epochCount' })
  }

  private rows(tail: string, params: unknown[] = []): Promise<EpochRow[]> {
    return this.options.db.query<EpochRow>(`SELECT ${EPOCH_COLUMNS} FROM epochs WHERE deployment = $1 ${tail}`, [this.options.deployment, ...params])
  }
}

function toRecord(row: EpochRow): EpochRecord {
  return {
    epoch: row.epoch,
    root: row.root,
    totalCumulative: String(row.total_cumulative),
    accounts: row.accounts,
    status: row.status,
    txHash: row.tx_hash,
    builtAt: Number(row.built_at),
    postedAt: row.posted_at === null ? null : Number(row.posted_at),
    claimableAt: row.claimable_at === null ? null : Number(row.claimable_at),
  }
}
