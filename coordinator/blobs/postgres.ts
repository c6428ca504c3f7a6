import { isHash, sha256Hex, type Hash } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'
import { BlobNotFoundError, verified, WRITE_WITHOUT_CHECK_BYTES, type BlobStore } from './store.ts'

/**
 * Blobs in the coordinator's own database (the `blobs` table, coordinator/db.ts): what every replica on
 * one PostgreSQL reaches without a shared disk, with nothing more to run. Content-addressed, so a write is
 * `INSERT … ON CONFLICT DO NOTHING` and replicas storing the same bytes at once both succeed. The SQL is
 * the same on PGlite.
 */
export class PostgresBlobStore implements BlobStore {
  readonly kind = 'postgres'

  constructor(
    private readonly db: Queryable,
    private readonly now: () => number = Date.now,
  ) {}

  async put(bytes: Uint8Array, knownHash?: Hash): Promise<Hash> {
    const hash = knownHash ?? sha256Hex(bytes)
    if (bytes.byteLength >= WRITE_WITHOUT_CHECK_BYTES && (await this.has(hash))) return hash
    await this.db.query(`INSERT INTO blobs (hash, bytes, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING`, [
      hash,
      // A Buffer view (no copy): node-postgres sends Buffers as binary parameters, PGlite takes any Uint8Array.
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      bytes.byteLength,
      this.now(),
    ])
    return hash
  }

  async has(hash: string): Promise<boolean> {
    if (!isHash(hash)) return false
    return (await this.db.query(`SELECT 1 FROM blobs WHERE hash = $1`, [hash])).length > 0
  }

  async get(hash: string): Promise<Uint8Array> {
    if (!isHash(hash)) throw new BlobNotFoundError(`${hash} is not a SHA-256 hex digest`)
    const [row] = await this.db.query<{ bytes: Uint8Array }>(`SELECT bytes FROM blobs WHERE hash = $1`, [hash])
    if (!row) throw new BlobNotFoundError(`no blob ${hash}`)
    // Copied out of the driver's buffer, as the disk store hands out a buffer of its own.
    return verified(hash, new Uint8Array(row.bytes), 'the blobs table')
  }

  async delete(hash: string): Promise<void> {
    if (!isHash(hash)) return
    await this.db.query(`DELETE FROM blobs WHERE hash = $1`, [hash])
  }

  async close(): Promise<void> {}
}
