import { sha256Hex, type Hash } from './hash.ts'

/**
 * Canonical bytes of a tensor list (checkpoints and updates):
 *
 *   'TTW1' | u32 tensorCount | per tensor: u32 rank, u32 dims[rank] | float32 data, tensor after tensor
 *
 * All integers and floats little-endian. The header is a whole number of u32 words, so the float data
 * starts 4-byte aligned and can be viewed in place. `hash = SHA-256(bytes)`.
 */
export const TENSOR_BYTES_MAGIC = 0x31575454 // 'TTW1' read as a little-endian u32

export type Shape = readonly number[]

export interface TensorList {
  shapes: Shape[]
  /** One Float32Array per tensor, row-major. */
  values: Float32Array[]
}

export class TensorBytesError extends Error {
  override name = 'TensorBytesError'
}

export function shapeSize(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1)
}

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

export function encodeTensorList(list: TensorList): Uint8Array {
  if (list.shapes.length !== list.values.length) {
    throw new TensorBytesError(`${list.shapes.length} shapes but ${list.values.length} value arrays`)
  }
  const headerWords = 2 + list.shapes.reduce((n, s) => n + 1 + s.length, 0)
  const floatCount = list.values.reduce((n, v) => n + v.length, 0)
  const buffer = new ArrayBuffer(4 * (headerWords + floatCount))
  const view = new DataView(buffer)
  let offset = 0
  const u32 = (x: number) => {
    view.setUint32(offset, x, true)
    offset += 4
  }
  u32(TENSOR_BYTES_MAGIC)
  u32(list.shapes.length)
  list.shapes.forEach((shape, i) => {
    const size = shapeSize(shape)
    if (size !== list.values[i]!.length) {
      throw new TensorBytesError(`tensor ${i}: shape [${shape.join(',')}] holds ${size} values, got ${list.values[i]!.length}`)
    }
    u32(shape.length)
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new TensorBytesError(`tensor ${i}: bad dimension ${d}`)
      u32(d)
    }
  })
  for (const values of list.values) {
    if (littleEndianHost) {
      new Float32Array(buffer, offset, values.length).set(values)
      offset += 4 * values.length
    } else {
      for (const x of values) {
        view.setFloat32(offset, x, true)
        offset += 4
      }
    }
  }
  return new Uint8Array(buffer)
}

/** Parses canonical tensor bytes; every length is checked, so truncated or padded input is rejected. */
export function decodeTensorList(bytes: Uint8Array): TensorList {
  if (bytes.byteLength < 8 || bytes.byteLength % 4 !== 0) {
    throw new TensorBytesError(`tensor bytes must be a whole number of 4-byte words, at least 8; got ${bytes.byteLength}`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = 0
  const u32 = () => {
    if (offset + 4 > bytes.byteLength) throw new TensorBytesError('tensor bytes end inside the header')
    const x = view.getUint32(offset, true)
    offset += 4
    return x
  }
  if (u32() !== TENSOR_BYTES_MAGIC) throw new TensorBytesError("tensor bytes do not start with 'TTW1'")
  const count = u32()
  if (count > 4096) throw new TensorBytesError(`implausible tensor count ${count}`)
  const shapes: number[][] = []
  for (let i = 0; i < count; i++) {
    const rank = u32()
    if (rank > 8) throw new TensorBytesError(`tensor ${i}: implausible rank ${rank}`)
    const shape: number[] = []
    for (let d = 0; d < rank; d++) shape.push(u32())
    shapes.push(shape)
  }
  const floatCount = shapes.reduce((n, s) => n + shapeSize(s), 0)
  if (offset + 4 * floatCount !== bytes.byteLength) {
    throw new TensorBytesError(`header promises ${floatCount} floats but ${(bytes.byteLength - offset) / 4} follow`)
  }
  // Copy into an aligned buffer we own: the input may be a view at an odd offset or a pooled buffer.
  const data = new Float32Array(floatCount)
  if (littleEndianHost && (bytes.byteOffset + offset) % 4 === 0) {
    data.set(new Float32Array(bytes.buffer, bytes.byteOffset + offset, floatCount))
  } else {
    for (let i = 0; i < floatCount; i++) data[i] = view.getFloat32(offset + 4 * i, true)
  }
  const values: Float32Array[] = []
  let start = 0
  for (const shape of shapes) {
    const size = shapeSize(shape)
    values.push(data.subarray(start, start + size))
    start += size
  }
  return { shapes, values }
}

export function hashTensorList(list: TensorList): { bytes: Uint8Array; hash: Hash } {
  const bytes = encodeTensorList(list)
  return { bytes, hash: sha256Hex(bytes) }
}

/** The first non-finite value, or null when every value is finite. */
export function findNonFinite(list: TensorList): { tensor: number; index: number; value: number } | null {
  for (let t = 0; t < list.values.length; t++) {
    const v = list.values[t]!
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i]!)) return { tensor: t, index: i, value: v[i]! }
    }
  }
  return null
}

export function sameShapes(a: readonly Shape[], b: readonly Shape[]): boolean {
  return a.length === b.length && a.every((s, i) => s.length === b[i]!.length && s.every((d, j) => d === b[i]![j]))
}
