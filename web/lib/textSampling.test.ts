import { describe, expect, it } from 'vitest'
import { encodeContext, oneHot, sampleIndex, UnknownCharacterError } from './textSampling.ts'

describe('text sampling', () => {
  it('encodes the last characters, padding short prompts on the left with a space', () => {
    expect([...encodeContext('abc', ' abc', 5)]).toEqual([0, 0, 1, 2, 3])
    expect([...encodeContext('cabca', ' abc', 3)]).toEqual([2, 3, 1])
  })

  it('refuses a character the model never saw, naming it', () => {
    expect(() => encodeContext('hi!', 'hi', 3)).toThrow(UnknownCharacterError)
    expect(() => encodeContext('hi!', 'hi', 3)).toThrow('"!" is not in the model\'s vocabulary')
  })

  it('expands ids to one-hot rows', () => {
    expect([...oneHot(Int32Array.from([2, 0]), 3)]).toEqual([0, 0, 1, 1, 0, 0])
  })

  it('samples in proportion to the softmax, greedily at temperature 0', () => {
    expect(sampleIndex([0.1, 3, 0.2], 0, Math.random)).toBe(1)
    // softmax([0, ln 3]) = [1/4, 3/4]
    expect(sampleIndex([0, Math.log(3)], 1, () => 0.2)).toBe(0)
    expect(sampleIndex([0, Math.log(3)], 1, () => 0.3)).toBe(1)
  })
})
