import { describe, expect, it } from 'vitest'
import { DutyGate, GateClosedError, type PauseReason } from './gate.ts'

function clocked(options: { duty: number; hidden?: () => boolean }) {
  let now = 0
  const pauses: PauseReason[] = []
  const gate = new DutyGate({
    duty: options.duty,
    now: () => now,
    // Time moves only when the gate sleeps; a macrotask per sleep lets a test change things meanwhile.
    sleep: async (ms) => {
      now += ms
      await new Promise((resolve) => setTimeout(resolve, 0))
    },
    hidden: options.hidden ?? (() => false),
    onPause: (reason) => pauses.push(reason),
  })
  return { gate, pauses, now: () => now }
}

describe('duty gate', () => {
  it('lets the first unit start at once', async () => {
    const { gate, now } = clocked({ duty: 0.5 })
    await gate.wait()
    expect(now()).toBe(0)
  })

  it('rests so that computing takes at most the duty share of the time', async () => {
    const { gate, now, pauses } = clocked({ duty: 0.25 })
    gate.unitDone(1000)
    await gate.wait()
    // 1 s of compute at 25 %: 3 s of rest.
    expect(now()).toBe(3000)
    expect(pauses).toEqual(['resting', null])
  })

  it('starts nothing while the tab is hidden', async () => {
    let hidden = true
    const { gate, now, pauses } = clocked({ duty: 1, hidden: () => hidden })
    const waiting = gate.wait()
    await new Promise((r) => setTimeout(r, 5))
    hidden = false
    await waiting
    expect(now()).toBeGreaterThan(0)
    expect(pauses).toEqual(['hidden', null])
  })

  it('once closed by Stop, never opens again', async () => {
    const { gate } = clocked({ duty: 1 })
    gate.close()
    await expect(gate.wait()).rejects.toBeInstanceOf(GateClosedError)
  })
})
