import { describe, expect, it } from 'vitest'
import { StakeAmountError, parseStakeAmount } from './stakeCard.ts'

describe('the amount typed into the stake box', () => {
  it('is taken exactly, in base units', () => {
    expect(parseStakeAmount(' 10 ', 18, 'TTT')).toBe(10n * 10n ** 18n)
    expect(parseStakeAmount('2.5', 18, 'TTT')).toBe(25n * 10n ** 17n)
    expect(parseStakeAmount('.5', 6, 'USDC')).toBe(500_000n)
  })

  it('is refused with a message that says what to type', () => {
    const refusal = (text: string, decimals = 18) => {
      try {
        parseStakeAmount(text, decimals, 'TTT')
      } catch (error) {
        expect(error).toBeInstanceOf(StakeAmountError)
        expect((error as StakeAmountError).code).toBe('bad_stake_amount')
        return (error as Error).message
      }
      throw new Error(`${text} was accepted`)
    }
    expect(refusal('')).toBe('Enter an amount of TTT, like 10 or 2.5.')
    expect(refusal('ten')).toBe('Enter an amount of TTT, like 10 or 2.5.')
    expect(refusal('1.5', 0)).toBe('TTT has 0 decimals: the amount has more.')
    expect(refusal('0')).toBe('The amount must be more than zero.')
  })
})
