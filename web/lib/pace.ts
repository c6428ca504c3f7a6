import type { RoundRecord } from '../../src/protocol/index.ts'

/** Rounds whose closing times set the pace: recent enough to follow a pool that grows or shrinks. */
export const PACE_WINDOW_ROUNDS = 5

export interface Pace {
  /** Milliseconds per round over the recent window. */
  msPerRound: number
  /** Estimated milliseconds until the last round closes. */
  msLeft: number
}

/**
 * Time left from the recent pace: the span between the first and last of the last few round closes,
 * divided by the rounds in it. Null until two rounds have closed (one close says nothing about speed)
 * and once the job is done.
 */
export function estimatePace(history: readonly RoundRecord[], rounds: number): Pace | null {
  const closed = [...history].sort((a, b) => a.round - b.round)
  const left = rounds - closed.length
  if (closed.length < 2 || left <= 0) return null
  const window = closed.slice(-PACE_WINDOW_ROUNDS - 1)
  const span = window.at(-1)!.closedAt - window[0]!.closedAt
  if (!(span > 0)) return null
  const msPerRound = span / (window.length - 1)
  return { msPerRound, msLeft: msPerRound * left }
}

/** "about 3 min", "about 2 h 5 min": a person's reading of a duration, rounded to what an estimate merits. */
export function formatTimeLeft(ms: number): string {
  const seconds = Math.round(ms / 1000)
  if (seconds < 60) return `about ${Math.max(1, seconds)} s`
  const minutes = Math.round(seconds / 60)
  if (minutes < 60) return `about ${minutes} min`
  const hours = Math.floor(minutes / 60)
  const rest = minutes % 60
  return rest === 0 ? `about ${hours} h` : `about ${hours} h ${rest} min`
}
