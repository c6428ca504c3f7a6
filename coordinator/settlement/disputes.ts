import { formatUnits, getAddress, parseEventLogs, zeroAddress, type Hex, type TransactionReceipt } from 'viem'
import { disputeResolverAbi, stakeManagerAbi } from '../../contracts/generated/index.ts'
import { workClaimDigest, workClaimSchema, type Hash, type WorkClaim } from '../../src/protocol/index.ts'
import { KeyedMutex } from '../mutex.ts'
import type { EpochService } from './epochs.ts'
import { ChainTransactionError, revertOf, type ChainServiceOptions } from './transactions.ts'

interface DisputeRow {
  id: string
  kind: 'verdict' | 'double_sign'
  contributor: string
  lease_id: string
  other_lease_id: string | null
  referee_hash: Hash | null
  tx_hash: Hex | null
  claim: unknown
  signature: Hex | null
  claim_digest: Hex | null
  epoch: number | null
  other_claim: unknown
  other_signature: Hex | null
}

export interface DisputeOutcome {
  id: string
  status: 'done' | 'failed'
  txHash: Hex | null
  slashed: bigint | null
  error: string | null
}

type Call =
  | { functionName: 'slashDoubleSign'; args: readonly [WorkClaim, Hex, WorkClaim, Hex] }
  | { functionName: 'postVerdict'; args: readonly [WorkClaim, Hex, bigint, Hex[], Hash, typeof zeroAddress] }

/** Not sendable yet (the verdict's epoch is not posted); or never sendable, with the reason. */
type Plan = { wait: true } | { fail: string } | { call: Call }

/**
 * Sends the evidence the verification code recorded (`disputes` rows) to DisputeResolver:
 * - `double_sign` at once: two claims of one address for one unit and input, in one device class, with
 *   different outputs; anyone could send it, the coordinator just does not wait for a watcher;
 * - `verdict` once the epoch that committed the losing attempt's claim is posted, with the proof from
 *   that epoch's stored claims tree, and without a reporter (the whole slash goes to the treasury: the
 *   coordinator is not paid for refereeing). It must land before that epoch is claimable.
 *
 * A dispute ends `done` (slash landed, or EvidenceAlreadyUsed: the fault was already slashed, by another
 * path or another sender) or `failed` with the chain's reason. The transaction hash is stored before its
 * receipt is awaited, so a coordinator that dies in between finds the slash again instead of sending it
 * twice. Errors that say nothing about the evidence (the RPC is down) leave the dispute pending.
 */
export class DisputeSubmitter {
  private readonly lock = new KeyedMutex()

  constructor(
    private readonly options: ChainServiceOptions & {
    epochs: Pick<EpochService, 'claimCommitment'>
    },
  ) {}

  private get now() {
    return this.options.now ?? Date.now
  }

  /** Settles every pending dispute that can be settled now; returns what ended. */
  async tick(): Promise<DisputeOutcome[]> {
    return this.lock.run('disputes', async () => {
      const rows = await this.options.db.query<DisputeRow>(
        `SELECT d.id, d.kind, d.contributor, d.lease_id, d.other_lease_id, d.referee_hash, d.tx_hash,
                a.claim, a.signature, a.claim_digest, a.epoch, b.claim AS other_claim, b.signature AS other_signature
           FROM disputes d JOIN attempts a ON a.lease_id = d.lease_id
           LEFT JOIN attempts b ON b.lease_id = d.other_lease_id
          WHERE d.status = 'pending' ORDER BY d.created_at, d.id`,
      )
      const outcomes: DisputeOutcome[] = []
      for (const row of rows) {
        try {
          const outcome = await this.settle(row)
          if (outcome) outcomes.push(outcome)
        } catch (error) {
          this.options.log?.(`dispute ${row.id}: ${(error as Error).message}; retried on the next tick`)
        }
      }
      return outcomes
    })
  }

  private async settle(row: DisputeRow): Promise<DisputeOutcome | null> {
    const { publicClient, transactions, chain, db } = this.options
    if (row.tx_hash) {
      // Sent before a crash or a lost receipt: if it landed, that is the slash.
      const receipt = await publicClient.getTransactionReceipt({ hash: row.tx_hash }).catch(() => null)
      if (receipt?.status === 'success') return this.landed(row, receipt)
    }
    const plan = await this.plan(row)
    if ('wait' in plan) return null
    if ('fail' in plan) return this.finish(row, { status: 'failed', txHash: null, slashed: null, error: plan.fail })
    const { call } = plan
    const target = { address: chain.contracts.disputeResolver, abi: disputeResolverAbi } as const
    try {
      // The simulation names the reason a slash cannot land, which a mined revert would not.
      if (call.functionName === 'slashDoubleSign') {
        await publicClient.simulateContract({ ...target, account: transactions.wallet.account, functionName: call.functionName, args: call.args })
      } else {
        await publicClient.simulateContract({ ...target, account: transactions.wallet.account, functionName: call.functionName, args: call.args })
      }
    } catch (error) {
      const revert = revertOf(error)
      if (!revert) throw error
      if (revert.errorName === 'EvidenceAlreadyUsed') {
        return this.finish(row, { status: 'done', txHash: null, slashed: 0n, error: 'this fault was already slashed (EvidenceAlreadyUsed)' })
      }
      const args = revert.args.map((a) => String(a)).join(', ')
      return this.finish(row, { status: 'failed', txHash: null, slashed: null, error: `${revert.errorName}(${args})` })
    }
    let receipt: TransactionReceipt
    try {
      receipt = await transactions.send(
        `${call.functionName} for dispute ${row.id}`,
        () =>
          call.functionName === 'slashDoubleSign'
            ? transactions.wallet.writeContract({ ...target, functionName: call.functionName, args: call.args })
            : transactions.wallet.writeContract({ ...target, functionName: call.functionName, args: call.args }),
        async (hash) => {
          await db.query(`UPDATE disputes SET tx_hash = $2 WHERE id = $1`, [row.id, hash])
        },
      )
    } catch (error) {
      if (error instanceof ChainTransactionError && error.txHash && (await this.reverted(error.txHash))) {
        return this.finish(row, { status: 'failed', txHash: error.txHash, slashed: null, error: error.message })
      }
      throw error
    }
    return this.landed(row, receipt)
  }

  private async plan(row: DisputeRow): Promise<Plan> {
    const claim = workClaimSchema.safeParse(row.claim)
    if (!claim.success || !row.signature) return { fail: `attempt ${row.lease_id} has no signed claim` }
    if (row.kind === 'double_sign') {
      const other = workClaimSchema.safeParse(row.other_claim)
      if (!other.success || !row.other_signature) return { fail: `attempt ${row.other_lease_id ?? '(none)'} has no signed claim` }
      return { call: { functionName: 'slashDoubleSign', args: [claim.data, row.signature, other.data, row.other_signature] } }
    }
    if (row.kind !== 'verdict') return { fail: `unknown dispute kind ${String(row.kind)}` }
    if (!row.referee_hash) return { fail: 'a verdict without the referee’s output hash' }
    // The claim is committed by the next epoch the coordinator builds; the verdict waits for it to be posted.
    if (row.epoch === null) return { wait: true }
    const { chain } = this.options
    const digest = row.claim_digest ?? workClaimDigest(claim.data, { chainId: chain.chainId, verifyingContract: chain.contracts.disputeResolver })
    const commitment = await this.options.epochs.claimCommitment(row.epoch, digest)
    if (!commitment) return { wait: true }
    if (!commitment.proof) return { fail: `claim ${digest} is not in epoch ${row.epoch}'s claims tree` }
    return { call: { functionName: 'postVerdict', args: [claim.data, row.signature, BigInt(row.epoch), commitment.proof, row.referee_hash, zeroAddress] } }
  }

  /** A slash landed: the dispute is done and the contributor's record counts it (and bans it, if not already). */
  private async landed(row: DisputeRow, receipt: TransactionReceipt): Promise<DisputeOutcome> {
    const [slash] = parseEventLogs({ abi: stakeManagerAbi, eventName: 'Slashed', logs: receipt.logs })
    const outcome: DisputeOutcome = { id: row.id, status: 'done', txHash: receipt.transactionHash, slashed: slash?.args.amount ?? 0n, error: null }
    const now = this.now()
    await this.options.db.transaction(async (tx) => {
      const [updated] = await tx.query<{ id: string }>(
        `UPDATE disputes SET status = 'done', tx_hash = $2, slashed = $3, error = NULL, settled_at = $4 WHERE id = $1 AND status = 'pending' RETURNING id`,
        [row.id, outcome.txHash, String(outcome.slashed), now],
      )
      if (!updated) return
      await tx.query(
        `INSERT INTO reputation (address, slashes, banned_at, banned_reason, updated_at) VALUES ($1, 1, $2, $3, $2)
         ON CONFLICT (address) DO UPDATE SET slashes = reputation.slashes + 1, banned_at = coalesce(reputation.banned_at, $2),
                banned_reason = coalesce(reputation.banned_reason, $3), updated_at = $2`,
        [getAddress(row.contributor), now, `slashed on-chain (${row.kind === 'verdict' ? 'referee verdict' : 'double signing'})`],
      )
    })
    this.options.log?.(`dispute ${row.id}: slashed ${outcome.slashed === null ? 'an unknown amount' : `${formatUnits(outcome.slashed, this.options.chain.token.decimals)} ${this.options.chain.token.symbol}`} from ${row.contributor} (${outcome.txHash})`)
    return outcome
  }

  private async finish(row: DisputeRow, outcome: Omit<DisputeOutcome, 'id'>): Promise<DisputeOutcome> {
    await this.options.db.query(
      `UPDATE disputes SET status = $2, tx_hash = coalesce($3, tx_hash), slashed = $4, error = $5, settled_at = $6 WHERE id = $1 AND status = 'pending'`,
      [row.id, outcome.status, outcome.txHash, outcome.slashed === null ? null : String(outcome.slashed), outcome.error, this.now()],
    )
    this.options.log?.(`dispute ${row.id}: ${outcome.status}${outcome.error ? ` (${outcome.error})` : ''}`)
    return { id: row.id, ...outcome }
  }

  private async reverted(hash: Hex): Promise<boolean> {
    const receipt = await this.options.publicClient.getTransactionReceipt({ hash }).catch(() => null)
    return receipt?.status === 'reverted'
  }
}
