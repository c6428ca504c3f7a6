import { getAddress, zeroHash, type Address, type Hex } from 'viem'
import { rewardDistributorAbi } from '../../contracts/generated/index.ts'
import {
  buildRewardTree,
  loadRewardTree,
  rewardProof,
  serializeRewardTree,
  type EpochRecord,
  type Hash,
  type RewardProofRecord,
  type RewardTree,
} from '../../src/protocol/index.ts'
import { KeyedMutex } from '../mutex.ts'
import { buildClaimsTree, claimProof, claimsRootOf, loadClaimsTree, serializeClaimsTree, type ClaimsTree } from './claimsTree.ts'
import { bannedAddresses, computeEarnings, parseAccountTotals, serializeAccountTotals, type FundedJob } from './earnings.ts'
import type { FundingState } from './funding.ts'
import { ChainTransactionError, revertOf, type ChainServiceOptions } from './transactions.ts'

/** The chain holds a different root for an epoch than the one this coordinator built: stop, a person must look. */
export class EpochConflictError extends Error {
  override name = 'EpochConflictError'
}

interface EpochRow {
  epoch: number
  root: Hex
  claims_root: Hex | null
  total_cumulative: string
  job_totals: Record<string, string>
  account_totals: Record<string, Record<string, string>> | null
  accounts: number
  status: EpochRecord['status']
  tx_hash: Hex | null
  built_at: string
  posted_at: string | null
  claimable_at: string | null
}

const EPOCH_COLUMNS = `epoch, root, claims_root, total_cumulative, job_totals, account_totals, accounts, status, tx_hash, built_at, posted_at, claimable_at`

/** What the epoch builder needs from the escrow watcher. */
export interface EpochEscrows {
  /** Paid jobs with an escrow, as last read: the only jobs an epoch pays from. */
  fundedJobs(): Promise<FundedJob[]>
  /** Re-reads one job's escrow from the chain. */
  refresh(jobId: Hash): Promise<FundingState>
  /** The requester the job's spec names: whose escrow a charge takes from. */
  requesterOf(jobId: Hash): Promise<Address>
}

/** How often a tick rebuilds after discarding an epoch whose charge hit a refunded escrow. */
const MAX_REBUILDS = 3

/** Thrown inside the build transaction to roll back the commitment of claims when there is nothing to post. */
class NothingToPost extends Error {}

/**
 * Reward epochs. Each epoch commits the claims settled since the last one (a claims tree over their
 * EIP-712 digests, the root DisputeResolver proves verdicts against), freezes what every account has
 * earned from committed payable attempts into a cumulative Merkle tree, stores both, and only then posts
 * the roots; the stored row is the single source for every retry, so a root is built once and posted once
 * even if the process dies between any two steps:
 * - died before sending: the row is `built`; the next tick sends the same roots;
 * - died after sending: the row is `sent` with its hash; the chain's epoch count says whether it landed;
 * - the chain lost the epoch (a local chain restored from an older state): the row goes back to `built`.
 *
 * One exception: a built epoch that charges an escrow its requester refunded in the meantime can never be
 * posted (the escrow reverts with AlreadyRefunded, blocking every other job's epoch). It was never on the
 * chain, so it is discarded, its claims uncommitted, the escrows read again and the epoch built again.
 */
export class EpochService {
  private readonly lock = new KeyedMutex()
  private readonly trees = new Map<number, RewardTree | null>()
  private readonly claimsTrees = new Map<number, ClaimsTree | null>()

  constructor(
    private readonly options: ChainServiceOptions & {
    deployment: string
    escrow: EpochEscrows
    },
  ) {}

  private get now() {
    return this.options.now ?? Date.now
  }

  /** Posts any unfinished epoch, then builds and posts a new one if there is something to settle. Returns the newest epoch. */
  async tick(): Promise<EpochRecord | null> {
    return this.lock.run('epoch', async () => {
      for (let rebuilds = 0; ; rebuilds++) {
        try {
          await this.reconcile()
          const built = await this.buildNext()
          if (built) await this.post(built)
          break
        } catch (error) {
          if (rebuilds < MAX_REBUILDS && (await this.discardIfRefunded(error))) continue
          throw error
        }
      }
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

  /**
   * Commits every settled claim not yet in an epoch (payable ones, and refused ones awaiting a verdict)
   * and computes earnings from committed attempts, in one transaction with the new row. An epoch is built
   * when it charges something, or when it commits a refused claim: a verdict can only be posted once an
   * epoch commits its claim, so such an epoch is posted even with the reward root unchanged.
   */
  private async buildNext(): Promise<EpochRow | null> {
    const { db, deployment } = this.options
    const [previous] = await this.rows(`ORDER BY epoch DESC LIMIT 1`)
    if (previous && previous.status !== 'posted') return null // reconcile() posts it first
    const funded = await this.options.escrow.fundedJobs()
    const banned = await bannedAddresses(db)
    const floors = parseAccountTotals(previous?.account_totals)
    const epoch = (previous?.epoch ?? 0) + 1
    const previousTotals = new Map(Object.entries(previous?.job_totals ?? {}).map(([job, amount]) => [job, BigInt(amount)]))

    let built: { rewards: RewardTree | null; claims: ClaimsTree | null; accounts: number; charges: number } | null = null
    try {
      built = await db.transaction(async (tx) => {
        const committed = await tx.query<{ claim_digest: Hex | null; verdict: string }>(
          `UPDATE attempts SET epoch = $1
            WHERE epoch IS NULL AND ((status = 'submitted' AND verdict IN ('unchecked', 'passed')) OR verdict = 'rejected')
            RETURNING claim_digest, verdict`,
          [epoch],
        )
        const { balances, jobTotals, accountTotals } = await computeEarnings(tx, funded, { floors, banned })
        let charges = 0
        for (const [job, total] of jobTotals) {
          const before = previousTotals.get(job) ?? 0n
          if (total < before) throw new EpochConflictError(`job ${job} earned ${total} now but ${before} in epoch ${previous!.epoch}: charged work vanished`)
          if (total > before) charges += 1
        }
        const awaitingVerdict = committed.some((c) => c.verdict === 'rejected' && c.claim_digest)
        if (charges === 0 && !awaitingVerdict) throw new NothingToPost()
        if (charges > 0 && balances.size === 0) throw new EpochConflictError(`epoch ${epoch} would charge escrows but pay no account`)
        const rewards = balances.size > 0 ? buildRewardTree(balances) : null
        const claims = buildClaimsTree(committed.flatMap((c) => (c.claim_digest ? [c.claim_digest] : [])))
        const total = [...jobTotals.values()].reduce((a, b) => a + b, 0n)
        const totals = Object.fromEntries([...previousTotals, ...jobTotals].map(([job, amount]) => [job, String(amount)]))
        await tx.query(
          `INSERT INTO epochs (deployment, epoch, root, claims_root, total_cumulative, job_totals, account_totals, tree, claims_tree, accounts, status, built_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'built', $11)`,
          [
            deployment,
            epoch,
            rewards ? rewards.root : zeroHash,
            claimsRootOf(claims),
            String(total),
            JSON.stringify(totals),
            serializeAccountTotals(accountTotals),
            rewards ? serializeRewardTree(rewards) : 'null',
            serializeClaimsTree(claims),
            balances.size,
            this.now(),
          ],
        )
        return { rewards, claims, accounts: balances.size, charges }
      })
    } catch (error) {
      if (error instanceof NothingToPost) return null
      throw error
    }
    this.options.log?.(
      `epoch ${epoch}: ${built.accounts} accounts, ${built.charges} jobs charged, ${built.claims ? built.claims.length : 0} claims committed, root ${(built.rewards?.root ?? zeroHash).slice(0, 10)}`,
    )
    const [row] = await this.rows(`AND epoch = $2`, [epoch])
    return row!
  }

  /** What `row` charges each job: the growth of its total since the epoch before. */
  private async chargesOf(row: EpochRow): Promise<Array<{ specHash: Hash; requester: Address; amount: bigint }>> {
    const previousTotals = row.epoch > 1 ? ((await this.rows(`AND epoch = $2`, [row.epoch - 1]))[0]?.job_totals ?? {}) : {}
    const charges: Array<{ specHash: Hash; requester: Address; amount: bigint }> = []
    for (const [job, amount] of Object.entries(row.job_totals)) {
      const growth = BigInt(amount) - BigInt(previousTotals[job] ?? '0')
      if (growth > 0n) charges.push({ specHash: job as Hash, requester: await this.options.escrow.requesterOf(job as Hash), amount: growth })
    }
    return charges
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
    const charges = await this.chargesOf(row)
    await transactions.send(
      `post root of epoch ${row.epoch}`,
      () =>
        transactions.wallet.writeContract({
          address: chain.contracts.rewardDistributor,
          abi: rewardDistributorAbi,
          functionName: 'postRoot',
          args: [BigInt(row.epoch), row.root, row.claims_root ?? zeroHash, BigInt(row.total_cumulative), charges],
        }),
      async (hash) => {
        await db.query(`UPDATE epochs SET status = 'sent', tx_hash = $3 WHERE deployment = $1 AND epoch = $2`, [deployment, row.epoch, hash])
      },
    )
    const [sent] = await this.rows(`AND epoch = $2`, [row.epoch])
    await this.markPosted(row.epoch, sent?.tx_hash ?? null)
  }

  /**
   * After a failed post: when the first epoch not on the chain charges an escrow that is now refunded,
   * deletes it (and any built after it) and uncommits their claims, so the next build leaves the refunded
   * job at what it was already charged. Only for a post that certainly did not land: the chain refused it
   * (AlreadyRefunded in the estimate) or mined it reverted.
   */
  private async discardIfRefunded(error: unknown): Promise<boolean> {
    const refused = revertOf(error)?.errorName === 'AlreadyRefunded'
    const minedReverted = error instanceof ChainTransactionError && error.txHash !== null && (await this.revertedOnChain(error.txHash))
    if (!refused && !minedReverted) return false
    const { db, deployment } = this.options
    const onChain = Number(await this.readEpochCount())
    const [row] = await this.rows(`AND status <> 'posted' AND epoch > $2 ORDER BY epoch LIMIT 1`, [onChain])
    if (!row) return false
    const refunded: Hash[] = []
    for (const charge of await this.chargesOf(row)) {
      if ((await this.options.escrow.refresh(charge.specHash)).refunded) refunded.push(charge.specHash)
    }
    if (refunded.length === 0) return false
    await db.transaction(async (tx) => {
      await tx.query(`DELETE FROM epochs WHERE deployment = $1 AND epoch >= $2`, [deployment, row.epoch])
      await tx.query(`UPDATE attempts SET epoch = NULL WHERE epoch >= $1`, [row.epoch])
    })
    for (const epoch of [...this.trees.keys()]) if (epoch >= row.epoch) this.trees.delete(epoch)
    for (const epoch of [...this.claimsTrees.keys()]) if (epoch >= row.epoch) this.claimsTrees.delete(epoch)
    this.options.log?.(`epoch ${row.epoch} charged refunded escrow(s) ${refunded.map((j) => j.slice(0, 10)).join(', ')}; discarded it and building again`)
    return true
  }

  private async revertedOnChain(hash: Hex): Promise<boolean> {
    try {
      return (await this.options.publicClient.getTransactionReceipt({ hash })).status === 'reverted'
    } catch {
      return false
    }
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
   * Where the claim with `digest` stands in `epoch`: null while that epoch is not posted here; otherwise
   * its claimable time and the proof that its claims root commits the digest (null when it does not).
   */
  async claimCommitment(epoch: number, digest: Hex): Promise<{ claimableAt: number; proof: Hex[] | null } | null> {
    const [row] = await this.rows(`AND epoch = $2 AND status = 'posted'`, [epoch])
    if (!row) return null
    return { claimableAt: Number(row.claimable_at), proof: claimProof(await this.claimsTree(epoch), digest) }
  }

  /** Posted epochs, oldest first, with the chain time from which each is claimable. */
  async postedEpochs(afterEpoch = 0): Promise<Array<{ epoch: number; claimableAt: number }>> {
    const rows = await this.rows(`AND status = 'posted' AND epoch > $2 ORDER BY epoch`, [afterEpoch])
    return rows.map((r) => ({ epoch: r.epoch, claimableAt: Number(r.claimable_at) }))
  }

  /** The account's leaf and proof in a stored epoch's reward tree, or null when it has none there. */
  async leaf(epoch: number, account: Address): Promise<{ cumulativeAmount: bigint; proof: Hex[] } | null> {
    const tree = await this.tree({ epoch })
    return tree ? rewardProof(tree, getAddress(account)) : null
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
      const tree = await this.tree(row)
      const leaf = tree ? rewardProof(tree, wanted) : null
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

  private async tree(row: Pick<EpochRow, 'epoch'>): Promise<RewardTree | null> {
    if (this.trees.has(row.epoch)) return this.trees.get(row.epoch)!
    const [stored] = await this.options.db.query<{ tree: ReturnType<RewardTree['dump']> | null; status: string }>(
      `SELECT tree, status FROM epochs WHERE deployment = $1 AND epoch = $2`,
      [this.options.deployment, row.epoch],
    )
    // An epoch that pays nobody (only commits claims) has no reward tree.
    const tree = stored?.tree ? loadRewardTree(stored.tree) : null
    // Only a posted epoch's tree is final: one not yet posted may be discarded and built again, by this
    // process or by another replica on the same store, whose discard this one's memory would not see.
    if (stored?.status === 'posted') this.trees.set(row.epoch, tree)
    // Keep the newest few trees parsed; proofs are asked for the latest roots.
    for (const epoch of [...this.trees.keys()].sort((a, b) => a - b).slice(0, -8)) this.trees.delete(epoch)
    return tree
  }

  private async claimsTree(epoch: number): Promise<ClaimsTree | null> {
    if (this.claimsTrees.has(epoch)) return this.claimsTrees.get(epoch)!
    const [stored] = await this.options.db.query<{ claims_tree: unknown; status: string }>(
      `SELECT claims_tree, status FROM epochs WHERE deployment = $1 AND epoch = $2`,
      [this.options.deployment, epoch],
    )
    const tree = loadClaimsTree(stored?.claims_tree)
    if (stored?.status === 'posted') this.claimsTrees.set(epoch, tree)
    for (const e of [...this.claimsTrees.keys()].sort((a, b) => a - b).slice(0, -8)) this.claimsTrees.delete(e)
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
