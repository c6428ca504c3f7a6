import { join } from 'node:path'
import type { BlobStoreConfig } from '../config.ts'
import type { Queryable } from '../db.ts'
import { DiskBlobStore } from './disk.ts'
import { PostgresBlobStore } from './postgres.ts'
import { S3BlobStore } from './s3.ts'
import type { BlobStore } from './store.ts'

/** The store `config` names; unset means the database's when one is shared (`databaseUrl`), else the disk's. */
export function blobConfigOf(config: { blobs?: BlobStoreConfig; databaseUrl?: string }): BlobStoreConfig {
  return config.blobs ?? { kind: config.databaseUrl ? 'postgres' : 'disk' }
}

/** Opens the configured blob store; an S3 bucket is checked reachable first, so a wrong setting stops the start. */
export async function openBlobStore(config: BlobStoreConfig, where: { db: Queryable; dataDir: string }): Promise<BlobStore> {
  switch (config.kind) {
    case 'disk':
      return new DiskBlobStore(join(where.dataDir, 'blobs'))
    case 'postgres':
      return new PostgresBlobStore(where.db)
    case 's3': {
      const store = new S3BlobStore(config)
      await store.check()
      return store
    }
  }
}

/** One line for the log: where blobs go. */
export function describeBlobStore(config: BlobStoreConfig, dataDir: string): string {
  switch (config.kind) {
    case 'disk':
      return `blobs on disk in ${join(dataDir, 'blobs')}`
    case 'postgres':
      return 'blobs in the database (table blobs)'
    case 's3':
      return `blobs in S3 bucket ${config.bucket} at ${config.endpoint}${config.prefix ? ` under ${config.prefix}` : ''}`
  }
}
