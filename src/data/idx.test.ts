import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { DatasetError } from './datasetError.ts'
import { IdxFormatError, encodeIdx, validateIdxPair, isGzip, labelledSetFromIdx, parseIdx, sliceIdx, type IdxArray } from './idx.ts'

/** 5 images of 2x3 pixels, pixel value = 10 * row + position. */
function images(): IdxArray {
  const data = new Uint8Array(5 * 6)
  for (let r = 0; r < 5; r++) for (let j = 0; j < 6; j++) data[r * 6 + j] = 10 * r + j
  return { shape: [5, 2, 3], data }
}

function labels(): IdxArray {
  return { shape: [5], data: new Uint8Array([7, 2, 1, 0, 4]) }
}

function expectIdxError(bytes: Uint8Array, message: RegExp) {
  expect(() => parseIdx(bytes)).toThrow(IdxFormatError)
  expect(() => parseIdx(bytes)).toThrow(message)
}

describe('IDX files', () => {
  it('encodes the big-endian header of the format', () => {
    const bytes = encodeIdx(images())
    expect(Array.from(bytes.subarray(0, 16))).toEqual([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3])
    expect(bytes.byteLength).toBe(16 + 30)
    expect(Array.from(encodeIdx({ shape: [300], data: new Uint8Array(300) }).subarray(0, 8))).toEqual([0, 0, 8, 1, 0, 0, 1, 44])
  })

  it('round-trips parse(encode(x))', () => {
    for (const array of [images(), labels(), { shape: [0, 28, 28], data: new Uint8Array() }]) {
      const parsed = parseIdx(encodeIdx(array))
      expect(parsed.shape).toEqual(array.shape)
      expect(parsed.data).toEqual(array.data)
    }
  })

  it('parses from a view inside a larger buffer', () => {
    const bytes = encodeIdx(labels())
    const backing = new Uint8Array(bytes.byteLength + 3)
    backing.set(bytes, 1)
    const parsed = parseIdx(backing.subarray(1, 1 + bytes.byteLength))
    expect(parsed).toEqual({ shape: [5], data: labels().data })
  })

  it('slices rows along the first axis and the slice round-trips', () => {
    const slice = sliceIdx(images(), 1, 3)
    expect(slice.shape).toEqual([2, 2, 3])
    expect(Array.from(slice.data)).toEqual([10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24, 25])
    expect(parseIdx(encodeIdx(slice))).toEqual(slice)
    expect(sliceIdx(labels(), 4, 5)).toEqual({ shape: [1], data: new Uint8Array([4]) })
    expect(sliceIdx(images(), 2, 2).data.byteLength).toBe(0)
  })

  it('detects and refuses gzip-compressed input', () => {
    const gz = new Uint8Array(gzipSync(encodeIdx(images())))
    expect(isGzip(gz)).toBe(true)
    expect(isGzip(encodeIdx(images()))).toBe(false)
    expect(isGzip(new Uint8Array([0x1f]))).toBe(false)
    expectIdxError(gz, /gzip-compressed/)
  })

  it('refuses data types other than uint8 and float32', () => {
    const bytes = encodeIdx(labels())
    bytes[2] = 0x0c // int32
    expectIdxError(bytes, /data type 0xc is not uint8 \(0x08\) or float32 \(0x0d\)/)
  })

  it('round-trips float32 items, big-endian in the file', () => {
    const array = { shape: [2, 2], data: new Float32Array([1.5, -2, 0, 3.25e-3]) }
    const bytes = encodeIdx(array)
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0, 0, 0x0d, 2])
    expect(Array.from(bytes.subarray(12, 16))).toEqual([0x3f, 0xc0, 0, 0]) // 1.5 big-endian
    expect(parseIdx(bytes)).toEqual(array)
    expect(parseIdx(encodeIdx(sliceIdx(array, 1, 2)))).toEqual({ shape: [1, 2], data: new Float32Array([0, 3.25e-3]) })
    expectIdxError(bytes.subarray(0, bytes.byteLength - 2), /promises 16 bytes of data, file has 14/)
    const set = labelledSetFromIdx(array, { shape: [2], data: new Uint8Array([1, 0]) })
    expect(set.images).toBeInstanceOf(Float32Array)
    expect(() => labelledSetFromIdx(array, { shape: [2], data: new Float32Array(2) })).toThrow(/uint8 class ids/)
  })

  it('refuses a bad magic, a bad rank or a short header', () => {
    const bytes = encodeIdx(labels())
    bytes[0] = 1
    expectIdxError(bytes, /two zero bytes/)
    expectIdxError(new Uint8Array([0, 0, 8]), /shorter than its magic/)
    expectIdxError(new Uint8Array([0, 0, 8, 0]), /rank 0 is not between 1 and 4/)
    expectIdxError(new Uint8Array([0, 0, 8, 5, ...new Array(20).fill(0)]), /rank 5/)
    expectIdxError(new Uint8Array([0, 0, 8, 2, 0, 0, 0, 1]), /ends inside its header/)
  })

  it('refuses data shorter or longer than the header promises', () => {
    const bytes = encodeIdx(images())
    expectIdxError(bytes.subarray(0, bytes.byteLength - 1), /promises 30 bytes of data, file has 29/)
    const longer = new Uint8Array(bytes.byteLength + 1)
    longer.set(bytes)
    expectIdxError(longer, /promises 30 bytes of data, file has 31/)
  })

  it('builds a labelled set and checks that images and labels agree', () => {
    const set = labelledSetFromIdx(images(), labels())
    expect(set.count).toBe(5)
    expect(set.exampleSize).toBe(6)
    expect(set.images).toEqual(images().data)
    expect(Array.from(set.labels)).toEqual([7, 2, 1, 0, 4])
    expect(() => labelledSetFromIdx(images(), sliceIdx(labels(), 0, 4))).toThrow(/5 images but labels have shape \[4\]/)
    expect(() => labelledSetFromIdx(images(), { shape: [5, 1], data: new Uint8Array(5) })).toThrow(IdxFormatError)
  })
})

describe('validating an uploaded IDX pair', () => {
  const refusal = (run: () => unknown): DatasetError => {
    try {
      run()
    } catch (error) {
      expect(error).toBeInstanceOf(DatasetError)
      return error as DatasetError
    }
    throw new Error('accepted')
  }

  it('accepts a matching pair and returns the labelled set', () => {
    const set = validateIdxPair(encodeIdx(images()), encodeIdx(labels()), { classes: 10, exampleSize: 6 })
    expect(set.count).toBe(5)
  })

  it('names the file, the example and the class count in what it refuses', () => {
    const e1 = refusal(() => validateIdxPair(encodeIdx(images()), encodeIdx(labels()), { classes: 5 }))
    expect(e1.code).toBe('label_out_of_range')
    expect(e1.message).toBe('labels: example 0 has label 7, but the model has 5 classes (0 to 4)')
    const e2 = refusal(() => validateIdxPair(encodeIdx(images()), encodeIdx(sliceIdx(labels(), 0, 3)), { classes: 10 }))
    expect(e2.code).toBe('count_mismatch')
    expect(e2.message).toBe('images has 5 examples but labels has 3')
    const e3 = refusal(() => validateIdxPair(encodeIdx(images()), encodeIdx(labels()), { classes: 10, exampleSize: 784 }))
    expect(e3.code).toBe('bad_shape')
    expect(e3.message).toMatch(/images: each example has shape \[2,3\] \(6 values\), the model takes 784/)
    const e4 = refusal(() => validateIdxPair(encodeIdx(images()).subarray(0, 20), encodeIdx(labels()), { classes: 10 }))
    expect(e4.code).toBe('bad_idx')
    expect(e4.message).toMatch(/^images: IDX header promises/)
    const e5 = refusal(() => validateIdxPair(encodeIdx(images()), encodeIdx(labels()), { classes: 10, maxCount: 4 }))
    expect(e5.code).toBe('too_large')
  })
})
