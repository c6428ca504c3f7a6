import { getAddress, type Address } from 'viem'
import { splitReferredPrice, unitPrice, type Hash, type PaymentTerms } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'

/** A paid job whose escrow epochs may charge, as last read from the chain. */
export interface FundedJob {
  id: Hash
  payment: PaymentTerms
  /** Examples in a unit of the job's own H: `pricePerUnit` buys that many (a unit sized to a device is paid by its examples). */
  examplesPerUnit: number
  /** What the named requester's escrow received. */
  deposited: bigint
  /** What posted roots charged it. */
  charged: bigint
  /** Refunded escrows are never charged again: the job pays for at most what was charged before. */
  refunded: boolean
}

/** Per job, per account: what the account is owed for that job. */
export type AccountTotals = Map<Hash, Map<Address, bigint>>

export interface Earnings {
  /** Cumulative amount per account across all jobs, banned accounts left out: the reward tree's leaves. */
  balances: Map<Address, bigint>
  /** Cumulative amount per job: what the escrows owe the distributor so far, banned accounts' charged amounts included. */
  jobTotals: Map<Hash, bigint>
  /** Per job and account, banned accounts included: the next epoch's floors. */
  accountTotals: AccountTotals
}

/** SQL condition of a payable attempt: answered, and not found wrong or waiting for a check. */
export const PAYABLE = `status = 'submitted' AND verdict IN ('unchecked', 'passed')`

/**
 * What every account has earned from payable attempts (see PAYABLE) of funded jobs: each pays its job's
 * price to the address that signed it, checks included, in proportion to the examples it trained
 * (`unitPrice`: a unit of the job's own H earns `pricePerUnit`). An attempt leased with a referrer (the site
 * whose widget the contributor trained from, named in its signed lease request) splits that price:
 * `splitReferredPrice` gives the referrer its share and the contributor the rest, so the escrow is charged
 * the price once either way.
 *
 * - Only attempts an epoch has committed count (`epoch IS NOT NULL`), so a unit is never paid by a root
 *   older than the one whose claims tree holds its claim: the verdict window and the payment follow the
 *   same epoch.
 * - `floors` (the previous posted epoch's account totals) never shrink: money a posted root charged stays
 *   counted for its account even if the attempt is later dropped or rejected, or its contributor banned.
 *   Un-charging is impossible on-chain, and a lower leaf would make the next root's total smaller than
 *   what the distributor holds for it. An account's later payable work first fills the part of its floor
 *   that no payable attempt backs any more, so dropped work is not paid twice.
 * - A banned account earns nothing new and gets no leaf; its floor stays in its jobs' totals (the money
 *   was charged, and the chain sweeps it to the treasury if the account is frozen).
 * - A job pays at most its budget: the deposit, or for a refunded escrow what was already charged. New
 *   units are paid in (submitted_at, round, unit, lease_id) order until the budget is spent, so the
 *   totals never exceed the escrow and recomputing gives the same result.
 */
export async function computeEarnings(
  db: Queryable,
  jobs: readonly FundedJob[],
  options: { floors?: AccountTotals; banned?: ReadonlySet<Address> } = {},
): Promise<Earnings> {
  const floors: AccountTotals = options.floors ?? new Map()
  const banned = options.banned ?? new Set<Address>()
  const accountTotals: AccountTotals = new Map()
  // Jobs no longer funded keep what was charged to them.
  for (const [job, accounts] of floors) accountTotals.set(job, new Map(accounts))

  if (jobs.length > 0) {
    const rows = await db.query<{ job_id: Hash; contributor: string; referrer: string | null; examples: number | null }>(
      `SELECT job_id, contributor, referrer, examples FROM attempts
        WHERE job_id = ANY($1::text[]) AND ${PAYABLE} AND epoch IS NOT NULL
        ORDER BY job_id, submitted_at, round, unit, lease_id`,
      [jobs.map((j) => j.id)],
    )
    const byJob = new Map<Hash, Array<{ contributor: Address; referrer: Address | null; examples: number | null }>>()
    for (const row of rows) {
      let list = byJob.get(row.job_id)
      if (!list) byJob.set(row.job_id, (list = []))
      list.push({ contributor: getAddress(row.contributor), referrer: row.referrer ? getAddress(row.referrer) : null, examples: row.examples === null ? null : Number(row.examples) })
    }
    for (const job of jobs) {
      const basePrice = BigInt(job.payment.pricePerUnit)
      const floor = floors.get(job.id) ?? new Map<Address, bigint>()
      const amounts = new Map<Address, bigint>(floor)
      const budget = job.refunded ? job.charged : job.deposited
      let left = budget - [...floor.values()].reduce((a, b) => a + b, 0n)
      const seen = new Map<Address, bigint>()
      for (const attempt of byJob.get(job.id) ?? []) {
        const price = unitPrice(basePrice, attempt.examples, job.examplesPerUnit)
        const split = splitReferredPrice(price)
        if (left < price) break
        // Each credit (the contributor's pay, and the referrer's share when there is one) meets the
        // account's floor on its own, in the same order every time, so recomputing gives the same totals.
        const credits: Array<[Address, bigint]> = attempt.referrer
          ? [[attempt.contributor, split.contributor], [attempt.referrer, split.referrer]]
          : [[attempt.contributor, price]]
        for (const [account, amount] of credits) {
          if (amount === 0n) continue
          const upTo = (seen.get(account) ?? 0n) + amount
          seen.set(account, upTo)
          if (upTo <= (floor.get(account) ?? 0n)) continue // paid by a posted root already
          if (banned.has(account)) continue
          amounts.set(account, (amounts.get(account) ?? 0n) + amount)
          left -= amount
        }
      }
      if (amounts.size > 0) accountTotals.set(job.id, amounts)
    }
  }

  const balances = new Map<Address, bigint>()
  const jobTotals = new Map<Hash, bigint>()
  for (const [job, accounts] of accountTotals) {
    let total = 0n
    for (const [account, amount] of accounts) {
      total += amount
      if (!banned.has(account) && amount > 0n) balances.set(account, (balances.get(account) ?? 0n) + amount)
    }
    jobTotals.set(job, total)
  }
  return { balances, jobTotals, accountTotals }
}

/** Account totals as stored with an epoch: `{job: {account: amount}}`, amounts as decimal strings. */
export function serializeAccountTotals(totals: AccountTotals): string {
  const out: Record<string, Record<string, string>> = {}
  for (const [job, accounts] of [...totals].sort(([a], [b]) => (a < b ? -1 : 1))) {
    out[job] = Object.fromEntries([...accounts].sort(([a], [b]) => (a < b ? -1 : 1)).map(([account, amount]) => [account, String(amount)]))
  }
  return JSON.stringify(out)
}

export function parseAccountTotals(stored: Record<string, Record<string, string>> | null | undefined): AccountTotals {
  const totals: AccountTotals = new Map()
  for (const [job, accounts] of Object.entries(stored ?? {})) {
    totals.set(job as Hash, new Map(Object.entries(accounts).map(([account, amount]) => [getAddress(account), BigInt(amount)])))
  }
  return totals
}

/** Banned addresses (reputation.banned_at set): they get no leaf in later reward trees. */
export async function bannedAddresses(db: Queryable): Promise<Set<Address>> {
  const rows = await db.query<{ address: string }>(`SELECT address FROM reputation WHERE banned_at IS NOT NULL`)
  return new Set(rows.map((r) => getAddress(r.address)))
}

/**
 * One account's earnings across funded jobs from its payable attempts, including those not yet in any
 * posted root: its own units (less the referrer's share where one was named) and its share of the units
 * it referred.
 */
export async function earnedBy(db: Queryable, account: Address, jobs: Array<Pick<FundedJob, 'id' | 'payment' | 'examplesPerUnit'>>): Promise<bigint> {
  if (jobs.length === 0) return 0n
  const rows = await db.query<{ job_id: Hash; examples: number | null; own: string; own_referred: string; referred: string }>(
    `SELECT job_id, examples,
            count(*) FILTER (WHERE lower(contributor) = lower($1) AND referrer IS NULL) AS own,
            count(*) FILTER (WHERE lower(contributor) = lower($1) AND referrer IS NOT NULL) AS own_referred,
            count(*) FILTER (WHERE lower(referrer) = lower($1)) AS referred
       FROM attempts
      WHERE ${PAYABLE} AND (lower(contributor) = lower($1) OR lower(referrer) = lower($1)) AND job_id = ANY($2::text[])
      GROUP BY job_id, examples`,
    [getAddress(account), jobs.map((j) => j.id)],
  )
  const byId = new Map(jobs.map((j) => [j.id, j]))
  return rows.reduce((sum, r) => {
    const job = byId.get(r.job_id)!
    const p = unitPrice(BigInt(job.payment.pricePerUnit), r.examples === null ? null : Number(r.examples), job.examplesPerUnit)
    const split = splitReferredPrice(p)
    return sum + BigInt(r.own) * p + BigInt(r.own_referred) * split.contributor + BigInt(r.referred) * split.referrer
  }, 0n)
}
