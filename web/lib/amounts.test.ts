import { describe, expect, it } from 'vitest'
import { ETHER, formatReadable, formatToken, formatTokenExact } from './amounts.ts'

const TTT = { symbol: 'TTT', decimals: 18 }
const wei = (text: string) => {
  const [integer, fraction = ''] = text.split('.')
  return BigInt(integer! + fraction.padEnd(18, '0'))
}

describe('amounts as a person reads them', () => {
  it('shows a gas balance with four fraction digits, not eighteen', () => {
    expect(formatToken(wei('0.031234567890123456'), ETHER)).toBe('0.0312 ETH')
    expect(formatToken(wei('9999.999873456123456789'), ETHER)).toBe('9,999.9999 ETH')
    expect(formatToken(wei('9999.99996'), ETHER)).toBe('10,000 ETH')
  })

  it('shows whole token amounts without decimals and groups thousands', () => {
    expect(formatToken(wei('160'), TTT)).toBe('160 TTT')
    expect(formatToken(wei('2.5'), TTT)).toBe('2.5 TTT')
    expect(formatToken(wei('1234567'), TTT)).toBe('1,234,567 TTT')
    expect(formatToken(0n, TTT)).toBe('0 TTT')
  })

  it('never rounds a small non-zero amount to zero', () => {
    expect(formatToken(wei('0.00000123456'), ETHER)).toBe('0.00000123 ETH')
    expect(formatToken(1n, ETHER)).toBe('0.000000000000000001 ETH')
    expect(formatReadable(-wei('0.031234'), 18)).toBe('-0.0312')
  })

  it('keeps every base unit in the exact form, and says base units without a token', () => {
    expect(formatTokenExact(wei('0.031234567890123456'), ETHER)).toBe('0.031234567890123456 ETH')
    expect(formatToken(160n, null)).toBe('160 base units')
  })

  it('works for tokens with few decimals', () => {
    expect(formatToken(123456n, { symbol: 'USDC', decimals: 6 })).toBe('0.1235 USDC')
    expect(formatToken(5n, { symbol: 'X', decimals: 0 })).toBe('5 X')
  })
})
