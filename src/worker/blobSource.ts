import { openDB, type IDBPDatabase } from 'idb'
import type { Hash } from '../protocol/index.ts'

/** Where a worker gets content-addressed bytes (checkpoints, data shards). */
export interface BlobSource {
  get(hash: Hash): Promise<Uint8Array>
}

/** Keeps the last `capacity` blobs in memory, e.g. the current checkpoint and the data shard. */
export function memoryCached(source: BlobSource, capacity = 8): BlobSource {
  const entries = new Map<Hash, Promise<Uint8Array>>()
  return {
    get(hash) {
      let entry = entries.get(hash)
      if (entry) {
        entries.delete(hash)
        entries.set(hash, entry)
        return entry
      }
      entry = source.get(hash)
      entry.catch(() => entries.delete(hash))
      entries.set(hash, entry)
      while (entries.size > capacity) entries.delete(entries.keys().next().value as Hash)
      return entry
    },
  }
}

const DB_NAME = 'tabtrain-blobs'
const STORE = 'blobs'
/** Old checkpoints are useless once a round moves on; data shards are reused. Keep a bounded set. */
const MAX_CACHED_BLOBS = 16

/**
 * IndexedDB cache by hash in front of `source`. Entries were hash-checked when first fetched and are
 * addressed by that hash, so a hit needs no further check.
 */
export async function indexedDbCached(source: BlobSource): Promise<BlobSource> {
  let db: IDBPDatabase | null = null
  try {
    db = await openDB(DB_NAME, 1, {
      upgrade(database) {
        database.createObjectStore(STORE).createIndex('usedAt', 'usedAt')
      },
    })
  } catch {
    // Private windows and some embedders refuse IndexedDB: fall back to fetching every time.
    return source
  }
  const store = db
  return {
    async get(hash) {
      const hit = (await store.get(STORE, hash)) as { bytes: Uint8Array; usedAt: number } | undefined
      if (hit) {
        void store.put(STORE, { bytes: hit.bytes, usedAt: Date.now() }, hash)
        return hit.bytes
      }
      const bytes = await source.get(hash)
      try {
        await store.put(STORE, { bytes, usedAt: Date.now() }, hash)
        const keys = await store.getAllKeysFromIndex(STORE, 'usedAt')
        for (const key of keys.slice(0, Math.max(0, keys.length - MAX_CACHED_BLOBS))) await store.delete(STORE, key)
      } catch {
        // Quota exceeded: the unit still runs, it just is not cached.
      }
      return bytes
    },
  }
}

/** Blobs already in memory (tests, benchmarks, local training runs): a missing hash is an error. */
export function mapBlobSource(blobs: ReadonlyMap<string, Uint8Array>, what = 'in-memory blob source'): BlobSource {
  return {
    async get(hash) {
      const bytes = blobs.get(hash)
      if (!bytes) throw new Error(`${what} has no ${hash}`)
      return bytes
    },
  }
}
