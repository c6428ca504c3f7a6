/**
 * Plain text → a next-character classification set: a vocabulary of the text's distinct characters (ids
 * in code-point order) and windows of `contextLength` ids, each labelled with the id of the character that
 * follows it. Stored as uint8 IDX (ids; the spec's one-hot `inputEncoding` expands them at batch time).
 *
 * - At most 256 distinct characters (one byte per id); more is refused, naming the count.
 * - The first 90% of the text gives training windows, the last 10% held-out windows, so no held-out
 *   label was ever inside a training window.
 * - A text gives one window per position; a deterministic, evenly spaced subset of at most
 *   `maxTrainWindows` / `maxHeldOutWindows` keeps the blobs a few MB (Tiny Shakespeare: 100,000 windows
 *   of 24 ids is 2.4 MB) and the coordinator's evaluation each round short.
 */
import { DatasetError } from './datasetError.ts'
import type { PreparedDataset } from './prepared.ts'

export const MAX_VOCABULARY = 256
export const HELD_OUT_TEXT_FRACTION = 0.1
export const DEFAULT_MAX_TRAIN_WINDOWS = 100_000
export const DEFAULT_MAX_HELD_OUT_WINDOWS = 2_000

export interface TextOptions {
  contextLength: number
  maxTrainWindows?: number
  maxHeldOutWindows?: number
  fileName?: string
}

export interface TextDataset extends PreparedDataset {
  vocabulary: string
  inputEncoding: { kind: 'one-hot'; depth: number }
}

/** Evenly spaced starts of `take` windows out of `available`, from `offset`. */
function windowStarts(offset: number, available: number, take: number): number[] {
  return Array.from({ length: take }, (_, i) => offset + Math.floor((i * available) / take))
}

export function textToDataset(input: Uint8Array | string, options: TextOptions): TextDataset {
  const fileName = options.fileName ?? 'text'
  const L = options.contextLength
  if (!Number.isInteger(L) || L < 1 || L > 1024) throw new DatasetError('bad_shape', `contextLength ${L} is not an integer from 1 to 1024`)
  let text: string
  try {
    text = typeof input === 'string' ? input : new TextDecoder('utf-8', { fatal: true }).decode(input)
  } catch {
    throw new DatasetError('not_utf8', `${fileName}: not UTF-8 text`)
  }
  if (text.length === 0) throw new DatasetError('empty_file', `${fileName}: the file is empty`)
  // Two passes over the code points, never an array of one string per character (tens of MB of text).
  const seen = new Set<number>()
  for (const c of text) seen.add(c.codePointAt(0)!)
  const vocabulary = [...seen].sort((a, b) => a - b)
  if (vocabulary.length > MAX_VOCABULARY) {
    throw new DatasetError('vocabulary_too_large', `${fileName}: ${vocabulary.length} distinct characters; at most ${MAX_VOCABULARY} (one byte per character id)`)
  }
  const idOf = new Map(vocabulary.map((c, i) => [c, i]))
  const buffer = new Uint8Array(text.length)
  let n = 0
  for (const c of text) buffer[n++] = idOf.get(c.codePointAt(0)!)!
  const ids = buffer.subarray(0, n)

  const boundary = Math.floor(n * (1 - HELD_OUT_TEXT_FRACTION))
  // A window [s, s + L) and its label s + L must lie inside its part.
  const trainAvailable = boundary - L
  const heldOutAvailable = n - boundary - L
  if (trainAvailable < 1 || heldOutAvailable < 1) {
    throw new DatasetError(
      'text_too_short',
      `${fileName}: ${n} characters is too short for windows of ${L}: the last 10% (held out) and the first 90% each need more than ${L} characters`,
    )
  }
  const windows = (starts: number[]) => {
    const images = new Uint8Array(starts.length * L)
    const labels = new Uint8Array(starts.length)
    starts.forEach((s, i) => {
      images.set(ids.subarray(s, s + L), i * L)
      labels[i] = ids[s + L]!
    })
    return { images: { shape: [starts.length, L], data: images }, labels: { shape: [starts.length], data: labels } }
  }
  const train = windowStarts(0, trainAvailable, Math.min(trainAvailable, options.maxTrainWindows ?? DEFAULT_MAX_TRAIN_WINDOWS))
  const heldOut = windowStarts(boundary, heldOutAvailable, Math.min(heldOutAvailable, options.maxHeldOutWindows ?? DEFAULT_MAX_HELD_OUT_WINDOWS))
  return {
    train: windows(train),
    heldOut: windows(heldOut),
    classes: vocabulary.length,
    itemShape: [L],
    scale: 1,
    inputEncoding: { kind: 'one-hot', depth: vocabulary.length },
    vocabulary: String.fromCodePoint(...vocabulary),
  }
}
