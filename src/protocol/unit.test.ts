import { describe, expect, it } from 'vitest'
import { innerStepsOfExamples, issuedInnerSteps, unitExamples, unitInnerSteps, unitPrice } from './unit.ts'

describe("a unit's H, examples and pay", () => {
  const training = { innerSteps: 10, batchSize: 32, maxInnerSteps: 40 }

  it('runs the H the unit was issued with, else the job H', () => {
    expect(unitInnerSteps({}, training)).toBe(10)
    expect(unitInnerSteps({ innerSteps: 25 }, training)).toBe(25)
    expect(unitExamples({ innerSteps: 25 }, training)).toBe(800)
    expect(unitExamples({}, training)).toBe(320)
  })

  it('issues an asked H clamped to the job bounds, and nothing for the job H', () => {
    expect(issuedInnerSteps(training, 25)).toBe(25)
    expect(issuedInnerSteps(training, 400)).toBe(40)
    expect(issuedInnerSteps(training, 3)).toBeNull()
    expect(issuedInnerSteps(training, 10)).toBeNull()
    expect(issuedInnerSteps(training, null)).toBeNull()
    expect(issuedInnerSteps({ innerSteps: 10 }, 25)).toBeNull()
  })

  it('pays by examples: pricePerUnit buys a unit of the job H, rounded down', () => {
    expect(unitPrice(1000n, 320, 320)).toBe(1000n)
    expect(unitPrice(1000n, null, 320)).toBe(1000n)
    expect(unitPrice(1000n, 800, 320)).toBe(2500n)
    expect(unitPrice(1000n, 1280, 320)).toBe(4000n)
    expect(unitPrice(7n, 352, 320)).toBe(7n)
  })

  it('recovers the unit H from the examples recorded for an answer', () => {
    expect(innerStepsOfExamples(800, training)).toEqual({ innerSteps: 25 })
    expect(innerStepsOfExamples('800', training)).toEqual({ innerSteps: 25 })
    expect(innerStepsOfExamples(320, training)).toEqual({})
    expect(innerStepsOfExamples(null, training)).toEqual({})
    expect(innerStepsOfExamples(33, training)).toEqual({})
  })
})
