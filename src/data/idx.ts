/**
 * IDX files (the MNIST format): big-endian header `0 0 <dtype> <rank>`, then `rank` u32 dimensions,
 * then the data. Two data types are accepted: uint8 (0x08: images, labels, character ids) and float32
 * (0x0D, big-endian like every IDX number: tabular features). Every data set TabTrain trains on is an
 * IDX pair, whatever it was uploaded as (CSV and text are converted by csv.ts and text.ts), so training
 * has one data path. Works on any size, from the 2,000-example shards here to the full 60,000-image file.
 */
import { DatasetError } from './datasetError.ts'

export interface IdxArray {
  shape: number[]
  /** uint8 items, or float32 items (host byte order in memory; big-endian in the file). */
  data: Uint8Array | Float32Array
}

export class IdxFormatError extends DatasetError {
  override name = 'IdxFormatError'
  constructor(message: string) {
    super('bad_idx', message)
  }
}

const UINT8 = 0x08
const FLOAT32 = 0x0d

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b
}

export function parseIdx(bytes: Uint8Array): IdxArray {
  if (isGzip(bytes)) throw new IdxFormatError('IDX bytes are gzip-compressed: decompress them first')
  if (bytes.byteLength < 4) throw new IdxFormatError('IDX file shorter than its magic number')
  if (bytes[0] !== 0 || bytes[1] !== 0) throw new IdxFormatError('IDX magic must start with two zero bytes')
  const dtype = bytes[2]!
  if (dtype !== UINT8 && dtype !== FLOAT32) {
    throw new IdxFormatError(`IDX data type 0x${dtype.toString(16)} is not uint8 (0x08) or float32 (0x0d)`)
  }
  const rank = bytes[3]!
  if (rank < 1 || rank > 4) throw new IdxFormatError(`IDX rank ${rank} is not between 1 and 4`)
  const headerBytes = 4 + 4 * rank
  if (bytes.byteLength < headerBytes) throw new IdxFormatError('IDX file ends inside its header')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const shape: number[] = []
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(4 + 4 * i, false))
  const size = shape.reduce((a, b) => a * b, 1)
  const itemBytes = dtype === FLOAT32 ? 4 : 1
  if (bytes.byteLength !== headerBytes + size * itemBytes) {
    throw new IdxFormatError(`IDX header promises ${size * itemBytes} bytes of data, file has ${bytes.byteLength - headerBytes}`)
  }
  if (dtype === UINT8) return { shape, data: bytes.subarray(headerBytes) }
  const data = new Float32Array(size)
  for (let i = 0; i < size; i++) data[i] = view.getFloat32(headerBytes + 4 * i, false)
  return { shape, data }
}

export function encodeIdx(array: IdxArray): Uint8Array {
  const rank = array.shape.length
  const float = array.data instanceof Float32Array
  const header = 4 + 4 * rank
  const out = new Uint8Array(header + array.data.byteLength)
  const view = new DataView(out.buffer)
  out[2] = float ? FLOAT32 : UINT8
  out[3] = rank
  array.shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false))
  if (array.data instanceof Float32Array) array.data.forEach((v, i) => view.setFloat32(header + 4 * i, v, false))
  else out.set(array.data, header)
  return out
}

/** Rows [start, end) of an IDX array along its first axis. */
export function sliceIdx(array: IdxArray, start: number, end: number): IdxArray {
  const rowSize = array.shape.slice(1).reduce((a, b) => a * b, 1)
  return { shape: [end - start, ...array.shape.slice(1)], data: array.data.subarray(start * rowSize, end * rowSize) }
}

/**
 * A labelled classification set: examples as rows of `exampleSize` items (uint8 pixels or ids, or float32
 * features), one uint8 label per row.
 */
export interface LabelledSet {
  count: number
  exampleSize: number
  images: Uint8Array | Float32Array
  labels: Uint8Array
}

export function labelledSetFromIdx(images: IdxArray, labels: IdxArray): LabelledSet {
  const count = images.shape[0]!
  if (labels.shape.length !== 1 || labels.shape[0] !== count) {
    throw new IdxFormatError(`${count} images but labels have shape [${labels.shape.join(',')}]`)
  }
  if (!(labels.data instanceof Uint8Array)) throw new IdxFormatError('labels must be uint8 class ids, not float32')
  const exampleSize = images.shape.slice(1).reduce((a, b) => a * b, 1)
  return { count, exampleSize, images: images.data, labels: labels.data }
}

/** What an uploaded IDX pair must agree with. */
export interface IdxPairExpectation {
  classes: number
  /** Items per example the model takes (its input shape's product). */
  exampleSize?: number
  /** Largest number of examples accepted. */
  maxCount?: number
}

/**
 * Checks an uploaded images/labels pair before anything is stored: both parse, counts match, every label
 * is a class id below `classes`, and each example has the size the model takes. Names the file and, for
 * a bad label, the example's index.
 */
export function validateIdxPair(imagesBytes: Uint8Array, labelsBytes: Uint8Array, expect: IdxPairExpectation): LabelledSet {
  const parse = (bytes: Uint8Array, file: string) => {
    try {
      return parseIdx(bytes)
    } catch (error) {
      if (error instanceof IdxFormatError) throw new IdxFormatError(`${file}: ${error.message}`)
      throw error
    }
  }
  const images = parse(imagesBytes, 'images')
  const labels = parse(labelsBytes, 'labels')
  if (labels.shape.length !== 1) throw new DatasetError('bad_shape', `labels: an IDX1 file of class ids is expected, this one has shape [${labels.shape.join(',')}]`)
  if (!(labels.data instanceof Uint8Array)) throw new DatasetError('bad_shape', 'labels: class ids must be uint8 (IDX type 0x08), not float32')
  const count = images.shape[0]!
  if (labels.shape[0] !== count) throw new DatasetError('count_mismatch', `images has ${count} examples but labels has ${labels.shape[0]}`)
  if (count === 0) throw new DatasetError('too_few_rows', 'images: the file holds no examples')
  if (expect.maxCount !== undefined && count > expect.maxCount) {
    throw new DatasetError('too_large', `images: ${count} examples, at most ${expect.maxCount} are accepted`)
  }
  const exampleSize = images.shape.slice(1).reduce((a, b) => a * b, 1)
  if (expect.exampleSize !== undefined && exampleSize !== expect.exampleSize) {
    throw new DatasetError(
      'bad_shape',
      `images: each example has shape [${images.shape.slice(1).join(',')}] (${exampleSize} values), the model takes ${expect.exampleSize}`,
    )
  }
  for (let i = 0; i < count; i++) {
    if (labels.data[i]! >= expect.classes) {
      throw new DatasetError('label_out_of_range', `labels: example ${i} has label ${labels.data[i]}, but the model has ${expect.classes} classes (0 to ${expect.classes - 1})`)
    }
  }
  if (images.data instanceof Float32Array) {
    const bad = images.data.findIndex((v) => !Number.isFinite(v))
    if (bad >= 0) throw new DatasetError('bad_idx', `images: example ${Math.floor(bad / exampleSize)} holds a value that is not finite`)
  }
  return labelledSetFromIdx(images, labels)
}
