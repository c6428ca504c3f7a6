import { sha256Hex, type Hash } from '../../src/protocol/index.ts'

/**
 * Content-addressed blobs (checkpoints, updates, data shards): the address of bytes is their SHA-256, so a
 * blob never changes once written, any replica may write the same bytes again, and a reader can check what
 * it got. Implementations: the disk of one machine (the embedded default), PostgreSQL (what replicas on one
 * database all reach without a shared disk), and any S3-compatible object store.
 */
export interface BlobStore {
  /** Which implementation: for logs and the operator's view. */
  readonly kind: 'disk' | 'postgres' | 's3'
  /** Stores `bytes` and returns their hash; `knownHash` skips hashing them again where the caller has just checked it. */
  put(bytes: Uint8Array, knownHash?: Hash): Promise<Hash>
  /** False for anything that is not a lower-case `0x` SHA-256 digest the store holds. */
  has(hash: string): Promise<boolean>
  /** The bytes stored under `hash`; BlobNotFoundError when there are none, BlobCorruptError when they do not hash to it. */
  get(hash: string): Promise<Uint8Array>
  /** Removes the blob (retention pruning); removing one that is not there is not an error. */
  delete(hash: string): Promise<void>
  /** Releases what the store holds open (none of them owns the database it was given). */
  close(): Promise<void>
}

export class BlobNotFoundError extends Error {
  override name = 'BlobNotFoundError'
}

/** Bytes read back under a hash they do not have: a damaged disk, a changed object, a broken transfer. */
export class BlobCorruptError extends Error {
  override name = 'BlobCorruptError'
  readonly code = 'blob_corrupt'
}

/** A remote store answered with something other than the blob or its absence. */
export class BlobStoreError extends Error {
  override name = 'BlobStoreError'
  readonly code = 'blob_store_unavailable'
}

/**
 * Below this size a blob is written without first asking whether it exists: one round trip less for every
 * update (each is new), and writing a small duplicate again is harmless (same bytes under the same address).
 * Bigger blobs (checkpoints, data shards, offered again at every start) are checked first.
 */
export const WRITE_WITHOUT_CHECK_BYTES = 1 << 20

/** Throws BlobCorruptError unless `bytes` hash to `hash`. About 1 ms per MB with the native SHA-256. */
export function verified(hash: string, bytes: Uint8Array, where: string): Uint8Array {
  const actual = sha256Hex(bytes)
  if (actual !== hash) throw new BlobCorruptError(`blob ${hash} read from ${where} hashes to ${actual} (${bytes.byteLength} bytes): it is damaged`)
  return bytes
}
