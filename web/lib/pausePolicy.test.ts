import { describe, expect, it } from 'vitest'
import { DEFAULT_JANK, DEFAULT_PAUSE_PREFERENCES, JankMeter, clampDuty, dutyCycleRestMs, pauseReasons } from './pausePolicy.ts'

describe('duty cycle', () => {
  it('rests t·(1−d)/d after a unit of t ms', () => {
    expect(dutyCycleRestMs(1000, 1)).toBe(0)
    expect(dutyCycleRestMs(1000, 0.5)).toBe(1000)
    expect(dutyCycleRestMs(1000, 0.25)).toBe(3000)
    expect(dutyCycleRestMs(1000, 0.1)).toBe(9000)
  })

  it('keeps the share between 10 % and 100 %', () => {
    expect(clampDuty(0)).toBe(0.1)
    expect(clampDuty(2)).toBe(1)
    expect(clampDuty(Number.NaN)).toBe(1)
    expect(dutyCycleRestMs(1000, 0.01)).toBe(9000)
    expect(dutyCycleRestMs(0, 0.5)).toBe(0)
  })
})

describe('automatic pauses', () => {
  const calm = { hidden: false, battery: { charging: true, level: 1 }, janky: false }

  it('computes when nothing says otherwise, also without a Battery API', () => {
    expect(pauseReasons(calm, DEFAULT_PAUSE_PREFERENCES)).toEqual([])
    expect(pauseReasons({ ...calm, battery: null }, DEFAULT_PAUSE_PREFERENCES)).toEqual([])
  })

  it('says why it pauses: hidden tab, battery discharging, janky page', () => {
    const reasons = pauseReasons({ hidden: true, battery: { charging: false, level: 0.42 }, janky: true }, DEFAULT_PAUSE_PREFERENCES)
    expect(reasons.map((r) => r.code)).toEqual(['hidden', 'battery', 'janky'])
    expect(reasons[0]!.message).toMatch(/tab is hidden/)
    expect(reasons[1]!.message).toMatch(/battery \(42 %\)/)
    expect(reasons[2]!.message).toMatch(/responding slowly/)
  })

  it('leaves out a pause the person turned off', () => {
    const reasons = pauseReasons({ hidden: true, battery: { charging: false, level: 0.5 }, janky: false }, { whenHidden: false, onBattery: true, whenJanky: true })
    expect(reasons.map((r) => r.code)).toEqual(['battery'])
  })
})

describe('JankMeter', () => {
  it('is janky once long tasks fill a fifth of the window, and smooth after ten quiet seconds', () => {
    const meter = new JankMeter()
    meter.record(0, 400)
    meter.record(1000, 400)
    expect(meter.isJanky(2000)).toBe(false)
    meter.record(2000, 300)
    expect(meter.isJanky(2400)).toBe(true)
    // Still within the quiet period after the last task (ended at 2300).
    expect(meter.isJanky(2300 + DEFAULT_JANK.quietMs - 1)).toBe(true)
    expect(meter.isJanky(2300 + DEFAULT_JANK.quietMs)).toBe(false)
  })

  it('ignores long tasks that fell out of the window', () => {
    const meter = new JankMeter()
    meter.record(0, 900)
    meter.record(6000, 200)
    expect(meter.isJanky(6300)).toBe(false)
  })
})
