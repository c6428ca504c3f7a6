import { gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { IdxFormatError, encodeIdx, isGzip, labelledSetFromIdx, parseIdx, sliceIdx, type IdxArray } from './idx.ts'

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

  it('refuses data types other than uint8', () => {
    const bytes = encodeIdx(labels())
    bytes[2] = 0x0d // float32
    expectIdxError(bytes, /data type 0xd is not uint8/)
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
