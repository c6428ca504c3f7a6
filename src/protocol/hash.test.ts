import { describe, expect, it } from 'vitest'
import { sha256Hex, sha256HexPortable } from './hash.ts'

describe('sha256Hex', () => {
  it('gives the standard SHA-256 digests (pinned)', () => {
    expect(sha256Hex(new Uint8Array())).toBe('0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(sha256Hex(new TextEncoder().encode('abc'))).toBe('0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it("Node's native path and the browser's JS path agree on any bytes, including views into larger buffers", () => {
    const big = new Uint8Array(300_001).map((_, i) => (i * 2654435761) >>> 24)
    for (const bytes of [big, big.subarray(1, 70_000), big.subarray(12_345, 12_346), new Uint8Array(64)]) {
      expect(sha256Hex(bytes)).toBe(sha256HexPortable(bytes))
    }
  })
})
