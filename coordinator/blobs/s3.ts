import { AwsClient } from 'aws4fetch'
import { isHash, sha256Hex, type Hash } from '../../src/protocol/index.ts'
import { BlobNotFoundError, BlobStoreError, verified, WRITE_WITHOUT_CHECK_BYTES, type BlobStore } from './store.ts'

export interface S3BlobStoreOptions {
  /** The service's base URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000` (MinIO). */
  endpoint: string
  bucket: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  /** Prepended to every key: objects are `<prefix><hash>` (e.g. `tabtrain/0x…`). */
  prefix: string
}

/**
 * Blobs in any S3-compatible object store (AWS S3, MinIO, R2, Ceph…), requests signed with SigV4 by
 * aws4fetch. Path-style URLs (`<endpoint>/<bucket>/<key>`), which every such service accepts, so no DNS
 * per bucket is needed. Each upload carries its SHA-256 as `x-amz-content-sha256`, which a real S3 checks
 * against the body: a blob damaged on the way is refused instead of stored under its hash.
 */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3'
  private readonly client: AwsClient
  private readonly base: string
  private readonly prefix: string

  constructor(readonly options: S3BlobStoreOptions) {
    this.client = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      region: options.region,
      service: 's3',
      // aws4fetch retries 5xx and 429 with backoff; a few tries, not its default ten.
      retries: 3,
    })
    this.base = `${options.endpoint.replace(/\/+$/, '')}/${encodeURIComponent(options.bucket)}`
    // Without a leading slash, which would make an empty path segment.
    this.prefix = options.prefix.replace(/^\/+/, '')
  }

  private urlOf(hash: Hash): string {
    return `${this.base}/${this.prefix}${hash}`
  }

  /** Fails unless the bucket is reachable with these credentials: a misconfiguration stops the start, not the first upload. */
  async check(): Promise<void> {
    const response = await this.request(this.base + '/', { method: 'HEAD' }, `bucket ${this.options.bucket}`)
    if (response.status === 404) throw new BlobStoreError(`S3 bucket ${this.options.bucket} does not exist at ${this.options.endpoint}`)
    if (!response.ok) throw new BlobStoreError(`S3 bucket ${this.options.bucket} at ${this.options.endpoint} answered HTTP ${response.status}; check the credentials and region`)
  }

  async put(bytes: Uint8Array, knownHash?: Hash): Promise<Hash> {
    const hash = knownHash ?? sha256Hex(bytes)
    if (bytes.byteLength >= WRITE_WITHOUT_CHECK_BYTES && (await this.has(hash))) return hash
    const response = await this.request(this.urlOf(hash), {
      method: 'PUT',
      body: bytes as BodyInit,
      headers: { 'content-type': 'application/octet-stream', 'x-amz-content-sha256': hash.slice(2) },
    }, `PUT ${hash}`)
    await response.body?.cancel()
    if (!response.ok) throw new BlobStoreError(`S3 PUT of blob ${hash} answered HTTP ${response.status}`)
    return hash
  }

  async has(hash: string): Promise<boolean> {
    if (!isHash(hash)) return false
    const response = await this.request(this.urlOf(hash), { method: 'HEAD' }, `HEAD ${hash}`)
    if (response.status === 404) return false
    if (!response.ok) throw new BlobStoreError(`S3 HEAD of blob ${hash} answered HTTP ${response.status}`)
    return true
  }

  async get(hash: string): Promise<Uint8Array> {
    if (!isHash(hash)) throw new BlobNotFoundError(`${hash} is not a SHA-256 hex digest`)
    const response = await this.request(this.urlOf(hash), { method: 'GET' }, `GET ${hash}`)
    if (response.status === 404) {
      await response.body?.cancel()
      throw new BlobNotFoundError(`no blob ${hash}`)
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new BlobStoreError(`S3 GET of blob ${hash} answered HTTP ${response.status}`)
    }
    return verified(hash, new Uint8Array(await response.arrayBuffer()), `S3 bucket ${this.options.bucket}`)
  }

  async delete(hash: string): Promise<void> {
    if (!isHash(hash)) return
    const response = await this.request(this.urlOf(hash), { method: 'DELETE' }, `DELETE ${hash}`)
    await response.body?.cancel()
    // S3 answers 204 whether or not the object existed.
    if (!response.ok && response.status !== 404) throw new BlobStoreError(`S3 DELETE of blob ${hash} answered HTTP ${response.status}`)
  }

  async close(): Promise<void> {}

  private async request(url: string, init: RequestInit, what: string): Promise<Response> {
    try {
      return await this.client.fetch(url, init)
    } catch (error) {
      throw new BlobStoreError(`S3 ${what} at ${this.options.endpoint} failed: ${(error as Error).message}`)
    }
  }
}
