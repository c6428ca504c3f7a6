import type { Amount } from '../../src/protocol/index.ts'

export interface TokenFormat {
  symbol: string
  decimals: number
}

export const ETHER: TokenFormat = { symbol: 'ETH', decimals: 18 }

/**
 * viem's `formatUnits`, digit for digit. It is written out here because importing it drags a shared
 * chunk of viem (some 60 kB gzip) into the job and index pages, which otherwise need none of it.
 */
export function formatUnits(value: bigint, decimals: number): string {
  const negative = value < 0n
  const digits = (negative ? -value : value).toString().padStart(decimals, '0')
  const integer = digits.slice(0, digits.length - decimals)
  const fraction = digits.slice(digits.length - decimals).replace(/0+$/, '')
  return `${negative ? '-' : ''}${integer || '0'}${fraction ? `.${fraction}` : ''}`
}

/** Exact: every base unit is shown, since a rounded reward would not match what the chain pays. */
export function formatToken(value: bigint, token: TokenFormat | null): string {
  return token ? `${formatUnits(value, token.decimals)} ${token.symbol}` : `${value} base units`
}

/**
 * Shows an amount in `el` for people and keeps its base-unit integer in `data-amount` for programs;
 * null clears both, so a stale number never survives a failed read.
 */
export function showAmount(el: HTMLElement, value: bigint | Amount | null, token: TokenFormat | null): void {
  if (value === null) {
    el.textContent = '–'
    delete el.dataset.amount
    return
  }
  const amount = typeof value === 'bigint' ? value : BigInt(value)
  el.textContent = formatToken(amount, token)
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
