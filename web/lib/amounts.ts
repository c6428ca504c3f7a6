import { formatUnits } from 'viem'
import type { Amount } from '../../src/protocol/index.ts'

export { formatUnits }

export interface TokenFormat {
  symbol: string
  decimals: number
}

export const ETHER: TokenFormat = { symbol: 'ETH', decimals: 18 }

/** Fraction digits a person is shown: enough for any price or balance to be told apart, few enough to read. */
const SHOWN_DECIMALS = 4
/** Below 10^-SHOWN_DECIMALS an amount keeps this many significant digits instead of rounding to 0. */
const SMALL_SIGNIFICANT = 3

/** Rounds a non-negative base-unit value to `keep` of its `decimals` fraction digits, half up. */
function roundTo(value: bigint, decimals: number, keep: number): bigint {
  if (keep >= decimals) return value
  const step = 10n ** BigInt(decimals - keep)
  return ((value + step / 2n) / step) * step
}

/** 1234567 → "1,234,567": a long integer part read at a glance. */
function group(integer: string): string {
  return integer.replace(/\B(?=(\d{3})+(?!\d))/g, ',')
}

/**
 * An amount as a person reads it: "0.0312", "160", "9,999.9874". At most four fraction digits, rounded half
 * up; an amount too small for them keeps three significant digits ("0.00000123") so it never reads as 0.
 * The exact value is `formatUnits` (viem), which `showAmount` keeps in the title and `data-amount`.
 */
export function formatReadable(value: bigint, decimals: number): string {
  const negative = value < 0n
  const magnitude = negative ? -value : value
  let keep = Math.min(SHOWN_DECIMALS, decimals)
  const threshold = 10n ** BigInt(Math.max(0, decimals - keep))
  if (magnitude > 0n && magnitude < threshold) {
    // The first significant digit's place, counted in fraction digits, then two more.
    keep = Math.min(decimals, decimals - magnitude.toString().length + SMALL_SIGNIFICANT)
  }
  const [integer, fraction] = formatUnits(roundTo(magnitude, decimals, keep), decimals).split('.')
  return `${negative ? '-' : ''}${group(integer!)}${fraction ? `.${fraction}` : ''}`
}

/** "0.0312 ETH", "160 TTT": rounded for reading (formatReadable); without a token, the integer in base units. */
export function formatToken(value: bigint, token: TokenFormat | null): string {
  return token ? `${formatReadable(value, token.decimals)} ${token.symbol}` : `${value} base units`
}

/** Every base unit shown ("0.031234567890123456 ETH"): for a title or a message where the exact value matters. */
export function formatTokenExact(value: bigint, token: TokenFormat | null): string {
  return token ? `${formatUnits(value, token.decimals)} ${token.symbol}` : `${value} base units`
}

/**
 * Shows an amount in `el` for people and keeps its base-unit integer in `data-amount` for programs;
 * null clears both, so a stale number never survives a failed read.
 */
export function showAmount(el: HTMLElement, value: bigint | Amount | null, token: TokenFormat | null): void {
  if (value === null) {
    el.textContent = '–'
    el.removeAttribute('title')
    delete el.dataset.amount
    return
  }
  const amount = typeof value === 'bigint' ? value : BigInt(value)
  el.textContent = formatToken(amount, token)
  // Rounded for reading; the exact amount is one hover away, and programs read data-amount.
  el.title = formatTokenExact(amount, token)
  el.dataset.amount = amount.toString()
}

/** A unix time as a local clock time, with how far away it is on `now`'s clock (the chain's, where it matters). */
export function formatWhen(unixSeconds: number, nowSeconds: number): string {
  const date = new Date(unixSeconds * 1000)
  const sameDay = new Date().toDateString() === date.toDateString()
  const clock = sameDay ? date.toLocaleTimeString() : date.toLocaleString()
  const delta = unixSeconds - nowSeconds
  if (delta <= 0) return `${clock} (passed)`
  return `${clock} (in ${formatDuration(delta)})`
}

export function formatDuration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`
  if (seconds < 36 * 3600) return `${(seconds / 3600).toFixed(1)} h`
  return `${(seconds / 86400).toFixed(1)} days`
}
