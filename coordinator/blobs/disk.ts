import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isHash, sha256Hex, type Hash } from '../../src/protocol/index.ts'
import { BlobNotFoundError, verified, WRITE_WITHOUT_CHECK_BYTES, type BlobStore } from './store.ts'

/**
 * Read back blobs up to this size are hashed again (checkpoints and updates, which aggregation and the
 * referee compute from). Data shards above it are served as read: hashing tens of MB per download would cost
 * more than reading them, and the write-then-rename below already keeps a partial write from a valid name.
 */
const VERIFY_BELOW_BYTES = 16 << 20

/**
 * Blobs on one machine's disk under `<dir>/<aa>/<hash>`: the embedded default. Writes go to a temporary
 * name and are renamed into place, so a process killed mid-write never leaves a truncated blob under a
 * valid hash.
 */
export class DiskBlobStore implements BlobStore {
  readonly kind = 'disk'
  /** Shard folders known to exist: created once per process instead of on every write. */
  private readonly shards = new Set<string>()

  constructor(readonly dir: string) {}

  private pathOf(hash: Hash): string {
    return join(this.dir, hash.slice(2, 4), hash.slice(2))
  }

  async put(bytes: Uint8Array, knownHash?: Hash): Promise<Hash> {
    const hash = knownHash ?? sha256Hex(bytes)
    if (bytes.byteLength >= WRITE_WITHOUT_CHECK_BYTES && (await this.has(hash))) return hash
    const path = this.pathOf(hash)
    const shard = hash.slice(2, 4)
    if (!this.shards.has(shard)) {
      await mkdir(join(this.dir, shard), { recursive: true })
      this.shards.add(shard)
    }
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
    await writeFile(tmp, bytes)
    await rename(tmp, path)
    return hash
  }

  async has(hash: string): Promise<boolean> {
    if (!isHash(hash)) return false
    try {
      await stat(this.pathOf(hash))
      return true
    } catch {
      return false
    }
  }

  async get(hash: string): Promise<Uint8Array> {
    if (!isHash(hash)) throw new BlobNotFoundError(`${hash} is not a SHA-256 hex digest`)
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(await readFile(this.pathOf(hash)))
    } catch {
      throw new BlobNotFoundError(`no blob ${hash}`)
    }
    return bytes.byteLength < VERIFY_BELOW_BYTES ? verified(hash, bytes, this.dir) : bytes
  }

  async delete(hash: string): Promise<void> {
    if (!isHash(hash)) return
    await rm(this.pathOf(hash), { force: true })
  }

  async close(): Promise<void> {}
}
