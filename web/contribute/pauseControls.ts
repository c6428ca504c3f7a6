import {
  DEFAULT_PAUSE_PREFERENCES,
  JankMeter,
  clampDuty,
  dutyCycleRestMs,
  pauseReasons,
  type PausePreferences,
  type PauseReason,
  type PauseSignals,
} from '../lib/pausePolicy.ts'
import { byId } from './dom.ts'

export interface PauseControls {
  /** Why training should not run now; empty: it may. */
  reasons(): PauseReason[]
  /** The duty cycle's rest after a unit that computed for `computeMs`. */
  restAfterUnit(computeMs: number): number
  /** Stops watching (timers, observers, listeners). */
  dispose(): void
}

/** Where the person's choices are kept, so a reload keeps the throttle where it was left. */
const DUTY_KEY = 'tabtrain.contribute.duty'
const PREFERENCES_KEY = 'tabtrain.contribute.pauses'
/** How often jankiness is looked at again: it also ends by time passing, with no event to say so. */
const JANK_TICK_MS = 1000

interface BatteryLike extends EventTarget {
  charging: boolean
  level: number
}

function stored<T>(key: string, fallback: T): T {
  try {
    const text = localStorage.getItem(key)
    return text === null ? fallback : { ...fallback, ...(JSON.parse(text) as T) }
  } catch {
    return fallback
  }
}

function store(key: string, value: unknown): void {
  try {
    localStorage.setItem(key, JSON.stringify(value))
  } catch {
    // Storage full or refused (private mode): the choice holds for this page only.
  }
}

/**
 * The throttle's controls (duty-cycle slider, one checkbox per automatic pause) and the watchers behind the
 * automatic pauses: visibilitychange, the Battery API where it exists, and 'longtask' entries. The rules
 * themselves are pausePolicy.ts; `onChange` hears the reasons whenever they change.
 */
export function createPauseControls(onChange: (reasons: PauseReason[]) => void): PauseControls {
  const duty = byId<HTMLInputElement>('duty')
  const dutyValue = byId<HTMLOutputElement>('duty-value')
  const boxes = {
    whenHidden: byId<HTMLInputElement>('pause-hidden'),
    onBattery: byId<HTMLInputElement>('pause-battery'),
    whenJanky: byId<HTMLInputElement>('pause-janky'),
  }
  let preferences: PausePreferences = stored(PREFERENCES_KEY, DEFAULT_PAUSE_PREFERENCES)
  const signals: PauseSignals = { hidden: document.visibilityState === 'hidden', battery: null, janky: false }
  const jank = new JankMeter()
  let last = ''
  const cleanups: Array<() => void> = []

  const evaluate = () => {
    signals.janky = jank.isJanky(performance.now())
    const reasons = pauseReasons(signals, preferences)
    const key = reasons.map((r) => r.message).join('|')
    if (key !== last) {
      last = key
      onChange(reasons)
    }
  }

  // Duty cycle: a share of time computing, 10–100 %.
  const showDuty = () => {
    dutyValue.textContent = `${duty.value} %`
    duty.setAttribute('aria-valuetext', `${duty.value} percent of the time computing`)
  }
  duty.value = String(Math.round(clampDuty(stored(DUTY_KEY, { share: 1 }).share) * 100))
  showDuty()
  duty.addEventListener('input', () => {
    showDuty()
    store(DUTY_KEY, { share: Number(duty.value) / 100 })
  })

  for (const [key, box] of Object.entries(boxes) as Array<[keyof PausePreferences, HTMLInputElement]>) {
    box.checked = preferences[key]
    box.addEventListener('change', () => {
      preferences = { ...preferences, [key]: box.checked }
      store(PREFERENCES_KEY, preferences)
      evaluate()
    })
  }

  const onVisibility = () => {
    signals.hidden = document.visibilityState === 'hidden'
    evaluate()
  }
  document.addEventListener('visibilitychange', onVisibility)
  cleanups.push(() => document.removeEventListener('visibilitychange', onVisibility))

  const getBattery = (navigator as Navigator & { getBattery?: () => Promise<BatteryLike> }).getBattery
  if (getBattery) {
    void getBattery
      .call(navigator)
      .then((battery) => {
        const read = () => {
          signals.battery = { charging: battery.charging, level: battery.level }
          evaluate()
        }
        battery.addEventListener('chargingchange', read)
        battery.addEventListener('levelchange', read)
        cleanups.push(() => {
          battery.removeEventListener('chargingchange', read)
          battery.removeEventListener('levelchange', read)
        })
        read()
      })
      .catch(() => {})
  } else {
    byId('battery-note').textContent = ' (this browser does not say)'
  }

  if (typeof PerformanceObserver !== 'undefined' && PerformanceObserver.supportedEntryTypes?.includes('longtask')) {
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) jank.record(entry.startTime, entry.duration)
      evaluate()
    })
    observer.observe({ type: 'longtask' })
    cleanups.push(() => observer.disconnect())
  } else {
    byId('janky-note').textContent = ' (this browser does not report long tasks)'
  }
  const timer = setInterval(evaluate, JANK_TICK_MS)
  cleanups.push(() => clearInterval(timer))

  return {
    reasons: () => pauseReasons(signals, preferences),
    restAfterUnit: (computeMs) => dutyCycleRestMs(computeMs, Number(duty.value) / 100),
    dispose: () => {
      for (const cleanup of cleanups) cleanup()
    },
  }
}
