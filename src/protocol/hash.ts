import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'

/** A SHA-256 digest as 0x-prefixed lower-case hex: the same shape as an EIP-712 `bytes32`. */
export type Hash = `0x${string}`

export const hashSchema = z
  .string()
  .regex(/^0x[0-9a-f]{64}$/, 'expected a 0x-prefixed lower-case 32-byte hex digest')
  .transform((s) => s as Hash)

export function isHash(value: unknown): value is Hash {
  return typeof value === 'string' && /^0x[0-9a-f]{64}$/.test(value)
}

/**
 * Synchronous SHA-256 so that the same call works in a page, a Worker and Node without awaiting
 * WebCrypto; @noble/hashes is already in the tree through viem.
 */
export function sha256Hex(bytes: Uint8Array): Hash {
  return `0x${bytesToHex(sha256(bytes))}`
}
