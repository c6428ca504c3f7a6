import { formatUnits, getAddress, isAddress, type Address, type PublicClient } from 'viem'
import { disputeResolverAbi, jobEscrowAbi, stakeManagerAbi } from '../../contracts/generated/index.ts'
import type { ChainInfo, EpochRecord, FaucetResult, Hash, JobSpec, RewardsView } from '../../src/protocol/index.ts'
import type { Database } from '../db.ts'
import { CoordinatorError } from '../errors.ts'
import { DisputeSubmitter } from './disputes.ts'
import { earnedBy } from './earnings.ts'
import { EpochService } from './epochs.ts'
import { Faucet } from './faucet.ts'
import { FrozenSweeper } from './frozen.ts'
import { EscrowWatcher, workInFlight } from './funding.ts'
import type { TransactionQueue } from './transactions.ts'
import { KeyedMutex } from '../mutex.ts'
import { SETTLEMENT_LOCK, type HeldLock, type ReplicaLocks } from '../replicaLocks.ts'

export interface SettlementOptions {
  db: Database
  chain: ChainInfo
  publicClient: PublicClient
  transactions: TransactionQueue
  /** Identifies one deployment of the contracts: chain id, distributor and the deployment block's hash. */
  deployment: string
  fromBlock: bigint
  epochSeconds: number
  /** Local chain only. `stake`: what the faucet stakes for a new address (the paid preset's minimum stake). */
  faucet?: { ether: bigint; tokens: bigint; stake: bigint }
  now?: () => number
  log?: (message: string) => void
  /**
   * Shared with the other coordinator processes on the same PostgreSQL: one of them at a time runs the
   * settlement tick, whose transactions all come from the one coordinator account.
   */
  locks?: ReplicaLocks
}

/** How often the escrow of every paid job is re-read: a deposit unblocks its job within this. */
const ESCROW_POLL_MS = 1000

/** How long a stake read from the chain is trusted: the lease gate asks on every lease, stakes change rarely. */
const STAKE_CACHE_MS = 5000

/**
 * The coordinator's side of the chain: watches escrows (which gate the issuing of units), closes reward
 * epochs on a timer, closes the escrow of finished and cancelled jobs once their last charge is posted,
 * sends dispute evidence, sweeps frozen rewards to the treasury, serves proofs and stakes, and runs the
 * local faucet.
 */
export class Settlement {
  readonly escrow: EscrowWatcher
  readonly epochs: EpochService
  readonly disputes: DisputeSubmitter
  readonly frozen: FrozenSweeper
  private readonly faucet: Faucet | null
  private readonly stakes = new Map<Address, { amount: bigint; at: number }>()
  private timers: ReturnType<typeof setInterval>[] = []
  private nextEpochAt: number | null = null
  private running: Promise<unknown> = Promise.resolve()

  constructor(readonly options: SettlementOptions) {
    const { db, publicClient, transactions, chain, deployment, now, log } = options
    // Each reads the other lazily: epochs pay from funded escrows, escrows report what epochs charged.
    this.escrow = new EscrowWatcher({ db, publicClient, chain, deployment, fromBlock: options.fromBlock, charged: (job) => this.epochs.charged(job), now })
    this.epochs = new EpochService({ db, publicClient, transactions, chain, deployment, escrow: this.escrow, now, log })
    this.disputes = new DisputeSubmitter({ db, publicClient, transactions, chain, epochs: this.epochs, now, log })
    this.frozen = new FrozenSweeper({ db, publicClient, transactions, chain, deployment, fromBlock: options.fromBlock, epochs: this.epochs, now, log })
    this.faucet = options.faucet ? new Faucet({ db, publicClient, transactions, chain, deployment, ...options.faucet, now }) : null
  }

  get chain(): ChainInfo {
    return this.options.chain
  }

  /** Reads the chain once (so the first leases already know about deposits), then starts the timers. */
  async start(): Promise<void> {
    await this.escrow.sync()
    const every = (ms: number, task: () => Promise<unknown>, what: string) => {
      let busy = false
      this.timers.push(
        setInterval(() => {
          if (busy) return
          busy = true
          const run = task()
            .catch((error: unknown) => this.options.log?.(`${what} failed: ${(error as Error).message}`))
            .finally(() => (busy = false))
          this.running = run
        }, ms),
      )
    }
    every(ESCROW_POLL_MS, () => this.escrow.sync(), 'escrow sync')
    this.nextEpochAt = Date.now() + this.options.epochSeconds * 1000
    every(this.options.epochSeconds * 1000, async () => {
      this.nextEpochAt = Date.now() + this.options.epochSeconds * 1000
      await this.epochLock.run('epoch', () => this.timedTick())
    }, 'epoch')
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
    await this.running
  }

  /**
   * Builds and posts an epoch now (the timer calls this; tests and the bench call it directly), then
   * closes the escrows of finished and cancelled jobs, sends the dispute evidence whose epoch is now
   * posted, and sweeps frozen rewards whose last root became claimable. Escrows are read first, so a refund
   * that already landed is never charged.
   */
  async closeEpoch(): Promise<EpochRecord | null> {
    // One at a time: the timer and a direct call (tests, the bench) racing would both see an escrow
    // open and both send its close, and the second reverts with JobAlreadyClosed. Across replicas the
    // same holds through the advisory lock; a direct call waits for another replica's tick to end.
    return this.epochLock.run('epoch', async () => {
      const lock = await this.options.locks?.acquire(SETTLEMENT_LOCK)
      try {
        return await this.closeEpochNow()
      } finally {
        await lock?.release()
      }
    })
  }

  private readonly epochLock = new KeyedMutex()

  /**
   * The timer's tick. With replicas, each has the timer, and the tick is skipped when another replica
   * holds the settlement lock, or ran the tick less than an epoch ago (the time is kept in the store): the
   * replicas together close one epoch per period, as one coordinator does, and when the one that ticked
   * goes away another takes over within a period.
   */
  private async timedTick(): Promise<void> {
    const { locks, db, deployment, epochSeconds } = this.options
    if (!locks) {
      await this.closeEpochNow()
      return
    }
    const lock: HeldLock | null = await locks.tryAcquire(SETTLEMENT_LOCK)
    if (!lock) return
    try {
      // Due when the last tick (by the database's clock, which every replica shares) is at least 0.9 periods
      // old: the slack absorbs timers of different processes drifting by milliseconds.
      const due = await db.query(
        `INSERT INTO settings (key, value) VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
          WHERE settings.value::bigint <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $2
         RETURNING value`,
        [`settlement_tick_at:${deployment}`, epochSeconds * 900],
      )
      if (due.length === 0) return
      await this.closeEpochNow()
    } finally {
      await lock.release()
    }
  }

  private async closeEpochNow(): Promise<EpochRecord | null> {
    await this.escrow.sync()
    let record: EpochRecord | null = null
    let failure: unknown = null
    try {
      record = await this.epochs.tick()
      await this.closeEndedEscrows()
    } catch (error) {
      failure = error
    }
    // Double-sign evidence and sweeps of already posted roots do not depend on this epoch.
    await this.disputes.tick()
    await this.frozen.tick()
    if (failure !== null) throw failure
    return record
  }

  /**
   * What a slash of `address` reaches now (active and pending stake in StakeManager): the lease gate
   * compares it with a job's minimum stake. Cached for a few seconds per address.
   */
  private slash: Promise<number> | null = null

  /** Read once: DisputeResolver's slash share is immutable. */
  slashBps(): Promise<number> {
    this.slash ??= this.options.publicClient
      .readContract({ address: this.options.chain.contracts.disputeResolver, abi: disputeResolverAbi, functionName: 'slashBps' })
      .then(Number)
    this.slash.catch(() => (this.slash = null))
    return this.slash
  }

  formatAmount(amount: bigint): string {
    return `${formatUnits(amount, this.options.chain.token.decimals)} ${this.options.chain.token.symbol}`
  }

  async stakeOf(address: Address): Promise<bigint> {
    const account = getAddress(address)
    const cached = this.stakes.get(account)
    if (cached && Date.now() - cached.at < STAKE_CACHE_MS) return cached.amount
    const amount = await this.options.publicClient.readContract({
      address: this.options.chain.contracts.stakeManager,
      abi: stakeManagerAbi,
      functionName: 'slashableOf',
      args: [account],
    })
    // No stake is not remembered: the address is about to stake (the page's stake form, the faucet), and a
    // remembered zero would refuse its next lease for the cache's lifetime.
    if (amount > 0n) this.stakes.set(account, { amount, at: Date.now() })
    if (this.stakes.size > 10_000) this.stakes.delete(this.stakes.keys().next().value!)
    return amount
  }

  /**
   * The escrow of a job that ended (finished, or cancelled by its owner) is closed once nothing of it is in
   * flight (no live lease, no answer under check: a contributor still working on a cancelled job is paid
   * for what it hands in before its lease ends) and posted roots have charged all it owes (the rule in
   * EscrowWatcher.obligations, checks included). Then the requester can take back the rest with
   * `JobEscrow.refund` from their own wallet.
   */
  private async closeEndedEscrows(): Promise<void> {
    const { db, chain, transactions, deployment } = this.options
    const ended = await db.query<{ id: Hash; spec: JobSpec; status: string }>(
      `SELECT j.id, j.spec, j.status FROM jobs j JOIN job_funding f ON f.job_id = j.id AND f.deployment = $1
        WHERE j.status IN ('finished', 'cancelled') AND f.closed_tx IS NULL AND f.deposited > 0`,
      [deployment],
    )
    const now = (this.options.now ?? Date.now)()
    for (const job of ended) {
      const payment = job.spec.payment
      if (!payment) continue
      const state = await this.escrow.state(job.id)
      if (state.closed || state.refunded) continue
      const out = await workInFlight(db, job.id, now)
      // A finished job's leases can no longer be answered (stale_round), so only its checks are waited
      // for: an asynchronous job finishes while tabs still hold prefetched leases and answers are under check.
      if ((job.status === 'cancelled' && out.leases > 0) || out.checks > 0) continue
      const owed = await this.escrow.obligations(job.id, payment, state)
      if (owed.charged < owed.earned) continue
      const receipt = await transactions.send(`close escrow of ${job.id.slice(0, 10)}`, () =>
        transactions.wallet.writeContract({ address: chain.contracts.jobEscrow, abi: jobEscrowAbi, functionName: 'close', args: [job.id, state.requester] }),
      )
      await this.escrow.recordClose(job.id, receipt.transactionHash)
      this.options.log?.(`job ${job.id.slice(0, 10)} ${job.status} and fully charged: escrow closed (${receipt.transactionHash})`)
    }
  }

  async rewards(accountInput: string): Promise<RewardsView> {
    if (!isAddress(accountInput, { strict: false })) throw new CoordinatorError('malformed_request', `${accountInput} is not a 20-byte hex address`)
    const account: Address = getAddress(accountInput)
    const block = await this.options.publicClient.getBlock({ blockTag: 'latest' })
    // A chain that mines only on demand (anvil) keeps the last block's time while idle, but the next
    // block, a claim's, gets the wall time: judge claimability by whichever is later.
    const chainTime = Math.max(Number(block.timestamp), Math.floor(Date.now() / 1000))
    const [{ latest, claimable }, earned] = await Promise.all([
      this.epochs.proofs(account, chainTime),
      earnedBy(this.options.db, account, await this.escrow.fundedJobs()),
    ])
    return { address: account, earned: String(earned), latest, claimable, chainTime, nextEpochAt: this.nextEpochAt === null ? null : Math.ceil(this.nextEpochAt / 1000) }
  }

  async drip(address: unknown): Promise<FaucetResult> {
    if (!this.faucet) throw new CoordinatorError('faucet_unavailable', 'the faucet exists only on the local chain')
    const result = await this.faucet.drip(address)
    this.stakes.delete(result.address)
    return result
  }
}
