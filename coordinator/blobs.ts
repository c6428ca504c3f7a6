/**
 * Content-addressed blobs: the interface and its stores live in coordinator/blobs/ (disk, PostgreSQL,
 * S3-compatible); this module is where the rest of the coordinator imports them from.
 */
import { DiskBlobStore } from './blobs/disk.ts'
import type { BlobStore as Store } from './blobs/store.ts'

export { BlobCorruptError, BlobNotFoundError, BlobStoreError } from './blobs/store.ts'
export { DiskBlobStore } from './blobs/disk.ts'
export { PostgresBlobStore } from './blobs/postgres.ts'
export { S3BlobStore, type S3BlobStoreOptions } from './blobs/s3.ts'
export { blobConfigOf, describeBlobStore, openBlobStore } from './blobs/open.ts'
export { importDiskBlobs, IMPORTED_MARKER, type DiskImport } from './blobs/importDisk.ts'

export type BlobStore = Store
/** `new BlobStore(dir)` is the disk store, the embedded default (what it was before there were others). */
export const BlobStore = DiskBlobStore
