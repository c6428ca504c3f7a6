/** Where the progress goes: stdout in the command, a buffer in tests. */
export interface ProgressOutput {
  write(text: string): void
  /** A terminal: the progress line is rewritten in place. Otherwise plain lines, for logs. */
  isTTY: boolean
  /** Terminal width; the line is cut to it so that it never wraps (a wrapped line cannot be rewritten). */
  columns?: number
}

export interface ProgressState {
  /** `MNIST digits, dense network (0x3f2a1c…)`. */
  job: string
  round: number | null
  rounds: number | null
  /** Units answered: accepted + refused. */
  accepted: number
  refused: number
  /** Training examples in accepted units. */
  examples: number
  lastLoss: number | null
  /** What the address earned, formatted with the token (`12.5 TTT`); null when unknown (no chain, volunteer job). */
  earned: string | null
  /** What the loop is doing now, in a few words: `training`, `waiting: ...`, `retrying in 2 s: ...`. */
  status: string
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`
}

/** Examples a second over the session: what this machine delivered, waits and start-up included. */
export function examplesPerSecond(examples: number, elapsedMs: number): number {
  return elapsedMs > 0 ? examples / (elapsedMs / 1000) : 0
}

/** One progress line: job, round, units, speed, loss, earnings, what it is doing. */
export function formatProgress(state: ProgressState, elapsedMs: number): string {
  const parts = [
    state.job,
    state.round === null ? null : `round ${state.round}${state.rounds === null ? '' : `/${state.rounds}`}`,
    `units ${state.accepted + state.refused} (${state.accepted} accepted, ${state.refused} refused)`,
    `${examplesPerSecond(state.examples, elapsedMs).toFixed(1)} examples/s`,
    state.lastLoss === null ? null : `loss ${state.lastLoss.toFixed(4)}`,
    state.earned === null ? null : `earned ${state.earned}`,
    formatDuration(elapsedMs),
    state.status,
  ]
  return parts.filter((p): p is string => p !== null && p !== '').join(' | ')
}

/** How often a plain (non-terminal) output gets a progress line, at most. */
export const PLAIN_PROGRESS_EVERY_MS = 10_000

/**
 * The progress line: on a terminal rewritten in place (and notes printed above it), elsewhere a plain line
 * at the first accepted unit and then at most every PLAIN_PROGRESS_EVERY_MS, so a log stays readable.
 */
export class ProgressReporter {
  private readonly startedAt: number
  /** When the last plain line was written: the first comes with the first accepted unit (forced) or after the interval. */
  private lastPlain: number
  private shown = false
  private timer: ReturnType<typeof setInterval> | null = null

  constructor(
    private readonly out: ProgressOutput,
    readonly state: ProgressState,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now()
    this.lastPlain = this.startedAt
    // The elapsed time and speed move even while a long unit computes.
    if (out.isTTY) {
      this.timer = setInterval(() => this.render(), 1_000)
      this.timer.unref?.()
    }
  }

  get elapsedMs(): number {
    return this.now() - this.startedAt
  }

  /** A line of its own (an event worth keeping in the scrollback), above the progress line. */
  note(line: string): void {
    this.clear()
    this.out.write(`${line}\n`)
    if (this.out.isTTY) this.draw()
  }

  update(patch: Partial<ProgressState>, options: { force?: boolean } = {}): void {
    Object.assign(this.state, patch)
    this.render(options.force)
  }

  /** The line as it is now: redrawn on a terminal; on plain output when one is due (or `force`). */
  render(force = false): void {
    if (this.out.isTTY) {
      this.draw()
      return
    }
    const now = this.now()
    if (!force && now - this.lastPlain < PLAIN_PROGRESS_EVERY_MS) return
    this.lastPlain = now
    this.out.write(`${formatProgress(this.state, this.elapsedMs)}\n`)
  }

  /** Stops redrawing and leaves the terminal on a fresh line. */
  end(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.clear()
  }

  private draw(): void {
    const width = Math.max(20, (this.out.columns ?? 100) - 1)
    let line = formatProgress(this.state, this.elapsedMs)
    if (line.length > width) line = `${line.slice(0, width - 1)}…`
    this.out.write(`\r${line}\x1b[K`)
    this.shown = true
  }

  private clear(): void {
    if (this.out.isTTY && this.shown) this.out.write('\r\x1b[K')
    this.shown = false
  }
}
