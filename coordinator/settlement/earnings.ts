import { getAddress, type Address } from 'viem'
import type { Hash, PaymentTerms } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'

export interface Earnings {
  /** Cumulative amount per account across all funded jobs: the reward tree's leaves. */
  balances: Map<Address, bigint>
  /** Cumulative amount per job: what the escrows owe the distributor so far. */
  jobTotals: Map<Hash, bigint>
}

/**
 * What every account has earned from accepted units of funded jobs: each accepted unit pays its job's
 * price to the address that signed it. A job pays for at most ⌊deposit / price⌋ units, counted in
 * acceptance order, so the totals can never exceed an escrow even if more units were accepted.
 * Computed in SQL with one pass over accepted units; the order is fixed, so recomputing gives the same.
 */
export async function computeEarnings(db: Queryable, jobs: Array<{ id: Hash; payment: PaymentTerms; deposited: bigint }>): Promise<Earnings> {
  const balances = new Map<Address, bigint>()
  const jobTotals = new Map<Hash, bigint>()
  if (jobs.length === 0) return { balances, jobTotals }
  const price = new Map(jobs.map((j) => [j.id, BigInt(j.payment.pricePerUnit)]))
  const caps = jobs.map((j) => String(j.deposited / BigInt(j.payment.pricePerUnit)))
  const rows = await db.query<{ job_id: Hash; contributor: string; units: string }>(
    `WITH caps AS (SELECT * FROM unnest($1::text[], $2::numeric[]) AS c(job_id, cap)),
          ranked AS (
            SELECT u.job_id, u.leased_to,
                   row_number() OVER (PARTITION BY u.job_id ORDER BY u.accepted_at, u.round, u.unit) AS n
              FROM units u JOIN caps c ON c.job_id = u.job_id
             WHERE u.status = 'accepted')
     SELECT r.job_id, r.leased_to AS contributor, count(*) AS units
       FROM ranked r JOIN caps c ON c.job_id = r.job_id
      WHERE r.n <= c.cap
      GROUP BY r.job_id, r.leased_to`,
    [jobs.map((j) => j.id), caps],
  )
  for (const row of rows) {
    const amount = BigInt(row.units) * price.get(row.job_id)!
    const account = getAddress(row.contributor)
    balances.set(account, (balances.get(account) ?? 0n) + amount)
    jobTotals.set(row.job_id, (jobTotals.get(row.job_id) ?? 0n) + amount)
  }
  return { balances, jobTotals }
}

/** One account's earnings across funded jobs, including units not yet in any posted root. */
export async function earnedBy(db: Queryable, account: Address, jobs: Array<{ id: Hash; payment: PaymentTerms }>): Promise<bigint> {
  if (jobs.length === 0) return 0n
  const rows = await db.query<{ job_id: Hash; units: string }>(
    `SELECT job_id, count(*) AS units FROM units WHERE status = 'accepted' AND leased_to = $1 AND job_id = ANY($2::text[]) GROUP BY job_id`,
    [getAddress(account), jobs.map((j) => j.id)],
  )
  const price = new Map(jobs.map((j) => [j.id, BigInt(j.payment.pricePerUnit)]))
  return rows.reduce((sum, r) => sum + BigInt(r.units) * price.get(r.job_id)!, 0n)
}
