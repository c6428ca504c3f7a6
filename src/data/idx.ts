/**
 * IDX files (the MNIST format): big-endian header `0 0 <dtype> <rank>`, then `rank` u32 dimensions,
 * then the data. Only uint8 data (dtype 0x08) is accepted: that is what image and label sets use.
 * Works on any size, from the 2,000-example shards here to the full 60,000-image training file.
 */
export interface IdxArray {
  shape: number[]
  data: Uint8Array
}

export class IdxFormatError extends Error {
  override name = 'IdxFormatError'
}

const UINT8 = 0x08

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b
}

export function parseIdx(bytes: Uint8Array): IdxArray {
  if (isGzip(bytes)) throw new IdxFormatError('IDX bytes are gzip-compressed: decompress them first')
  if (bytes.byteLength < 4) throw new IdxFormatError('IDX file shorter than its magic number')
  if (bytes[0] !== 0 || bytes[1] !== 0) throw new IdxFormatError('IDX magic must start with two zero bytes')
  if (bytes[2] !== UINT8) throw new IdxFormatError(`IDX data type 0x${bytes[2]!.toString(16)} is not uint8`)
  const rank = bytes[3]!
  if (rank < 1 || rank > 4) throw new IdxFormatError(`IDX rank ${rank} is not between 1 and 4`)
  const headerBytes = 4 + 4 * rank
  if (bytes.byteLength < headerBytes) throw new IdxFormatError('IDX file ends inside its header')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const shape: number[] = []
  for (let i = 0; i < rank; i++) shape.push(view.getUint32(4 + 4 * i, false))
  const size = shape.reduce((a, b) => a * b, 1)
  if (bytes.byteLength !== headerBytes + size) {
    throw new IdxFormatError(`IDX header promises ${size} bytes of data, file has ${bytes.byteLength - headerBytes}`)
  }
  return { shape, data: bytes.subarray(headerBytes) }
}

export function encodeIdx(array: IdxArray): Uint8Array {
  const rank = array.shape.length
  const out = new Uint8Array(4 + 4 * rank + array.data.byteLength)
  const view = new DataView(out.buffer)
  out[2] = UINT8
  out[3] = rank
  array.shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false))
  out.set(array.data, 4 + 4 * rank)
  return out
}

/** Rows [start, end) of an IDX array along its first axis. */
export function sliceIdx(array: IdxArray, start: number, end: number): IdxArray {
  const rowSize = array.shape.slice(1).reduce((a, b) => a * b, 1)
  return { shape: [end - start, ...array.shape.slice(1)], data: array.data.subarray(start * rowSize, end * rowSize) }
}

/** A labelled classification set: images as rows of `exampleSize` bytes, one label byte per row. */
export interface LabelledSet {
  count: number
  exampleSize: number
  images: Uint8Array
  labels: Uint8Array
}

export function labelledSetFromIdx(images: IdxArray, labels: IdxArray): LabelledSet {
  const count = images.shape[0]!
  if (labels.shape.length !== 1 || labels.shape[0] !== count) {
    throw new IdxFormatError(`${count} images but labels have shape [${labels.shape.join(',')}]`)
  }
  const exampleSize = images.shape.slice(1).reduce((a, b) => a * b, 1)
  return { count, exampleSize, images: images.data, labels: labels.data }
}
