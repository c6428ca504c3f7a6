import { readFile } from 'node:fs/promises'
import { gunzipSync } from 'node:zlib'
import { isGzip, parseIdx, type IdxArray } from '../src/data/idx.ts'

/** Reads an IDX file from disk, gzip-compressed (as distributed) or raw, of any size. */
export async function readIdxFile(path: string): Promise<IdxArray> {
  const bytes = new Uint8Array(await readFile(path))
  return parseIdx(isGzip(bytes) ? new Uint8Array(gunzipSync(bytes)) : bytes)
}
