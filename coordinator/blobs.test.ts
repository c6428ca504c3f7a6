import { readdir, readFile, rm, mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { sha256Hex } from '../src/protocol/index.ts'
import { BlobNotFoundError, BlobStore } from './blobs.ts'

describe('BlobStore', () => {
  let dir: string
  let store: BlobStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-blobs-'))
    store = new BlobStore(join(dir, 'blobs'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('puts and gets bytes back by their SHA-256', async () => {
    const bytes = new TextEncoder().encode('hello, blobs')
    const hash = await store.put(bytes)
    expect(hash).toBe(sha256Hex(bytes))
    expect(await store.has(hash)).toBe(true)
    const back = await store.get(hash)
    expect(back).toBeInstanceOf(Uint8Array)
    expect(back).toEqual(bytes)
  })

  it('stores under <dir>/<first byte>/<hash> and leaves no temporary files', async () => {
    const bytes = new Uint8Array([1, 2, 3])
    const hash = await store.put(bytes)
    const path = join(dir, 'blobs', hash.slice(2, 4), hash.slice(2))
    expect(new Uint8Array(await readFile(path))).toEqual(bytes)
    expect(await readdir(join(dir, 'blobs', hash.slice(2, 4)))).toEqual([hash.slice(2)])
  })

  it('is content-addressed: equal bytes share one blob, different bytes do not', async () => {
    const a = await store.put(new Uint8Array([1, 2, 3]))
    const again = await store.put(new Uint8Array([1, 2, 3]))
    const b = await store.put(new Uint8Array([1, 2, 4]))
    expect(again).toBe(a)
    expect(b).not.toBe(a)
    const files = (await readdir(join(dir, 'blobs'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile())
    expect(files).toHaveLength(2)
  })

  it('round-trips empty and large blobs, and views into larger buffers', async () => {
    const empty = await store.put(new Uint8Array())
    expect(await store.get(empty)).toEqual(new Uint8Array())
    const large = new Uint8Array(3 * 1024 * 1024)
    for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff
    const back = await store.get(await store.put(large))
    // Compared as buffers: an element-wise deep equality of 3 MiB is needlessly slow.
    expect(Buffer.compare(Buffer.from(back), Buffer.from(large))).toBe(0)
    const view = large.subarray(10, 20)
    const hash = await store.put(view)
    expect(hash).toBe(sha256Hex(view))
    expect(await store.get(hash)).toEqual(view)
  })

  it('concurrent puts of the same bytes both succeed with one blob', async () => {
    const bytes = new Uint8Array(256 * 1024).fill(7)
    const hashes = await Promise.all([store.put(bytes), store.put(bytes), store.put(bytes)])
    expect(new Set(hashes).size).toBe(1)
    expect(Buffer.compare(Buffer.from(await store.get(hashes[0]!)), Buffer.from(bytes))).toBe(0)
    expect(await readdir(join(dir, 'blobs', hashes[0]!.slice(2, 4)))).toEqual([hashes[0]!.slice(2)])
  })

  it('throws BlobNotFoundError for a hash it does not hold', async () => {
    const missing = sha256Hex(new TextEncoder().encode('never stored'))
    expect(await store.has(missing)).toBe(false)
    await expect(store.get(missing)).rejects.toBeInstanceOf(BlobNotFoundError)
    await expect(store.get(missing)).rejects.toThrow(`no blob ${missing}`)
  })

  it('treats anything that is not a lower-case SHA-256 hex digest as missing (no path tricks)', async () => {
    const hash = await store.put(new Uint8Array([9]))
    for (const name of [hash.toUpperCase(), hash.slice(2), `${hash}00`, '../../etc/passwd', `0x${'.'.repeat(64)}`, '']) {
      expect(await store.has(name)).toBe(false)
      await expect(store.get(name)).rejects.toBeInstanceOf(BlobNotFoundError)
    }
  })
})
