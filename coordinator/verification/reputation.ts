import { getAddress, type Address } from 'viem'
import { DEFAULT_VERIFICATION, checkRate, type ReputationView, type VerificationPolicy } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'

export interface ReputationRow {
  address: Address
  units_accepted: number
  checks_passed: number
  checks_failed: number
  consecutive_clean: number
  units_rejected: number
  leases_abandoned: number
  slashes: number
  banned_at: string | number | null
  banned_reason: string | null
}

const EMPTY = (address: Address): ReputationRow => ({
  address,
  units_accepted: 0,
  checks_passed: 0,
  checks_failed: 0,
  consecutive_clean: 0,
  units_rejected: 0,
  leases_abandoned: 0,
  slashes: 0,
  banned_at: null,
  banned_reason: null,
})

/**
 * One home for reputation: what the lease gate, the check sampler, the API and the pages read, and every
 * change to it. Per address across jobs: a fresh address is checked most, whichever job it joins.
 */
export async function readReputation(db: Queryable, address: string): Promise<ReputationRow> {
  const wanted = getAddress(address)
  const [row] = await db.query<ReputationRow>(`SELECT * FROM reputation WHERE address = $1`, [wanted])
  return row ? { ...row, address: wanted } : EMPTY(wanted)
}

/**
 * The reputation row of `address` as read by another query that joins it (`to_jsonb(r) AS reputation`,
 * null when the address has none yet): the lease and submission paths read it with the job row, one
 * statement instead of two.
 */
export function reputationFrom(joined: ReputationRow | null | undefined, address: string): ReputationRow {
  const wanted = getAddress(address)
  return joined ? { ...joined, address: wanted } : EMPTY(wanted)
}

export async function readReputations(db: Queryable, addresses: string[]): Promise<Map<Address, ReputationRow>> {
  const wanted = [...new Set(addresses.map((a) => getAddress(a)))]
  const rows = wanted.length ? await db.query<ReputationRow>(`SELECT * FROM reputation WHERE address = ANY($1::text[])`, [wanted]) : []
  const found = new Map(rows.map((r) => [getAddress(r.address), r]))
  return new Map(wanted.map((a) => [a, found.get(a) ?? EMPTY(a)]))
}

/**
 * Clean checks an address needs before its agreement alone can pass someone else's unit. Below this, an
 * agreement is confirmed by the referee: twenty fresh addresses of one owner submitting the same lie (all
 * zeros, say) would otherwise vouch for each other.
 */
export const VOUCHING_CHECKS = 3

export function canVouch(row: ReputationRow): boolean {
  return !isBanned(row) && Number(row.checks_passed) >= VOUCHING_CHECKS
}

export function isBanned(row: ReputationRow): boolean {
  return row.banned_at !== null
}

/** The chance that this address's next unit is checked under `policy`. */
export function rateFor(row: ReputationRow, policy: VerificationPolicy, staked: boolean): number {
  return checkRate(policy, { consecutiveClean: Number(row.consecutive_clean), staked, checksFailed: Number(row.checks_failed) })
}

export function reputationView(row: ReputationRow, policy: VerificationPolicy = DEFAULT_VERIFICATION): ReputationView {
  return {
    address: getAddress(row.address),
    unitsAccepted: Math.max(0, Number(row.units_accepted) - Number(row.units_rejected)),
    checksPassed: Number(row.checks_passed),
    checksFailed: Number(row.checks_failed),
    unitsRejected: Number(row.units_rejected),
    consecutiveClean: Number(row.consecutive_clean),
    leasesAbandoned: Number(row.leases_abandoned),
    slashes: Number(row.slashes),
    banned: isBanned(row),
    bannedReason: row.banned_reason,
    checkRate: rateFor(row, policy, true),
  }
}

type Change = 'accepted' | 'passed' | 'abandoned'
const CHANGE_SQL: Record<Change, string> = {
  accepted: 'units_accepted = reputation.units_accepted + 1',
  passed: 'checks_passed = reputation.checks_passed + 1, consecutive_clean = reputation.consecutive_clean + 1',
  abandoned: 'leases_abandoned = reputation.leases_abandoned + 1',
}
const INSERT_COLUMN: Record<Change, string> = { accepted: 'units_accepted', passed: 'checks_passed, consecutive_clean', abandoned: 'leases_abandoned' }
const INSERT_VALUES: Record<Change, string> = { accepted: '1', passed: '1, 1', abandoned: '1' }

/**
 * The statement of `recordReputation` with the address and time as parameters `$address` and `$now` (their
 * numbers), and a condition on the row being written (`where`, e.g. `EXISTS (SELECT 1 FROM done)`), so
 * another statement can carry it as a WITH clause and record the change only when its own write happened.
 */
export function reputationChangeSql(change: Change, address: number, now: number, where = 'true'): string {
  return `INSERT INTO reputation (address, ${INSERT_COLUMN[change]}, updated_at) SELECT $${address}::text, ${INSERT_VALUES[change]}, $${now}::bigint WHERE ${where}
     ON CONFLICT (address) DO UPDATE SET ${CHANGE_SQL[change]}, updated_at = $${now}::bigint`
}

export async function recordReputation(db: Queryable, address: string, change: Change, now: number): Promise<void> {
  await db.query(reputationChangeSql(change, 1, 2), [getAddress(address), now])
}

/**
 * An address caught submitting wrong work: a failed check, its clean streak gone, banned (no more units, no
 * later reward leaves) with the reason shown to it. The first ban's reason stays.
 */
export async function recordFailure(db: Queryable, address: string, reason: string, rejectedUnits: number, now: number): Promise<void> {
  await db.query(
    `INSERT INTO reputation (address, checks_failed, units_rejected, banned_at, banned_reason, updated_at) VALUES ($1, 1, $3, $4, $2, $4)
     ON CONFLICT (address) DO UPDATE SET checks_failed = reputation.checks_failed + 1, consecutive_clean = 0,
            units_rejected = reputation.units_rejected + $3, banned_at = coalesce(reputation.banned_at, $4),
            banned_reason = coalesce(reputation.banned_reason, $2), updated_at = $4`,
    [getAddress(address), reason, rejectedUnits, now],
  )
}
