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

type NativeSha256 = (bytes: Uint8Array) => string

/**
 * OpenSSL's SHA-256 where this runs in Node (the coordinator, benchmarks, tests): 15–20× faster than the
 * JS implementation on the coordinator's hot path (every update and blob is hashed). Looked up with
 * `process.getBuiltinModule` (Node ≥ 20.16), which is synchronous and needs no import that a bundler
 * would try to resolve for the browser; in a page or a Worker there is no `process` and this is null.
 * SHA-256 is SHA-256: both paths give the same digest (pinned in hash.test.ts).
 */
const nativeSha256: NativeSha256 | null = (() => {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
  const nodeCrypto = proc?.getBuiltinModule?.('node:crypto') as typeof import('node:crypto') | undefined
  if (!nodeCrypto?.createHash) return null
  return (bytes) => nodeCrypto.createHash('sha256').update(bytes).digest('hex')
})()

/**
 * Synchronous SHA-256 so that the same call works in a page, a Worker and Node without awaiting
 * WebCrypto; @noble/hashes (already in the tree through viem) in a browser, OpenSSL in Node.
 */
export function sha256Hex(bytes: Uint8Array): Hash {
  return `0x${nativeSha256 ? nativeSha256(bytes) : bytesToHex(sha256(bytes))}`
}

/** The JS implementation whatever the platform: for tests that compare the two paths. */
export function sha256HexPortable(bytes: Uint8Array): Hash {
  return `0x${bytesToHex(sha256(bytes))}`
}
