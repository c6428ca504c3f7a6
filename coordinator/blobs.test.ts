import { createRequire } from 'node:module'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AwsClient } from 'aws4fetch'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sha256Hex, type Hash } from '../src/protocol/index.ts'
import {
  BlobCorruptError,
  BlobNotFoundError,
  BlobStoreError,
  DiskBlobStore,
  importDiskBlobs,
  IMPORTED_MARKER,
  openBlobStore,
  PostgresBlobStore,
  S3BlobStore,
  type BlobStore,
  type S3BlobStoreOptions,
} from './blobs.ts'
import { blobConfigFromEnv, ConfigError, configFromEnv } from './config.ts'
import { migrate, openPglite, openPostgres, type Database } from './db.ts'
import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from './testing/postgresServer.ts'

/** What a store suite runs on: a store, a second one on the same backing (another replica), and a way to damage a blob. */
interface RunningStore {
  store: BlobStore
  /** Another store instance on the same disk, database or bucket: what a second replica opens. */
  replica: BlobStore
  /** Replaces the bytes stored under `hash` behind the store's back. */
  corrupt(hash: Hash, bytes: Uint8Array): Promise<void>
  stop(): Promise<void>
}

interface StoreUnderTest {
  name: string
  skipReason: string | null
  start(): Promise<RunningStore>
}

/** An S3-compatible server on loopback (s3rver, a dev dependency), started once for the file. */
interface S3Server {
  options: S3BlobStoreOptions
  stop(): Promise<void>
}

async function startS3rver(): Promise<S3Server> {
  // s3rver ships no types; its constructor and run/close are all this uses.
  const S3rver = createRequire(import.meta.url)('s3rver') as new (options: object) => { run(): Promise<{ port: number }>; close(): Promise<void> }
  const directory = await mkdtemp(join(tmpdir(), 'tabtrain-s3rver-'))
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: 'tabtrain-test' }] })
  const { port } = await server.run()
  return {
    options: { endpoint: `http://127.0.0.1:${port}`, bucket: 'tabtrain-test', region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', prefix: 'blobs/' },
    async stop() {
      await server.close()
      await rm(directory, { recursive: true, force: true })
    },
  }
}

const s3: S3Server | Error = await startS3rver().catch((error: unknown) => error as Error)
afterAll(async () => {
  if (!(s3 instanceof Error)) await s3.stop()
})

let s3Prefixes = 0

const STORES: StoreUnderTest[] = [
  {
    name: 'disk',
    skipReason: null,
    async start() {
      const dir = await mkdtemp(join(tmpdir(), 'tabtrain-blobs-'))
      return {
        store: new DiskBlobStore(dir),
        replica: new DiskBlobStore(dir),
        corrupt: (hash, bytes) => writeFile(join(dir, hash.slice(2, 4), hash.slice(2)), bytes),
        stop: () => rm(dir, { recursive: true, force: true }),
      }
    },
  },
  {
    name: 'PGlite',
    skipReason: null,
    async start() {
      const db = await openPglite()
      await migrate(db)
      return {
        store: new PostgresBlobStore(db),
        replica: new PostgresBlobStore(db),
        corrupt: async (hash, bytes) => void (await db.query(`UPDATE blobs SET bytes = $2 WHERE hash = $1`, [hash, bytes])),
        stop: () => db.close(),
      }
    },
  },
  {
    name: 'PostgreSQL',
    skipReason: postgresUnavailableReason(),
    async start() {
      const server: PostgresServer = await startPostgresServer({ database: 'blobs' })
      const db = await openPostgres(server.url)
      await migrate(db)
      // A second pool on the same database, as a second coordinator process has.
      const other: Database = await openPostgres(server.url)
      return {
        store: new PostgresBlobStore(db),
        replica: new PostgresBlobStore(other),
        corrupt: async (hash, bytes) => void (await db.query(`UPDATE blobs SET bytes = $2 WHERE hash = $1`, [hash, Buffer.from(bytes)])),
        async stop() {
          await other.close()
          await db.close()
          await server.stop()
        },
      }
    },
  },
  {
    name: 'S3 (s3rver)',
    skipReason: s3 instanceof Error ? `the S3-compatible test server (s3rver) did not start: ${s3.message}` : null,
    async start() {
      const server = s3 as S3Server
      // A prefix per suite run: the bucket is shared by the file.
      const options = { ...server.options, prefix: `run${++s3Prefixes}/` }
      const raw = new AwsClient({ accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey, region: options.region, service: 's3' })
      return {
        store: new S3BlobStore(options),
        replica: new S3BlobStore(options),
        async corrupt(hash, bytes) {
          const response = await raw.fetch(`${options.endpoint}/${options.bucket}/${options.prefix}${hash}`, { method: 'PUT', body: bytes as BodyInit })
          expect(response.ok).toBe(true)
        },
        stop: async () => {},
      }
    },
  },
]

for (const engine of STORES) {
  if (engine.skipReason) console.warn(`[coordinator/blobs.test.ts] skipping the ${engine.name} blob store: ${engine.skipReason}`)
}

/** Pinned: the SHA-256 of the UTF-8 bytes of "hello, blobs". A change in hashing or encoding fails here. */
const HELLO_HASH = '0x686c82473de28c4ad4ff4d46877b13f393904a4a23aa74c6bdda31607cda0207'

for (const engine of STORES) {
  describe.skipIf(engine.skipReason)(`BlobStore on ${engine.name}`, () => {
    let running: RunningStore
    const store = () => running.store

    beforeAll(async () => {
      running = await engine.start()
    })

    afterAll(async () => {
      await running?.stop()
    })

    it('puts and gets bytes back by their SHA-256', async () => {
      const bytes = new TextEncoder().encode('hello, blobs')
      const hash = await store().put(bytes)
      expect(hash).toBe(sha256Hex(bytes))
      expect(hash).toBe(HELLO_HASH)
      expect(await store().has(hash)).toBe(true)
      const back = await store().get(hash)
      expect(back).toBeInstanceOf(Uint8Array)
      expect(back).toEqual(bytes)
    })

    it('is content-addressed: equal bytes share one address, different bytes do not', async () => {
      const a = await store().put(new Uint8Array([1, 2, 3]))
      const again = await store().put(new Uint8Array([1, 2, 3]))
      const b = await store().put(new Uint8Array([1, 2, 4]))
      expect(again).toBe(a)
      expect(b).not.toBe(a)
      expect(await store().get(a)).toEqual(new Uint8Array([1, 2, 3]))
      expect(await store().get(b)).toEqual(new Uint8Array([1, 2, 4]))
    })

    it('round-trips empty and large blobs, and views into larger buffers', async () => {
      const empty = await store().put(new Uint8Array())
      expect(await store().get(empty)).toEqual(new Uint8Array())
      const large = new Uint8Array(3 * 1024 * 1024)
      for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff
      const back = await store().get(await store().put(large))
      // Compared as buffers: an element-wise deep equality of 3 MiB is needlessly slow.
      expect(Buffer.compare(Buffer.from(back), Buffer.from(large))).toBe(0)
      const view = large.subarray(10, 20)
      const hash = await store().put(view)
      expect(hash).toBe(sha256Hex(view))
      expect(await store().get(hash)).toEqual(view)
    })

    it('stores under the hash the caller already checked, without hashing again', async () => {
      const bytes = new Uint8Array([4, 5, 6])
      expect(await store().put(bytes, sha256Hex(bytes))).toBe(sha256Hex(bytes))
      expect(await store().get(sha256Hex(bytes))).toEqual(bytes)
    })

    it('concurrent puts of the same bytes, here and on another replica, all succeed with one blob', async () => {
      const bytes = new Uint8Array(256 * 1024).fill(7)
      const hashes = await Promise.all([store().put(bytes), running.replica.put(bytes), store().put(bytes), running.replica.put(bytes)])
      expect(new Set(hashes).size).toBe(1)
      expect(Buffer.compare(Buffer.from(await store().get(hashes[0]!)), Buffer.from(bytes))).toBe(0)
    })

    it('a blob one replica stores, another reads; one replica deletes, the other no longer finds', async () => {
      const bytes = new TextEncoder().encode(`written by one replica on ${engine.name}`)
      const hash = await store().put(bytes)
      expect(await running.replica.has(hash)).toBe(true)
      expect(await running.replica.get(hash)).toEqual(bytes)
      await running.replica.delete(hash)
      expect(await store().has(hash)).toBe(false)
      await expect(store().get(hash)).rejects.toBeInstanceOf(BlobNotFoundError)
      // Deleting what is not there (pruned twice, by two replicas) is not an error.
      await store().delete(hash)
      // And it can be stored again.
      expect(await store().put(bytes)).toBe(hash)
      expect(await store().get(hash)).toEqual(bytes)
    })

    it('throws BlobNotFoundError for a hash it does not hold', async () => {
      const missing = sha256Hex(new TextEncoder().encode('never stored'))
      expect(await store().has(missing)).toBe(false)
      await expect(store().get(missing)).rejects.toBeInstanceOf(BlobNotFoundError)
      await expect(store().get(missing)).rejects.toThrow(`no blob ${missing}`)
    })

    it('treats anything that is not a lower-case SHA-256 hex digest as missing (no path or key tricks)', async () => {
      const hash = await store().put(new Uint8Array([9]))
      for (const name of [hash.toUpperCase(), hash.slice(2), `${hash}00`, '../../etc/passwd', `0x${'.'.repeat(64)}`, '', `${hash}/../x`]) {
        expect(await store().has(name)).toBe(false)
        await expect(store().get(name)).rejects.toBeInstanceOf(BlobNotFoundError)
        await store().delete(name)
      }
      expect(await store().has(hash)).toBe(true)
    })

    it('refuses bytes that do not hash to their address (BlobCorruptError), and serves them again once repaired', async () => {
      const bytes = new TextEncoder().encode(`a checkpoint on ${engine.name}`)
      const hash = await store().put(bytes)
      await running.corrupt(hash, new TextEncoder().encode(`a checkpoint on ${engine.name}, changed`))
      const error = await store().get(hash).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(BlobCorruptError)
      expect((error as BlobCorruptError).code).toBe('blob_corrupt')
      expect((error as Error).message).toContain(hash)
      await running.corrupt(hash, bytes)
      expect(await store().get(hash)).toEqual(bytes)
    })
  })
}

describe('the disk store', () => {
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-blobs-'))
  })

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('stores under <dir>/<first byte>/<hash> and leaves no temporary files', async () => {
    const store = new DiskBlobStore(join(dir, 'blobs'))
    const bytes = new Uint8Array([1, 2, 3])
    const hash = await store.put(bytes)
    const path = join(dir, 'blobs', hash.slice(2, 4), hash.slice(2))
    expect(new Uint8Array(await readFile(path))).toEqual(bytes)
    expect(await readdir(join(dir, 'blobs', hash.slice(2, 4)))).toEqual([hash.slice(2)])
  })
})

describe('moving blobs off the disk', () => {
  it('copies what a data folder kept on disk into the shared store once, hashing each file, leaving the disk as it was', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tabtrain-blobs-'))
    const db = await openPglite()
    try {
      await migrate(db)
      const disk = new DiskBlobStore(dir)
      const kept = await Promise.all([1, 2, 3].map((n) => disk.put(new Uint8Array(1000 * n).fill(n))))
      const damaged = await disk.put(new Uint8Array([4, 4, 4]))
      await writeFile(join(dir, damaged.slice(2, 4), damaged.slice(2)), new Uint8Array([5]))
      // Leftovers of a write a crash cut off are not blobs.
      await writeFile(join(dir, kept[0]!.slice(2, 4), `${kept[0]!.slice(2)}.123.abc.tmp`), new Uint8Array([6]))
      const store = new PostgresBlobStore(db)
      await store.put(new Uint8Array(1000).fill(1)) // already there
      expect(await importDiskBlobs(dir, store)).toEqual({ copied: 2, present: 1, corrupt: [damaged] })
      for (const [i, hash] of kept.entries()) expect(await store.get(hash)).toEqual(new Uint8Array(1000 * (i + 1)).fill(i + 1))
      expect(await store.has(damaged)).toBe(false)
      expect(await disk.has(kept[0]!)).toBe(true)
      expect(JSON.parse(await readFile(join(dir, IMPORTED_MARKER), 'utf8'))).toMatchObject({ to: 'postgres', copied: 2 })
      // Once done, later starts do not scan again; a folder that is not there is nothing to do.
      expect(await importDiskBlobs(dir, store)).toBeNull()
      expect(await importDiskBlobs(join(dir, 'none'), store)).toBeNull()
    } finally {
      await db.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('choosing the blob store', () => {
  const S3_ENV = {
    TABTRAIN_BLOBS: 's3',
    TABTRAIN_S3_ENDPOINT: 'https://s3.eu-west-1.amazonaws.com',
    TABTRAIN_S3_BUCKET: 'tabtrain-blobs',
    TABTRAIN_S3_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    TABTRAIN_S3_SECRET_ACCESS_KEY: 'secret',
  }

  it('defaults to the disk, to the database when DATABASE_URL is set, to S3 when a bucket is named', () => {
    expect(blobConfigFromEnv({})).toEqual({ kind: 'disk' })
    expect(blobConfigFromEnv({ DATABASE_URL: 'postgres://db/tabtrain' })).toEqual({ kind: 'postgres' })
    expect(blobConfigFromEnv({ DATABASE_URL: 'postgres://db/tabtrain', TABTRAIN_BLOBS: 'disk' })).toEqual({ kind: 'disk' })
    expect(blobConfigFromEnv({ TABTRAIN_BLOBS: 'postgres' })).toEqual({ kind: 'postgres' })
    const { TABTRAIN_BLOBS: _, ...implied } = S3_ENV
    expect(blobConfigFromEnv(implied).kind).toBe('s3')
    expect(configFromEnv({ DATABASE_URL: 'postgres://db/tabtrain', TABTRAIN_CHAIN: 'off' }).blobs).toEqual({ kind: 'postgres' })
  })

  it('reads the S3 settings, with a default region and no prefix', () => {
    expect(blobConfigFromEnv(S3_ENV)).toEqual({
      kind: 's3',
      endpoint: 'https://s3.eu-west-1.amazonaws.com',
      bucket: 'tabtrain-blobs',
      region: 'us-east-1',
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'secret',
      prefix: '',
    })
    expect(blobConfigFromEnv({ ...S3_ENV, TABTRAIN_S3_REGION: 'eu-west-1', TABTRAIN_S3_PREFIX: 'coordinator-1/' })).toMatchObject({ region: 'eu-west-1', prefix: 'coordinator-1/' })
  })

  it('says what is wrong with a setting', () => {
    const refused = (env: Record<string, string>) => {
      try {
        blobConfigFromEnv(env)
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        return (error as Error).message
      }
      throw new Error(`accepted ${JSON.stringify(env)}`)
    }
    expect(refused({ TABTRAIN_BLOBS: 'nfs' })).toBe('TABTRAIN_BLOBS=nfs: expected disk, postgres or s3')
    expect(refused({ TABTRAIN_BLOBS: 's3' })).toBe('TABTRAIN_BLOBS=s3 needs TABTRAIN_S3_ENDPOINT')
    const { TABTRAIN_S3_SECRET_ACCESS_KEY: _, ...noSecret } = S3_ENV
    expect(refused(noSecret)).toBe('TABTRAIN_BLOBS=s3 needs TABTRAIN_S3_SECRET_ACCESS_KEY')
    expect(refused({ ...S3_ENV, TABTRAIN_S3_ENDPOINT: 's3.amazonaws.com' })).toMatch(/is not a URL/)
    expect(refused({ ...S3_ENV, TABTRAIN_S3_ENDPOINT: 'ftp://s3.example' })).toMatch(/must be an http or https URL/)
    expect(refused({ ...S3_ENV, TABTRAIN_S3_ENDPOINT: 'https://s3.example/tabtrain-blobs' })).toMatch(/without a path: the bucket goes in TABTRAIN_S3_BUCKET/)
    expect(refused({ ...S3_ENV, TABTRAIN_S3_BUCKET: 'Tab_Train' })).toMatch(/is not a valid bucket name/)
    expect(refused({ ...S3_ENV, TABTRAIN_S3_PREFIX: 'a b?' })).toMatch(/TABTRAIN_S3_PREFIX=a b\? may only hold/)
  })

  it.skipIf(s3 instanceof Error)('refuses to start on a bucket that does not exist', async () => {
    const server = s3 as S3Server
    const db = await openPglite()
    try {
      const error = await openBlobStore({ kind: 's3', ...server.options, bucket: 'no-such-bucket' }, { db, dataDir: '/nonexistent' }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(BlobStoreError)
      expect((error as Error).message).toBe(`S3 bucket no-such-bucket does not exist at ${server.options.endpoint}`)
      expect((await openBlobStore({ kind: 's3', ...server.options }, { db, dataDir: '/nonexistent' })).kind).toBe('s3')
    } finally {
      await db.close()
    }
  })
})
