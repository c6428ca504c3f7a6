import { z } from 'zod'

/**
 * Token amounts travel as decimal strings of base units (wei-like), because JSON numbers lose
 * precision above 2^53 and a reward of 1e18 base units is ordinary.
 */
export const amountSchema = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,77})$/, 'expected a non-negative integer amount in base units, as a decimal string')
  .refine((s) => BigInt(s) < 2n ** 256n, 'amount does not fit in uint256')

export type Amount = z.infer<typeof amountSchema>

export function parseAmount(amount: Amount): bigint {
  return BigInt(amount)
}

export function formatAmount(value: bigint): Amount {
  if (value < 0n) throw new RangeError(`amount must not be negative, got ${value}`)
  return value.toString()
}
