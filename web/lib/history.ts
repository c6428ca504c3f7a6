import { openDB, type DBSchema, type IDBPDatabase } from 'idb'
import type { Address } from 'viem'
import type { UnitRecord } from '../../src/protocol/index.ts'

/**
 * What this browser contributed, unit by unit, kept in IndexedDB so that the contribute page's numbers
 * survive a reload: units done, checked and rejected, examples trained. Per address and job. The
 * coordinator's word on each unit (`UnitRecord.status`) is polled into it until the unit settles.
 */
export interface UnitHistoryEntry {
  /** `${address}|${jobId}|${round}|${unit}`. */
  key: string
  address: Address
  jobId: string
  round: number
  unit: number
  /** Wall clock (ms) when the answer was accepted or refused. */
  finishedAt: number
  /** 'accepted': the coordinator took the answer; 'refused': it said no (stale round, lease ended). */
  outcome: 'accepted' | 'refused'
  examples: number
  computeMs: number
  /** The coordinator's last word on the unit, once polled. */
  status: UnitRecord['status'] | null
  /** Seen under check at least once: its answer was re-executed by someone else. */
  checked: boolean
  /** When the coordinator was last asked (ms), 0 never. */
  polledAt: number
}

export interface HistorySummary {
  done: number
  refused: number
  /** Units whose answer was (or is being) re-executed by someone else. */
  checked: number
  /** Of the checked, those whose check is still under way. */
  checking: number
  rejected: number
  examples: number
}

/** A unit's answer can still be found wrong for this long after it was accepted: it is polled until then. */
export const SETTLE_MS = 15 * 60_000

export function historyKey(address: Address, jobId: string, round: number, unit: number): string {
  return `${address.toLowerCase()}|${jobId}|${round}|${unit}`
}

export function summarize(entries: readonly UnitHistoryEntry[]): HistorySummary {
  const summary: HistorySummary = { done: 0, refused: 0, checked: 0, checking: 0, rejected: 0, examples: 0 }
  for (const e of entries) {
    if (e.outcome === 'refused') {
      summary.refused++
      continue
    }
    summary.done++
    summary.examples += e.examples
    if (e.checked) summary.checked++
    if (e.status === 'checking') summary.checking++
    if (e.status === 'rejected') summary.rejected++
  }
  return summary
}

/**
 * Examples per second actually delivered: the examples of units finished in the last `windowMs`, over that
 * window, or over the time since `since` (the session's start) when that is shorter. Rests and pauses count,
 * so the duty cycle shows here; `deviceSpeed` is the rate while computing.
 */
export function throughput(entries: readonly UnitHistoryEntry[], now: number, since: number, windowMs = 60_000): number {
  const elapsed = Math.min(windowMs, now - since)
  if (elapsed <= 0) return 0
  const from = now - elapsed
  const examples = entries.reduce((sum, e) => (e.outcome === 'accepted' && e.finishedAt > from && e.finishedAt <= now ? sum + e.examples : sum), 0)
  return examples / (elapsed / 1000)
}

/** Examples per second while computing, over the last `count` accepted units; null before the first. */
export function deviceSpeed(entries: readonly UnitHistoryEntry[], count = 5): number | null {
  const recent = entries
    .filter((e) => e.outcome === 'accepted' && e.computeMs > 0)
    .sort((a, b) => a.finishedAt - b.finishedAt)
    .slice(-count)
  if (recent.length === 0) return null
  const examples = recent.reduce((s, e) => s + e.examples, 0)
  const ms = recent.reduce((s, e) => s + e.computeMs, 0)
  return examples / (ms / 1000)
}

/** The coordinator's answer folded into an entry: 'checking' marks it checked for good. */
export function withStatus(entry: UnitHistoryEntry, status: UnitRecord['status'], now: number): UnitHistoryEntry {
  return { ...entry, status, checked: entry.checked || status === 'checking', polledAt: now }
}

/** Accepted entries whose fate may still change, least recently polled first, at most `limit`. */
export function unsettled(entries: readonly UnitHistoryEntry[], now: number, limit: number): UnitHistoryEntry[] {
  return entries
    .filter((e) => e.outcome === 'accepted' && e.status !== 'rejected' && (now - e.finishedAt < SETTLE_MS || e.status === 'checking'))
    .sort((a, b) => a.polledAt - b.polledAt)
    .slice(0, limit)
}

interface HistorySchema extends DBSchema {
  units: { key: string; value: UnitHistoryEntry; indexes: { byJob: [string, string] } }
}

export interface HistoryStore {
  put(entry: UnitHistoryEntry): Promise<void>
  /** Every entry of `address` in `jobId`, oldest first. */
  list(address: Address, jobId: string): Promise<UnitHistoryEntry[]>
  close(): void
}

export const HISTORY_DB = 'tabtrain-history'

/** Opens (creating it the first time) this browser's contribution history. */
export async function openHistory(name = HISTORY_DB): Promise<HistoryStore> {
  const db: IDBPDatabase<HistorySchema> = await openDB<HistorySchema>(name, 1, {
    upgrade(database) {
      const units = database.createObjectStore('units', { keyPath: 'key' })
      units.createIndex('byJob', ['address', 'jobId'])
    },
  })
  return {
    async put(entry) {
      await db.put('units', { ...entry, address: entry.address.toLowerCase() as Address })
    },
    async list(address, jobId) {
      const entries = await db.getAllFromIndex('units', 'byJob', [address.toLowerCase(), jobId])
      return entries.sort((a, b) => a.finishedAt - b.finishedAt)
    },
    close: () => db.close(),
  }
}

/** The same store kept in memory: where IndexedDB is refused (some private modes), numbers last until a reload. */
export function memoryHistory(): HistoryStore {
  const entries = new Map<string, UnitHistoryEntry>()
  return {
    async put(entry) {
      entries.set(entry.key, { ...entry, address: entry.address.toLowerCase() as Address })
    },
    async list(address, jobId) {
      return [...entries.values()].filter((e) => e.address === address.toLowerCase() && e.jobId === jobId).sort((a, b) => a.finishedAt - b.finishedAt)
    },
    close() {},
  }
}
