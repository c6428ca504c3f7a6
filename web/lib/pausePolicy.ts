/**
 * When a contributing tab computes, as pure functions of what the page observes: the duty cycle (the share
 * of time spent computing) and the automatic pauses (tab hidden, battery discharging, the page turning
 * janky). The page feeds in events and clocks; nothing here touches the DOM, so the rules are tested alone.
 */

/** The duty cycle's bounds: below 10 % a unit's lease would mostly be spent resting. */
export const MIN_DUTY = 0.1
export const MAX_DUTY = 1

export function clampDuty(duty: number): number {
  if (!Number.isFinite(duty)) return MAX_DUTY
  return Math.min(MAX_DUTY, Math.max(MIN_DUTY, duty))
}

/**
 * How long to rest after a unit that computed for `computeMs` so that computing takes a share `duty` of the
 * time: t·(1−d)/d. At 100 % there is no rest; at 25 %, three times the unit's time.
 */
export function dutyCycleRestMs(computeMs: number, duty: number): number {
  const d = clampDuty(duty)
  if (!(computeMs > 0)) return 0
  return Math.round((computeMs * (1 - d)) / d)
}

export type PauseCode = 'hidden' | 'battery' | 'janky'

/** Why the tab does not compute now, in words for the page. */
export interface PauseReason {
  code: PauseCode
  message: string
}

/** What the page last observed. `battery` is null where the Battery API does not exist. */
export interface PauseSignals {
  hidden: boolean
  battery: { charging: boolean; level: number } | null
  janky: boolean
}

/** Which automatic pauses the person left on (each has a checkbox on the page). */
export interface PausePreferences {
  whenHidden: boolean
  onBattery: boolean
  whenJanky: boolean
}

export const DEFAULT_PAUSE_PREFERENCES: PausePreferences = { whenHidden: true, onBattery: true, whenJanky: true }

/** Every reason to pause now, in a fixed order; empty: compute. */
export function pauseReasons(signals: PauseSignals, preferences: PausePreferences): PauseReason[] {
  const reasons: PauseReason[] = []
  if (preferences.whenHidden && signals.hidden) {
    reasons.push({ code: 'hidden', message: 'this tab is hidden; training resumes when you come back to it' })
  }
  if (preferences.onBattery && signals.battery && !signals.battery.charging) {
    reasons.push({
      code: 'battery',
      message: `the computer runs on battery (${Math.round(signals.battery.level * 100)} %); training resumes when it is plugged in`,
    })
  }
  if (preferences.whenJanky && signals.janky) {
    reasons.push({ code: 'janky', message: 'the page is responding slowly (long tasks); training resumes once it has been smooth for a while' })
  }
  return reasons
}

export interface JankOptions {
  /** The window over which blocked main-thread time is summed. */
  windowMs: number
  /** Share of the window spent in long tasks that makes the page janky. */
  enterShare: number
  /** The page is smooth again this long after the last long task ended. */
  quietMs: number
}

/**
 * One fifth of five seconds blocked by long tasks (50 ms or more each, as the browser reports them) is a page
 * that stutters visibly; ten quiet seconds before resuming, so a pause does not flap with every hiccup.
 */
export const DEFAULT_JANK: JankOptions = { windowMs: 5_000, enterShare: 0.2, quietMs: 10_000 }

/**
 * Long tasks of the page's main thread in, janky or not out. Training runs in a Worker, so its own work
 * never shows here: what does is the page (or the machine) struggling, which a pause relieves.
 */
export class JankMeter {
  private tasks: Array<{ start: number; end: number }> = []
  private janky = false

  constructor(private readonly options: JankOptions = DEFAULT_JANK) {}

  /** A long task, as a PerformanceObserver 'longtask' entry gives it (startTime and duration, in ms). */
  record(startTime: number, duration: number): void {
    this.tasks.push({ start: startTime, end: startTime + Math.max(0, duration) })
  }

  /** Whether the page counts as janky at `now` (same clock as the entries: performance.now()). */
  isJanky(now: number): boolean {
    const { windowMs, enterShare, quietMs } = this.options
    this.tasks = this.tasks.filter((t) => t.end > now - Math.max(windowMs, quietMs))
    const from = now - windowMs
    const blocked = this.tasks.reduce((sum, t) => sum + Math.max(0, Math.min(t.end, now) - Math.max(t.start, from)), 0)
    if (blocked >= windowMs * enterShare) this.janky = true
    else if (this.janky) {
      const lastEnd = this.tasks.reduce((latest, t) => Math.max(latest, t.end), -Infinity)
      if (now - lastEnd >= quietMs) this.janky = false
    }
    return this.janky
  }
}
