/** Why the widget is not computing right now, or null while it may. */
export type PauseReason = 'hidden' | 'resting' | null

/** The gate was closed for good (the visitor pressed Stop): the lease it held back is never asked for. */
export class GateClosedError extends Error {
  override name = 'GateClosedError'
  constructor() {
    super('stopped by the visitor')
  }
}

export interface GateOptions {
  /** Share of wall time spent computing (0 < duty ≤ 1). */
  duty: number
  now: () => number
  sleep: (ms: number) => Promise<void>
  /** Whether the tab is hidden (document.hidden): no new unit starts until it is visible again. */
  hidden: () => boolean
  onPause?: (reason: PauseReason) => void
}

/** How often a paused gate looks again (tab shown, rest over, gate closed). */
const POLL_MS = 250

/**
 * Holds the next unit back so the widget computes at most `duty` of the time, and never while the tab
 * is hidden. After a unit that computed for t ms it rests t·(1−duty)/duty ms before the next lease: the
 * rest is taken between units, never while holding one, so no lease runs out while the tab idles.
 */
export class DutyGate {
  private restUntil = 0
  private closed = false
  private paused: PauseReason = null

  constructor(private readonly options: GateOptions) {}

  /** Records a finished unit's compute time; the next `wait` rests accordingly. */
  unitDone(computeMs: number): void {
    const { duty, now } = this.options
    this.restUntil = now() + (Math.max(0, computeMs) * (1 - duty)) / duty
  }

  /** Resolves when a new unit may start; throws GateClosedError once `close` was called. */
  async wait(): Promise<void> {
    for (;;) {
      if (this.closed) throw new GateClosedError()
      const reason: PauseReason = this.options.hidden() ? 'hidden' : this.restUntil > this.options.now() ? 'resting' : null
      this.setPaused(reason)
      if (reason === null) return
      const ms = reason === 'resting' ? Math.min(POLL_MS, this.restUntil - this.options.now()) : POLL_MS
      await this.options.sleep(Math.max(1, ms))
    }
  }

  /** Stops for good: a pending or later `wait` throws. */
  close(): void {
    this.closed = true
  }

  private setPaused(reason: PauseReason) {
    if (reason === this.paused) return
    this.paused = reason
    this.options.onPause?.(reason)
  }
}
