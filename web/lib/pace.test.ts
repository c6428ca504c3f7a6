import { describe, expect, it } from 'vitest'
import type { RoundRecord } from '../../src/protocol/index.ts'
import { estimatePace, formatTimeLeft } from './pace.ts'

const round = (r: number, closedAt: number) => ({ round: r, closedAt }) as RoundRecord

describe('estimatePace', () => {
  it('has no estimate before two rounds closed or after the last', () => {
    expect(estimatePace([], 10)).toBeNull()
    expect(estimatePace([round(0, 1000)], 10)).toBeNull()
    expect(estimatePace([round(0, 0), round(1, 1000)], 2)).toBeNull()
  })

  it('projects the recent pace over the rounds left', () => {
    const history = [round(0, 0), round(1, 10_000), round(2, 20_000)]
    expect(estimatePace(history, 10)).toEqual({ msPerRound: 10_000, msLeft: 70_000 })
  })

  it('follows the last rounds when the pool speeds up', () => {
    // Slow start (60 s a round), then 6 rounds at 5 s each: the estimate uses the last 5 intervals only.
    const history = [round(0, 0), round(1, 60_000), ...Array.from({ length: 6 }, (_, i) => round(i + 2, 60_000 + 5_000 * (i + 1)))]
    expect(estimatePace(history, 20)!.msPerRound).toBe(5_000)
  })
})

describe('formatTimeLeft', () => {
  it('reads like a person would say it', () => {
    expect(formatTimeLeft(400)).toBe('about 1 s')
    expect(formatTimeLeft(42_000)).toBe('about 42 s')
    expect(formatTimeLeft(3 * 60_000)).toBe('about 3 min')
    expect(formatTimeLeft(125 * 60_000)).toBe('about 2 h 5 min')
    expect(formatTimeLeft(120 * 60_000)).toBe('about 2 h')
  })
})
