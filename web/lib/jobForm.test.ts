import { describe, expect, it } from 'vitest'
import { FormFieldError, HYPERPARAMETERS, readAmount, readTraining, suggestedBudget } from './jobForm.ts'

const valid = {
  innerOptimizer: 'adam',
  learningRate: '0.01',
  batchSize: '32',
  innerSteps: '2',
  unitsPerRound: '4',
  rounds: '40',
  outerOptimizer: 'nesterov',
  outerLearningRate: '1',
  outerMomentum: '',
  leaseTtlSeconds: '120',
}

describe('new job form', () => {
  it('reads every hyperparameter as its type', () => {
    const { outerMomentum: _empty, ...typed } = valid
    expect(readTraining(valid)).toEqual({ ...typed, learningRate: 0.01, batchSize: 32, innerSteps: 2, unitsPerRound: 4, rounds: 40, outerLearningRate: 1, leaseTtlSeconds: 120 })
  })

  it('leaves an empty outer momentum out of the draft (the job then takes 0.9) and reads a typed one', () => {
    expect(readTraining(valid)).not.toHaveProperty('outerMomentum')
    expect(readTraining({ ...valid, outerMomentum: ' 0.8 ' }).outerMomentum).toBe(0.8)
    expect(readTraining({ ...valid, outerOptimizer: 'average' }).outerOptimizer).toBe('average')
  })

  it('names the field of the first bad value', () => {
    const bad = (patch: Partial<typeof valid>) => {
      try {
        readTraining({ ...valid, ...patch })
      } catch (error) {
        return error as FormFieldError
      }
      throw new Error('accepted')
    }
    expect(bad({ batchSize: '3.5' })).toMatchObject({ field: 'hp-batchSize', message: 'Batch size (B): must be a whole number' })
    expect(bad({ learningRate: 'fast' })).toMatchObject({ field: 'hp-learningRate', message: 'Learning rate: "fast" is not a number' })
    expect(bad({ rounds: '0' })).toMatchObject({ field: 'hp-rounds' })
    expect(bad({ innerOptimizer: 'rmsprop' })).toMatchObject({ field: 'hp-innerOptimizer' })
    expect(bad({ outerOptimizer: 'adam' })).toMatchObject({ field: 'hp-outerOptimizer' })
    expect(bad({ outerMomentum: '1' })).toMatchObject({ field: 'hp-outerMomentum', message: 'Outer momentum: must be between 0 and 0.999' })
  })

  it('gives every hyperparameter one line of help', () => {
    for (const field of HYPERPARAMETERS) expect(field.help.length).toBeGreaterThan(20)
  })

  it('reads amounts as a person types them, in base units', () => {
    expect(readAmount('price', 'Price', '0.1', 18)).toBe(100_000_000_000_000_000n)
    expect(readAmount('price', 'Price', '12', 18)).toBe(12_000_000_000_000_000_000n)
    expect(() => readAmount('price', 'Price', '1e3', 18)).toThrow('Price: "1e3" is not an amount')
    expect(() => readAmount('price', 'Price', '0', 18)).toThrow('Price: must be more than zero')
    expect(() => readAmount('price', 'Price', '0.1234567', 6)).toThrow('at most 6 decimals')
  })

  it('suggests a budget for every unit and the spot checks', () => {
    // 40 rounds × 4 units = 160 units, plus up to a third more for checks.
    expect(suggestedBudget(10n, 40, 4)).toBe(2140n)
  })
})
