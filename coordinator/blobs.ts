import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isHash, sha256Hex, type Hash } from '../src/protocol/index.ts'

export class BlobNotFoundError extends Error {
  override name = 'BlobNotFoundError'
}

/**
 * Below this size a blob is written without first asking whether it exists: one syscall less for every
 * update (each is new), and rewriting a small duplicate through the same rename is harmless (same bytes,
 * atomic replace). Bigger blobs (checkpoints, data shards, often stored again at start-up) are checked first.
 */
const WRITE_WITHOUT_CHECK_BYTES = 1 << 20

/**
 * Content-addressed blobs (checkpoints, updates, data shards) on disk under `<dir>/<aa>/<hash>`.
 * Writes go to a temporary name and are renamed into place, so a process killed mid-write never leaves
 * a truncated blob under a valid hash.
 */
export class BlobStore {
  /** Shard folders known to exist: created once per process instead of on every write. */
  private readonly shards = new Set<string>()

  constructor(readonly dir: string) {}

  private pathOf(hash: Hash): string {
    return join(this.dir, hash.slice(2, 4), hash.slice(2))
  }

  /** Stores `bytes`; `knownHash` skips hashing them again where the caller has just checked it. */
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
    try {
      return new Uint8Array(await readFile(this.pathOf(hash)))
    } catch {
      throw new BlobNotFoundError(`no blob ${hash}`)
    }
  }
}
