import { seededU32Stream, sha256Hex, type DatasetSpec, type Hash } from '../protocol/index.ts'
import { encodeIdx, labelledSetFromIdx, type IdxArray, type LabelledSet } from './idx.ts'

/** One split of a data set as IDX arrays: examples (first axis) and their uint8 class ids. */
export interface IdxPair {
  images: IdxArray
  labels: IdxArray
}

/**
 * A data set converted to what training reads (CSV by csv.ts, text by text.ts, uploaded IDX as is),
 * before it is hashed into a spec: the two splits and what the spec records about them.
 */
export interface PreparedDataset {
  train: IdxPair
  heldOut: IdxPair
  classes: number
  /** Shape of one stored item (the IDX shape after the first axis). */
  itemShape: number[]
  scale: number
  inputEncoding?: DatasetSpec['inputEncoding']
  vocabulary?: string
  labelNames?: string[]
  featureNames?: string[]
  standardization?: DatasetSpec['standardization']
}

/** The input shape a model takes for this data set unless it reshapes: the item, one-hot expanded. */
export function defaultInputShape(prepared: PreparedDataset): number[] {
  return prepared.inputEncoding ? [...prepared.itemShape, prepared.inputEncoding.depth] : prepared.itemShape
}

/**
 * The spec's `data` part and the blobs it references (the four IDX files, by hash), plus the decoded
 * splits. `inputShape` is the model's input shape (the item's size, times the one-hot depth if any).
 */
export function datasetSpecAndBlobs(
  prepared: PreparedDataset,
  name: string,
  inputShape: number[] = defaultInputShape(prepared),
): { data: DatasetSpec; blobs: Map<Hash, Uint8Array>; train: LabelledSet; heldOut: LabelledSet } {
  const blobs = new Map<Hash, Uint8Array>()
  const put = (array: IdxArray) => {
    const bytes = encodeIdx(array)
    const hash = sha256Hex(bytes)
    blobs.set(hash, bytes)
    return hash
  }
  const split = (pair: IdxPair) => ({ images: put(pair.images), labels: put(pair.labels), count: pair.images.shape[0]! })
  const data: DatasetSpec = {
    format: 'idx-classification',
    name,
    inputShape,
    classes: prepared.classes,
    scale: prepared.scale,
    train: split(prepared.train),
    heldOut: split(prepared.heldOut),
    ...(prepared.inputEncoding ? { inputEncoding: prepared.inputEncoding } : {}),
    ...(prepared.vocabulary !== undefined ? { vocabulary: prepared.vocabulary } : {}),
    ...(prepared.labelNames ? { labelNames: prepared.labelNames } : {}),
    ...(prepared.featureNames ? { featureNames: prepared.featureNames } : {}),
    ...(prepared.standardization ? { standardization: prepared.standardization } : {}),
  }
  return {
    data,
    blobs,
    train: labelledSetFromIdx(prepared.train.images, prepared.train.labels),
    heldOut: labelledSetFromIdx(prepared.heldOut.images, prepared.heldOut.labels),
  }
}

/**
 * A fixed pseudo-random order of n rows (Fisher-Yates on a SHA-256-seeded stream), the same on every
 * machine: uploads are split into training and held-out rows along it, so a file sorted by class still
 * has every class in both parts.
 */
export function fixedPermutation(n: number): number[] {
  const next = seededU32Stream('tabtrain/csv-split/v1')
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor((next() / 0x1_0000_0000) * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order
}

/** Rows held out of n for a fraction: at least one, and at least one left to train on. */
export function heldOutCount(n: number, fraction: number): number {
  return Math.min(n - 1, Math.max(1, Math.round(n * fraction)))
}

/** An uploaded IDX pair split into training and held-out rows along fixedPermutation. */
export function splitLabelledIdx(images: IdxArray, labels: IdxArray, fraction: number): { train: IdxPair; heldOut: IdxPair } {
  const n = images.shape[0]!
  const size = images.shape.slice(1).reduce((a, b) => a * b, 1)
  const order = fixedPermutation(n)
  const held = heldOutCount(n, fraction)
  const take = (rows: number[]): IdxPair => {
    const data = images.data instanceof Float32Array ? new Float32Array(rows.length * size) : new Uint8Array(rows.length * size)
    const y = new Uint8Array(rows.length)
    rows.forEach((row, i) => {
      data.set(images.data.subarray(row * size, (row + 1) * size), i * size)
      y[i] = labels.data[row]!
    })
    return { images: { shape: [rows.length, ...images.shape.slice(1)], data }, labels: { shape: [rows.length], data: y } }
  }
  return { train: take(order.slice(0, n - held)), heldOut: take(order.slice(n - held)) }
}
