import { formatUnits, getAddress, type Address } from 'viem'
import { setBudgetRequestSchema, type Hash, type JobSpec, type JobStatus, type OwnerAction, type OwnerActionResult } from '../src/protocol/index.ts'
import { CoordinatorError } from './errors.ts'
import type { JobService } from './jobs.ts'
import { jobRow, type JobRow } from './rows.ts'
import { workInFlight, type EscrowWatcher } from './settlement/funding.ts'

/**
 * What the owner of a job (the requester its spec's payment terms name, signed in with Ethereum) may do
 * with it: pause and resume the issuing of units, cancel it for good (so its escrow is closed and the
 * unspent rest goes back), and cap or raise its budget.
 *
 * Work already out is honoured: a paused or cancelled job issues no new lease (leasing.ts answers
 * `job_paused` / `job_cancelled`), but a unit leased before may still be answered until its lease ends,
 * its check settles as usual, and the contributor is paid for it. A cancelled job's escrow is closed by
 * settlement (Settlement.closeEndedEscrows) only once that work is in and charged.
 */
export class OwnerActions {
  constructor(
    private readonly options: {
      jobs: JobService
      /** The escrows; null when the coordinator runs without a chain (budgets cannot change then). */
      escrow: EscrowWatcher | null
      /** A token amount as a person reads it, e.g. `12.5 TTT`. */
      formatAmount?: (amount: bigint) => string
    },
  ) {}

  private get db() {
    return this.options.jobs.options.db
  }

  private now(): number {
    return (this.options.jobs.options.now ?? Date.now)()
  }

  private fmt(amount: bigint): string {
    return this.options.formatAmount?.(amount) ?? `${formatUnits(amount, 18)} (${amount} base units)`
  }

  /** The job, if `caller` owns it: `no_owner` for a job without payment terms, `not_owner` for anyone else. */
  private async owned(jobId: string, caller: Address): Promise<JobRow & { spec: JobSpec & { payment: NonNullable<JobSpec['payment']> } }> {
    const job = await jobRow(this.db, jobId)
    const requester = job.spec.payment?.requester
    if (!requester) {
      throw new CoordinatorError('no_owner', `job ${job.id} has no payment terms, so no requester owns it; nobody can pause, cancel or fund it`)
    }
    if (getAddress(requester) !== getAddress(caller)) {
      throw new CoordinatorError('not_owner', `only the job's requester ${getAddress(requester)} may do this; you are signed in as ${getAddress(caller)}`)
    }
    return job as JobRow & { spec: JobSpec & { payment: NonNullable<JobSpec['payment']> } }
  }

  /**
   * Moves the job from one of `from` to `to`; a job already in `to` is left as it is (the action is
   * idempotent). The update is conditional, so two owner requests racing each other, or a round closing
   * the job as finished, cannot be overwritten.
   */
  private async transition(job: JobRow, from: JobStatus[], to: JobStatus): Promise<void> {
    if (job.status === to) return
    if (job.status === 'finished') throw new CoordinatorError('job_finished', `job ${job.id} has finished all its rounds; there is nothing to ${verb(to)}`)
    if (job.status === 'cancelled') throw new CoordinatorError('job_cancelled', `job ${job.id} was cancelled; a cancelled job cannot be ${to === 'active' ? 'resumed' : 'paused'}`)
    const moved = await this.db.query(
      `UPDATE jobs SET status = $2, status_changed_at = $3 WHERE id = $1 AND status = ANY($4::text[]) RETURNING id`,
      [job.id, to, this.now(), from],
    )
    if (moved.length === 0) {
      // Someone else changed it in between: judge again from what it is now.
      const current = await jobRow(this.db, job.id)
      if (current.status !== to) return this.transition(current, from, to)
    }
    this.options.jobs.events.emit('progress', job.id)
  }

  private async result(action: OwnerAction, jobId: Hash, message: string): Promise<OwnerActionResult> {
    const [{ spec: _spec, ...job }, inFlight] = await Promise.all([this.options.jobs.getJob(jobId), workInFlight(this.db, jobId, this.now())])
    return { action, job, inFlight, message }
  }

  /** No new units until resumed; leases already out may still be answered and are paid. */
  async pause(jobId: string, caller: Address): Promise<OwnerActionResult> {
    const job = await this.owned(jobId, caller)
    await this.transition(job, ['active'], 'paused')
    return this.result('pause', job.id, 'paused: no new units are issued; units already leased may still be handed in until their leases end, and their contributors are paid')
  }

  async resume(jobId: string, caller: Address): Promise<OwnerActionResult> {
    const job = await this.owned(jobId, caller)
    await this.transition(job, ['paused'], 'active')
    // A round whose last answers came in while the job was paused closes now.
    const current = await jobRow(this.db, job.id)
    if (current.status === 'active') await this.options.jobs.closeRound(current.id, current.round)
    return this.result('resume', job.id, 'resumed: units are issued again')
  }

  /**
   * For good: no new units; once the leases still out end and the last epoch has charged what contributors
   * earned, the coordinator closes the escrow and the requester can take the rest back (`JobEscrow.refund`).
   */
  async cancel(jobId: string, caller: Address): Promise<OwnerActionResult> {
    const job = await this.owned(jobId, caller)
    await this.transition(job, ['active', 'paused'], 'cancelled')
    return this.result(
      'cancel',
      job.id,
      'cancelled: no new units are issued. Units already leased may still be handed in until their leases end and are paid; ' +
        'once they are in and the next reward epoch has charged them, the coordinator closes the escrow and you can refund the rest from your wallet (JobEscrow.refund)',
    )
  }

  /**
   * Sets the most the job may spend. Never below what contributors are already owed (`budget_below_owed`,
   * with the amounts); never above what the escrow holds (`escrow_too_small`: deposit the difference into
   * the escrow first, with `JobEscrow.deposit`, then raise it). Units are issued while the rest of
   * min(budget, escrow) pays for a whole round.
   */
  async setBudget(jobId: string, caller: Address, body: unknown): Promise<OwnerActionResult> {
    const parsed = setBudgetRequestSchema.safeParse(body)
    if (!parsed.success) {
      throw new CoordinatorError(
        'malformed_request',
        `a budget is {budget: "<amount in base units, a decimal string>"}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
      )
    }
    const job = await this.owned(jobId, caller)
    if (job.status === 'finished') throw new CoordinatorError('job_finished', `job ${job.id} has finished all its rounds; its budget no longer matters`)
    if (job.status === 'cancelled') throw new CoordinatorError('job_cancelled', `job ${job.id} was cancelled; its budget can no longer change`)
    const escrow = this.options.escrow
    if (!escrow) throw new CoordinatorError('no_chain', 'this coordinator runs without a chain: there is no escrow to budget')
    const budget = BigInt(parsed.data.budget)
    const state = await escrow.refresh(job.id)
    const owed = await escrow.obligations(job.id, job.spec.payment, state)
    if (budget < owed.earned) {
      throw new CoordinatorError(
        'budget_below_owed',
        `a budget of ${this.fmt(budget)} is below what contributors already earned, ${this.fmt(owed.earned)} (${this.fmt(owed.charged)} of it charged); the lowest budget is ${owed.earned}`,
      )
    }
    if (budget > state.deposited) {
      throw new CoordinatorError(
        'escrow_too_small',
        `the escrow holds ${this.fmt(state.deposited)}; to raise the budget to ${this.fmt(budget)}, first deposit ${this.fmt(budget - state.deposited)} ` +
          `(${budget - state.deposited} base units) with JobEscrow.deposit(${job.id}, amount, 0) from ${state.requester}`,
      )
    }
    await this.db.query(`UPDATE jobs SET budget_cap = $2 WHERE id = $1`, [job.id, String(budget)])
    this.options.jobs.events.emit('progress', job.id)
    return this.result('budget', job.id, `budget set to ${this.fmt(budget)}: units are issued while it pays for a whole round`)
  }
}

function verb(status: JobStatus): string {
  return status === 'paused' ? 'pause' : status === 'cancelled' ? 'cancel' : 'resume'
}
