import { z } from 'zod'
import { getAddress, isAddress, type Address } from 'viem'

/** Any 20-byte hex address, upper, lower or mixed case, normalised to its EIP-55 checksum form. */
export const addressSchema = z
  .string()
  .refine((s) => isAddress(s, { strict: false }), 'expected a 20-byte hex address')
  .transform((s) => getAddress(s) as Address)
