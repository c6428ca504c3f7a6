import { formatUnits, getAddress, type Address, type Hex, type PublicClient } from 'viem'
import { jobEscrowAbi } from '../../contracts/generated/index.ts'
import { examplesPerUnit, isAsynchronous, unitPrice, type ChainInfo, type Hash, type JobPayment, type JobSpec, type PaymentTerms } from '../../src/protocol/index.ts'
import type { Database, Queryable } from '../db.ts'
import type { JobPayments } from '../jobs.ts'
import { PAYABLE, type FundedJob } from './earnings.ts'

/**
 * What a paid job owes its contributors now, the one home of that rule (the job page's escrow, the budget
 * floor of owner actions and the closing of escrows all read it):
 * - `payable`: every payable answer (earnings.ts PAYABLE: submitted and unchecked or passed, checks
 *   included) at the job's price, as epochs pay them (a unit sized to its contributor's device by the
 *   examples it trained, `unitPrice`);
 * - `earned`: that, never less than what posted roots already charged (an answer dropped after its charge
 *   stays paid for) and never more than `spendable`;
 * - `spendable`: what units may be paid from, the escrow or the owner's cap on it if lower.
 */
export interface JobObligations {
  payable: bigint
  charged: bigint
  earned: bigint
  spendable: bigint
  /** The owner's cap (`jobs.budget_cap`), null when the whole escrow may be spent. */
  budgetCap: bigint | null
}

/** Leases still live and answers still under check: work a paused or cancelled job still has out. */
export async function workInFlight(db: Queryable, jobId: string, now: number): Promise<{ leases: number; checks: number }> {
  const [row] = await db.query<{ leases: string; checks: string }>(
    `SELECT count(*) FILTER (WHERE status = 'leased' AND expires_at > $2) AS leases,
            count(*) FILTER (WHERE status = 'submitted' AND verdict = 'pending') AS checks
       FROM attempts WHERE job_id = $1`,
    [jobId, now],
  )
  return { leases: Number(row?.leases ?? 0), checks: Number(row?.checks ?? 0) }
}

export interface FundingState {
  /** The job spec's requester: the only address whose escrow funds the job. */
  requester: Address
  deposited: bigint
  charged: bigint
  closed: boolean
  refunded: boolean
}

/**
 * Mirrors each paid job's escrow from the chain into the store and memory, and decides from it whether
 * units may be issued. The chain is the truth: the store only remembers what was seen (deposit
 * transactions for the pages) and where the log scan stopped.
 *
 * JobEscrow keys escrows by (spec hash, depositor). A job's escrow is the one of the requester its spec
 * names (`payment.requester`); deposits by anyone else under the same spec hash are their own escrows,
 * which this coordinator never reads, charges or closes, so nobody can squat or block a job by
 * depositing first.
 */
export class EscrowWatcher implements JobPayments {
  private readonly funding = new Map<Hash, FundingState>()
  private readonly requesters = new Map<Hash, Address>()

  constructor(
    private readonly options: {
      db: Database
      publicClient: PublicClient
      chain: ChainInfo
      deployment: string
      /** First block worth scanning for deposits: the one the contracts were deployed in. */
      fromBlock: bigint
      /** Charged so far per job by posted epoch roots (read from the epoch store). */
      charged: (jobId: Hash) => Promise<bigint>
      now?: () => number
    },
  ) {}

  /** Scans new Deposited events and re-reads every paid job's escrow. Cheap enough to run every second. */
  async sync(): Promise<void> {
    const { db, publicClient, chain, deployment } = this.options
    // viem caches the block number for its polling interval; a stale one would hide a deposit just mined.
    const latest = await publicClient.getBlockNumber({ cacheTime: 0 })
    const [cursor] = await db.query<{ next_block: string }>(`SELECT next_block FROM chain_cursor WHERE deployment = $1`, [deployment])
    let from = cursor ? BigInt(cursor.next_block) : this.options.fromBlock
    // A local chain restored from an older state file is behind the cursor: scan again (inserts are idempotent).
    if (from > latest + 1n) from = this.options.fromBlock
    if (from <= latest) {
      const logs = await publicClient.getContractEvents({
        address: chain.contracts.jobEscrow,
        abi: jobEscrowAbi,
        eventName: 'Deposited',
        fromBlock: from,
        toBlock: latest,
      })
      for (const log of logs) {
        await db.query(
          `INSERT INTO escrow_deposits (deployment, tx_hash, log_index, job_id, requester, amount, block_number)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
          [deployment, log.transactionHash, log.logIndex, log.args.specHash, log.args.requester, String(log.args.amount), Number(log.blockNumber)],
        )
      }
      await db.query(
        `INSERT INTO chain_cursor (deployment, next_block) VALUES ($1, $2)
         ON CONFLICT (deployment) DO UPDATE SET next_block = EXCLUDED.next_block`,
        [deployment, String(latest + 1n)],
      )
    }
    const paid = await db.query<{ id: Hash; spec: JobSpec }>(`SELECT id, spec FROM jobs WHERE spec ? 'payment'`)
    for (const { id, spec } of paid) {
      this.requesters.set(id, getAddress(spec.payment!.requester))
      await this.refresh(id)
    }
  }

  /** The requester the job's spec names; its escrow is the job's. */
  async requesterOf(jobId: Hash): Promise<Address> {
    let requester = this.requesters.get(jobId)
    if (!requester) {
      const [row] = await this.options.db.query<{ spec: JobSpec }>(`SELECT spec FROM jobs WHERE id = $1`, [jobId])
      const named = row?.spec.payment?.requester
      if (!named) throw new Error(`job ${jobId} has no payment terms, so no escrow`)
      requester = getAddress(named)
      this.requesters.set(jobId, requester)
    }
    return requester
  }

  /** Reads one job's escrow (the named requester's) from the chain now. */
  async refresh(jobId: Hash): Promise<FundingState> {
    const { db, publicClient, chain, deployment } = this.options
    const requester = await this.requesterOf(jobId)
    const [, closed, refunded, deposited, charged] = await publicClient.readContract({
      address: chain.contracts.jobEscrow,
      abi: jobEscrowAbi,
      functionName: 'jobs',
      args: [jobId, requester],
    })
    const state: FundingState = { requester, deposited, charged, closed, refunded }
    const previous = this.funding.get(jobId)
    this.funding.set(jobId, state)
    if (!previous || previous.deposited !== deposited || previous.charged !== charged || previous.refunded !== refunded) {
      await db.query(
        `INSERT INTO job_funding (deployment, job_id, requester, deposited, charged, refunded, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (deployment, job_id) DO UPDATE SET requester = EXCLUDED.requester, deposited = EXCLUDED.deposited,
           charged = EXCLUDED.charged, refunded = EXCLUDED.refunded, updated_at = EXCLUDED.updated_at`,
        [deployment, jobId, requester, String(deposited), String(charged), refunded, (this.options.now ?? Date.now)()],
      )
    }
    return state
  }

  /** Escrow as last read, fetching it once if this job was never read. */
  async state(jobId: Hash): Promise<FundingState> {
    return this.funding.get(jobId) ?? this.refresh(jobId)
  }

  /** Jobs whose escrow received something, with what it holds and whether it was refunded: the ones epochs may charge. */
  async fundedJobs(): Promise<FundedJob[]> {
    const rows = await this.options.db.query<{ job_id: Hash; deposited: string; charged: string; refunded: boolean; spec: JobSpec }>(
      `SELECT f.job_id, f.deposited, f.charged, f.refunded, j.spec FROM job_funding f JOIN jobs j ON j.id = f.job_id
        WHERE f.deployment = $1 AND f.deposited > 0 ORDER BY f.job_id`,
      [this.options.deployment],
    )
    const caps = await this.budgetCaps(rows.map((r) => r.job_id))
    return rows
      .filter((r) => r.spec.payment)
      .map((r) => {
        // Epochs pay from the escrow or the owner's cap on it, whichever is lower (never below what was
        // owed when the cap was set, coordinator/owner.ts).
        const deposited = BigInt(r.deposited)
        const cap = caps.get(r.job_id) ?? null
        return {
          id: r.job_id,
          payment: r.spec.payment!,
          examplesPerUnit: examplesPerUnit(r.spec.training),
          deposited: cap !== null && cap < deposited ? cap : deposited,
          charged: BigInt(r.charged),
          refunded: r.refunded,
        }
      })
  }

  private async budgetCaps(jobIds: readonly Hash[]): Promise<Map<Hash, bigint>> {
    if (jobIds.length === 0) return new Map()
    const rows = await this.options.db.query<{ id: Hash; budget_cap: string }>(
      `SELECT id, budget_cap FROM jobs WHERE id = ANY($1::text[]) AND budget_cap IS NOT NULL`,
      [[...jobIds]],
    )
    return new Map(rows.map((r) => [r.id, BigInt(r.budget_cap)]))
  }

  /** What the job owes its contributors now (see JobObligations), from the escrow as last read. */
  async obligations(jobId: Hash, payment: PaymentTerms, state?: FundingState): Promise<JobObligations> {
    const escrow = state ?? (await this.state(jobId))
    const [payable, caps, charged] = await Promise.all([
      // Grouped by examples: a unit sized to its contributor's device is paid by the examples it trained.
      this.options.db.query<{ examples: number | null; n: string; training: JobSpec['training'] }>(
        `SELECT examples, count(*) AS n, (SELECT spec->'training' FROM jobs WHERE id = $1) AS training
           FROM attempts WHERE job_id = $1 AND ${PAYABLE} GROUP BY examples`,
        [jobId],
      ),
      this.budgetCaps([jobId]),
      this.options.charged(jobId),
    ])
    const budgetCap = caps.get(jobId) ?? null
    const spendable = budgetCap !== null && budgetCap < escrow.deposited ? budgetCap : escrow.deposited
    const payableTotal = payable.reduce(
      (sum, r) => sum + BigInt(r.n) * unitPrice(BigInt(payment.pricePerUnit), r.examples === null ? null : Number(r.examples), examplesPerUnit(r.training)),
      0n,
    )
    const capped = payableTotal < spendable ? payableTotal : spendable
    return { payable: payableTotal, charged, earned: capped > charged ? capped : charged, spendable, budgetCap }
  }

  async leaseBlocker(job: { id: Hash; spec: JobSpec; round: number }): Promise<string | null> {
    const payment = job.spec.payment
    if (!payment) return null
    const state = await this.state(job.id)
    const fmt = (x: bigint) => `${formatUnits(x, this.options.chain.token.decimals)} ${this.options.chain.token.symbol}`
    if (state.closed || state.refunded) return `the job's escrow is closed`
    const [cap] = await this.options.db.query<{ budget_cap: string | null }>(`SELECT budget_cap FROM jobs WHERE id = $1`, [job.id])
    const budgetCap = cap?.budget_cap == null ? null : BigInt(cap.budget_cap)
    // The owner's cap (never above the escrow when set) stands in for the spec's budget once there is one.
    const budget = budgetCap ?? BigInt(payment.budget)
    if (state.deposited < budget) return `waiting for the requester's escrow deposit (${fmt(state.deposited)} of ${fmt(budget)} deposited)`
    const spendable = budgetCap !== null && budgetCap < state.deposited ? budgetCap : state.deposited
    // A synchronous round needs all K of its units, so a round is started only if the escrow pays for the
    // whole of it. An asynchronous job has no fixed round size: a unit is issued only if the escrow pays for
    // what is owed, every lease still out (each may become a payable answer) and this one.
    // A unit may be sized up to maxInnerSteps by its contributor and is paid by its examples: count each
    // unit still to be answered at the most it can cost.
    const { training } = job.spec
    const unitCost = unitPrice(BigInt(payment.pricePerUnit), (training.maxInnerSteps ?? training.innerSteps) * training.batchSize, examplesPerUnit(training))
    const neededThroughRound = isAsynchronous(job.spec.training)
      ? (await this.obligations(job.id, payment, state)).payable + BigInt((await workInFlight(this.options.db, job.id, (this.options.now ?? Date.now)())).leases + 1) * unitCost
      : BigInt(job.round + 1) * BigInt(job.spec.training.unitsPerRound) * unitCost
    if (neededThroughRound > spendable) {
      return budgetCap !== null && budgetCap < state.deposited
        ? `the owner's budget (${fmt(budgetCap)}) cannot pay for round ${job.round}; waiting for the owner to raise it`
        : `the escrow (${fmt(state.deposited)}) cannot pay for round ${job.round}; waiting for the requester to top it up`
    }
    return null
  }

  async describe(job: { id: Hash; spec: JobSpec; round: number }): Promise<JobPayment | null> {
    const payment = job.spec.payment
    if (!payment) return null
    const state = await this.state(job.id)
    const [deposits, funding, owed] = await Promise.all([
      // Only the named requester's deposits fund the job; others under the same spec hash are not shown as its.
      this.options.db.query<{ tx_hash: Hex; amount: string; block_number: string }>(
        `SELECT tx_hash, amount, block_number FROM escrow_deposits
          WHERE deployment = $1 AND job_id = $2 AND lower(requester) = lower($3) ORDER BY block_number, log_index`,
        [this.options.deployment, job.id, state.requester],
      ),
      this.options.db.query<{ closed_tx: Hex | null }>(`SELECT closed_tx FROM job_funding WHERE deployment = $1 AND job_id = $2`, [
        this.options.deployment,
        job.id,
      ]),
      this.obligations(job.id, payment, state),
    ])
    const { earned, charged, spendable, budgetCap } = owed
    const closed = state.closed || state.refunded
    return {
      status: closed ? 'closed' : state.deposited >= (budgetCap ?? BigInt(payment.budget)) ? 'funded' : 'awaiting_deposit',
      pricePerUnit: payment.pricePerUnit,
      budget: payment.budget,
      deposited: String(state.deposited),
      earned: String(earned),
      charged: String(charged),
      remaining: String(state.deposited - earned),
      requester: state.requester,
      deposits: deposits.map((d) => ({ txHash: d.tx_hash, amount: String(d.amount), blockNumber: Number(d.block_number) })),
      closeTxHash: funding[0]?.closed_tx ?? null,
      budgetCap: budgetCap === null ? null : String(budgetCap),
      spendable: String(spendable),
      // JobEscrow.refund pays deposited − charged, once, and only after close (or the deadline's end).
      refundable: String(state.closed && !state.refunded ? state.deposited - state.charged : 0n),
      refunded: state.refunded,
    }
  }

  async recordClose(jobId: Hash, txHash: Hex): Promise<void> {
    await this.options.db.query(`UPDATE job_funding SET closed_tx = $3 WHERE deployment = $1 AND job_id = $2`, [this.options.deployment, jobId, txHash])
    await this.refresh(jobId)
  }
}
