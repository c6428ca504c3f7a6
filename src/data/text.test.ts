import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DatasetError } from './datasetError.ts'
import { encodeIdx } from './idx.ts'
import { textToDataset } from './text.ts'

describe('text to next-character windows', () => {
  it('builds a sorted vocabulary and windows labelled with the next character', () => {
    const text = 'abcabcabcabcabcabcabcabcabcabcabcabcabcabc' // 42 characters: 37 train, 5 held out
    const set = textToDataset(text, { contextLength: 3 })
    expect(set.vocabulary).toBe('abc')
    expect(set.inputEncoding).toEqual({ kind: 'one-hot', depth: 3 })
    expect(set.itemShape).toEqual([3])
    expect(set.train.images.shape).toEqual([34, 3])
    expect(Array.from(set.train.images.data.subarray(0, 6))).toEqual([0, 1, 2, 1, 2, 0])
    expect(Array.from(set.train.labels.data.subarray(0, 2))).toEqual([0, 1])
    // Held-out windows start in the last 10%: at character 37 ('b'), the window 'bca' is followed by 'b'.
    expect(set.heldOut.images.shape).toEqual([2, 3])
    expect(Array.from(set.heldOut.images.data.subarray(0, 3))).toEqual([1, 2, 0])
    expect(set.heldOut.labels.data[0]).toBe(1)
  })

  it('subsamples evenly spaced windows to the limits, the same every time', () => {
    const text = readFileSync(new URL('../../datasets/tinyshakespeare/input.txt', import.meta.url))
    const set = textToDataset(text, { contextLength: 24 })
    expect(set.classes).toBe(65)
    expect(set.train.images.shape).toEqual([100_000, 24])
    expect(set.heldOut.images.shape).toEqual([2_000, 24])
    expect(encodeIdx(set.train.images).byteLength).toBeLessThan(3_000_000)
    const again = textToDataset(text, { contextLength: 24 })
    expect(Buffer.compare(again.train.images.data as Uint8Array, set.train.images.data as Uint8Array)).toBe(0)
  })

  it('refuses more than 256 characters, a text too short for its windows, and bad UTF-8', () => {
    const wide = Array.from({ length: 300 }, (_, i) => String.fromCodePoint(0x4e00 + i)).join('')
    const refuse = (run: () => unknown) => {
      try {
        run()
      } catch (error) {
        expect(error).toBeInstanceOf(DatasetError)
        return error as DatasetError
      }
      throw new Error('accepted')
    }
    expect(refuse(() => textToDataset(wide, { contextLength: 8, fileName: 'poem.txt' })).message).toBe(
      'poem.txt: 300 distinct characters; at most 256 (one byte per character id)',
    )
    expect(refuse(() => textToDataset('hello world', { contextLength: 8 })).code).toBe('text_too_short')
    expect(refuse(() => textToDataset(new Uint8Array([0xc3]), { contextLength: 8 })).code).toBe('not_utf8')
  })
})
