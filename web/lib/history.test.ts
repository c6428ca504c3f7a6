import 'fake-indexeddb/auto'
import { describe, expect, it } from 'vitest'
import { deviceSpeed, historyKey, openHistory, summarize, throughput, unsettled, withStatus, SETTLE_MS, type UnitHistoryEntry } from './history.ts'

const address = '0x00000000000000000000000000000000000000Aa' as const
const jobId = `0x${'ab'.repeat(32)}`

function entry(unit: number, patch: Partial<UnitHistoryEntry> = {}): UnitHistoryEntry {
  return {
    key: historyKey(address, jobId, 0, unit),
    address,
    jobId,
    round: 0,
    unit,
    finishedAt: 1_000 * (unit + 1),
    outcome: 'accepted',
    examples: 64,
    computeMs: 500,
    status: null,
    checked: false,
    polledAt: 0,
    ...patch,
  }
}

describe('contribution history', () => {
  it('survives closing and reopening the database (a reload)', async () => {
    const name = `history-${Math.random()}`
    const first = await openHistory(name)
    await first.put(entry(0))
    await first.put(entry(1, { outcome: 'refused' }))
    first.close()
    const again = await openHistory(name)
    const entries = await again.list(address, jobId)
    expect(entries.map((e) => [e.unit, e.outcome])).toEqual([[0, 'accepted'], [1, 'refused']])
    expect(await again.list(address, `0x${'cd'.repeat(32)}`)).toEqual([])
    again.close()
  })

  it('counts units done, checked and rejected from what the coordinator said', () => {
    const now = 10_000
    const entries = [
      withStatus(entry(0), 'checking', now),
      withStatus(withStatus(entry(1), 'checking', now), 'accepted', now),
      withStatus(withStatus(entry(2), 'checking', now), 'rejected', now),
      withStatus(entry(3), 'accepted', now),
      entry(4, { outcome: 'refused' }),
    ]
    expect(summarize(entries)).toEqual({ done: 4, refused: 1, checked: 3, checking: 1, rejected: 1, examples: 256 })
  })

  it('measures examples per second delivered and while computing', () => {
    const entries = [entry(0), entry(1), entry(2)]
    // 3 × 64 examples finished within the 3 s since the session started.
    expect(throughput(entries, 3_000, 0)).toBeCloseTo(64)
    expect(throughput(entries, 3_000, 3_000)).toBe(0)
    expect(deviceSpeed(entries)).toBeCloseTo(128)
    expect(deviceSpeed([])).toBeNull()
  })

  it('polls accepted units until they settle, least recently asked first', () => {
    const now = 100_000
    const entries = [
      entry(0, { polledAt: 50_000 }),
      entry(1, { polledAt: 10_000 }),
      entry(2, { status: 'rejected' }),
      entry(3, { outcome: 'refused' }),
      entry(4, { finishedAt: now - SETTLE_MS - 1, status: 'accepted' }),
      entry(5, { finishedAt: now - SETTLE_MS - 1, status: 'checking' }),
    ]
    expect(unsettled(entries, now, 10).map((e) => e.unit)).toEqual([5, 1, 0])
    expect(unsettled(entries, now, 1).map((e) => e.unit)).toEqual([5])
  })
})
