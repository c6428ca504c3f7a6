import { describe, expect, it } from 'vitest'
import { sha256Hex } from './hash.ts'
import {
  TENSOR_BYTES_MAGIC,
  TensorBytesError,
  decodeTensorList,
  encodeTensorList,
  findNonFinite,
  hashTensorList,
  sameShapes,
  shapeSize,
  type TensorList,
} from './tensorBytes.ts'

/** A small fixed list: a matrix, a vector and a scalar (rank 0). */
function fixedList(): TensorList {
  return {
    shapes: [[2, 3], [3], []],
    values: [new Float32Array([1, -2, 0.5, 3.25, 0, 1e-3]), new Float32Array([0.1, 2, -7]), new Float32Array([42])],
  }
}

/** The canonical bytes of `fixedList()`, written out by hand from the format's definition. */
const FIXED_LIST_HEX =
  '54545731' + // 'TTW1'
  '03000000' + // 3 tensors
  '02000000' + '02000000' + '03000000' + // rank 2: [2, 3]
  '01000000' + '03000000' + // rank 1: [3]
  '00000000' + // rank 0: []
  '0000803f' + '000000c0' + '0000003f' + '00005040' + '00000000' + '6f12833a' + // 1, -2, 0.5, 3.25, 0, 1e-3
  'cdcccc3d' + '00000040' + '0000e0c0' + // 0.1, 2, -7
  '00002842' // 42

/**
 * Pinned: SHA-256 of the canonical bytes above. Every checkpoint and update hash, and so every signed
 * claim, depends on this format; a silent change to it must fail here.
 */
const FIXED_LIST_SHA256 = '0x27155665d45d5d0de1c9b6c463c6163aac88d238fa895a9e610806dc4bb910ac'

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

function expectTensorBytesError(fn: () => unknown, message: RegExp) {
  expect(fn).toThrow(TensorBytesError)
  expect(fn).toThrow(message)
}

describe('canonical tensor bytes', () => {
  it('encodes the documented layout byte for byte', () => {
    const bytes = encodeTensorList(fixedList())
    expect(hex(bytes)).toBe(FIXED_LIST_HEX)
    expect(new DataView(bytes.buffer).getUint32(0, true)).toBe(TENSOR_BYTES_MAGIC)
    expect(String.fromCharCode(...bytes.subarray(0, 4))).toBe('TTW1')
  })

  it('pins the SHA-256 of a fixed tensor list', () => {
    const { bytes, hash } = hashTensorList(fixedList())
    expect(hash).toBe(FIXED_LIST_SHA256)
    expect(sha256Hex(bytes)).toBe(FIXED_LIST_SHA256)
  })

  it('round-trips shapes and values exactly, including -0, subnormals and extremes', () => {
    const list: TensorList = {
      shapes: [[2, 2], [1, 1, 3], [0], [4]],
      values: [
        new Float32Array([-0, 1.401298464324817e-45, 3.4028234663852886e38, -1.1754943508222875e-38]),
        new Float32Array([Math.PI, -Math.E, 1 / 3]),
        new Float32Array([]),
        new Float32Array([NaN, Infinity, -Infinity, 7]),
      ],
    }
    const decoded = decodeTensorList(encodeTensorList(list))
    expect(decoded.shapes).toEqual(list.shapes)
    expect(decoded.values).toHaveLength(list.values.length)
    decoded.values.forEach((v, i) => {
      // Compare bit patterns: toEqual would treat -0 and 0 as different but NaN payloads loosely.
      expect(new Uint32Array(v.slice().buffer)).toEqual(new Uint32Array(list.values[i]!.slice().buffer))
    })
    expect(Object.is(decoded.values[0]![0], -0)).toBe(true)
  })

  it('encodes an empty list as just the magic and a zero count', () => {
    const bytes = encodeTensorList({ shapes: [], values: [] })
    expect(hex(bytes)).toBe('5454573100000000')
    expect(decodeTensorList(bytes)).toEqual({ shapes: [], values: [] })
  })

  it('decodes from a view at an unaligned offset inside a larger buffer', () => {
    const bytes = encodeTensorList(fixedList())
    const backing = new Uint8Array(bytes.byteLength + 3)
    backing.set(bytes, 1)
    const view = backing.subarray(1, 1 + bytes.byteLength)
    expect(view.byteOffset % 4).toBe(1)
    const decoded = decodeTensorList(view)
    expect(decoded.shapes).toEqual(fixedList().shapes)
    expect(decoded.values).toEqual(fixedList().values)
    // The decoded arrays own their memory: changing the input afterwards does not change them.
    backing.fill(0)
    expect(decoded.values[2]![0]).toBe(42)
  })

  it('rounds float64 inputs to float32 on encode', () => {
    const list: TensorList = { shapes: [[1]], values: [new Float32Array([0.1])] }
    expect(decodeTensorList(encodeTensorList(list)).values[0]![0]).toBe(Math.fround(0.1))
  })

  it('rejects input that is truncated at any point', () => {
    const bytes = encodeTensorList(fixedList())
    for (let length = 0; length < bytes.byteLength; length++) {
      expect(() => decodeTensorList(bytes.subarray(0, length)), `length ${length}`).toThrow(TensorBytesError)
    }
  })

  it('rejects input with a word of trailing padding', () => {
    const bytes = encodeTensorList(fixedList())
    const padded = new Uint8Array(bytes.byteLength + 4)
    padded.set(bytes)
    expectTensorBytesError(() => decodeTensorList(padded), /header promises 10 floats but 11 follow/)
  })

  it('rejects input whose length is not a whole number of words', () => {
    const bytes = encodeTensorList(fixedList())
    const padded = new Uint8Array(bytes.byteLength + 1)
    padded.set(bytes)
    expectTensorBytesError(() => decodeTensorList(padded), /whole number of 4-byte words/)
  })

  it('rejects a bad magic number', () => {
    const bytes = encodeTensorList(fixedList())
    bytes[3] = 0x32 // 'TTW2'
    expectTensorBytesError(() => decodeTensorList(bytes), /do not start with 'TTW1'/)
  })

  it('rejects a header that ends before its shapes do', () => {
    // Magic, count 2, first tensor rank 1 with its dimension: the second tensor's rank is missing.
    const bytes = new Uint8Array(new Uint32Array([TENSOR_BYTES_MAGIC, 2, 1, 0]).buffer)
    expectTensorBytesError(() => decodeTensorList(bytes), /end inside the header/)
  })

  it('rejects an implausible tensor count or rank before allocating anything', () => {
    const count = new Uint8Array(new Uint32Array([TENSOR_BYTES_MAGIC, 4097]).buffer)
    expectTensorBytesError(() => decodeTensorList(count), /implausible tensor count 4097/)
    const rank = new Uint8Array(new Uint32Array([TENSOR_BYTES_MAGIC, 1, 9]).buffer)
    expectTensorBytesError(() => decodeTensorList(rank), /tensor 0: implausible rank 9/)
  })

  it('rejects a header promising more data than follows', () => {
    const bytes = new Uint8Array(new Uint32Array([TENSOR_BYTES_MAGIC, 1, 1, 0xffff_ffff]).buffer)
    expectTensorBytesError(() => decodeTensorList(bytes), /header promises/)
  })

  it('refuses to encode inconsistent lists', () => {
    expectTensorBytesError(() => encodeTensorList({ shapes: [[1], [1]], values: [new Float32Array(1)] }), /2 shapes but 1 value arrays/)
    expectTensorBytesError(
      () => encodeTensorList({ shapes: [[2, 2]], values: [new Float32Array(3)] }),
      /tensor 0: shape \[2,2\] holds 4 values, got 3/,
    )
    expectTensorBytesError(() => encodeTensorList({ shapes: [[-1, -2]], values: [new Float32Array(2)] }), /bad dimension -1/)
  })

  it('gives different hashes for the same values under different shapes', () => {
    const values = [new Float32Array([1, 2, 3, 4, 5, 6])]
    const a = hashTensorList({ shapes: [[2, 3]], values })
    const b = hashTensorList({ shapes: [[3, 2]], values })
    const c = hashTensorList({ shapes: [[6]], values })
    expect(new Set([a.hash, b.hash, c.hash]).size).toBe(3)
  })
})

describe('findNonFinite', () => {
  it('returns null when every value is finite', () => {
    expect(findNonFinite(fixedList())).toBeNull()
    expect(findNonFinite({ shapes: [], values: [] })).toBeNull()
  })

  it.each([NaN, Infinity, -Infinity])('finds %s and says where it is', (bad) => {
    const list = fixedList()
    list.values[1]![2] = bad
    const found = findNonFinite(list)
    expect(found).not.toBeNull()
    expect(found!.tensor).toBe(1)
    expect(found!.index).toBe(2)
    expect(Object.is(found!.value, bad)).toBe(true)
  })

  it('reports the first non-finite value in tensor order', () => {
    const list = fixedList()
    list.values[2]![0] = NaN
    list.values[0]![4] = Infinity
    list.values[0]![5] = NaN
    expect(findNonFinite(list)).toEqual({ tensor: 0, index: 4, value: Infinity })
  })
})

describe('shapes', () => {
  it('shapeSize multiplies dimensions; a scalar holds one value', () => {
    expect(shapeSize([2, 3, 4])).toBe(24)
    expect(shapeSize([])).toBe(1)
    expect(shapeSize([5, 0])).toBe(0)
  })

  it('sameShapes compares count, rank and every dimension', () => {
    expect(sameShapes([[2, 3], [3]], [[2, 3], [3]])).toBe(true)
    expect(sameShapes([], [])).toBe(true)
    expect(sameShapes([[2, 3]], [[2, 3], [3]])).toBe(false)
    expect(sameShapes([[2, 3]], [[3, 2]])).toBe(false)
    expect(sameShapes([[6]], [[6, 1]])).toBe(false)
    expect(sameShapes([[]], [[1]])).toBe(false)
  })
})
