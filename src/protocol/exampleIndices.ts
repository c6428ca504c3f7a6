import { sha256 } from '@noble/hashes/sha2.js'
import type { Hash } from './hash.ts'

/**
 * The training examples of unit `(jobSeed, round, unit)`: a pure function of those numbers, so a
 * verifier re-running the unit reads exactly the same micro-batches.
 *
 * Seeding: SHA-256 of the ASCII string `tabtrain/examples/v1/<jobId>/<seed>/<round>/<unit>` gives
 * four u32 words for sfc32 (a small, well-tested PRNG whose output is defined on integers alone, so it
 * is the same in every JS engine). Indices are drawn with replacement by the multiply-shift
 * `floor(u32 * n / 2^32)`; its bias is below n / 2^32, irrelevant here, and it is exact in doubles.
 */
export function unitExampleIndices(params: {
  jobId: Hash
  seed: number
  round: number
  unit: number
  count: number
  datasetSize: number
}): Uint32Array {
  const { jobId, seed, round, unit, count, datasetSize } = params
  if (datasetSize < 1) throw new RangeError('datasetSize must be at least 1')
  const next = seededU32Stream(`tabtrain/examples/v1/${jobId}/${seed}/${round}/${unit}`)
  const out = new Uint32Array(count)
  for (let i = 0; i < count; i++) out[i] = Math.floor((next() * datasetSize) / 0x1_0000_0000)
  return out
}

/** A deterministic stream of u32 values seeded by SHA-256 of `label`. */
export function seededU32Stream(label: string): () => number {
  const digest = sha256(new TextEncoder().encode(label))
  const words = new DataView(digest.buffer, digest.byteOffset, 16)
  return sfc32(words.getUint32(0, true), words.getUint32(4, true), words.getUint32(8, true), words.getUint32(12, true))
}

function sfc32(a: number, b: number, c: number, d: number): () => number {
  // Warm-up rounds recommended by sfc's author so that similar seeds diverge.
  const step = () => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return t >>> 0
  }
  for (let i = 0; i < 12; i++) step()
  return step
}
