import { access, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isHash, sha256Hex, type Hash } from '../../src/protocol/index.ts'
import type { BlobStore } from './store.ts'

/** Left in the disk store's folder once everything in it is in the other store, so later starts skip the scan. */
export const IMPORTED_MARKER = '.imported'

export interface DiskImport {
  /** Blobs copied now. */
  copied: number
  /** Blobs the store already held. */
  present: number
  /** Files whose bytes do not hash to their name: left where they are, not copied. */
  corrupt: string[]
}

/**
 * A coordinator that kept blobs on disk (every version before the shared stores, and any embedded one) and
 * now starts on a shared store copies them in once: checkpoints, updates and data shards of jobs already in
 * the database would otherwise be missing. Content addressing makes it safe to repeat or to run on several
 * replicas at once; each file is hashed before it is copied. Nothing is deleted from the disk.
 * Null when there is nothing to do (no folder, or already imported).
 */
export async function importDiskBlobs(dir: string, store: BlobStore): Promise<DiskImport | null> {
  const marker = join(dir, IMPORTED_MARKER)
  if (await exists(marker)) return null
  let shards: string[]
  try {
    shards = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && /^[0-9a-f]{2}$/.test(e.name)).map((e) => e.name)
  } catch {
    return null
  }
  const result: DiskImport = { copied: 0, present: 0, corrupt: [] }
  for (const shard of shards.sort()) {
    for (const name of (await readdir(join(dir, shard))).sort()) {
      const hash = `0x${name}` as Hash
      // Temporary files of a write cut off by a crash, and anything else that is not a blob.
      if (!isHash(hash) || !name.startsWith(shard)) continue
      if (await store.has(hash)) {
        result.present += 1
        continue
      }
      const bytes = new Uint8Array(await readFile(join(dir, shard, name)))
      if (sha256Hex(bytes) !== hash) {
        result.corrupt.push(hash)
        continue
      }
      await store.put(bytes, hash)
      result.copied += 1
    }
  }
  await writeFile(marker, JSON.stringify({ to: store.kind, at: new Date().toISOString(), ...result }, null, 2))
  return result
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}
