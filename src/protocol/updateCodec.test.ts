import { describe, expect, it } from 'vitest'
import { sha256Hex } from './hash.ts'
import { encodeTensorList, shapeSize, type Shape, type TensorList } from './tensorBytes.ts'
import {
  ErrorFeedback,
  INT8_UPDATE_MAGIC,
  UpdateCodecError,
  decodeTopK,
  decodeUpdate,
  encodeTopK,
  encodeUpdate,
  encodedUpdateSize,
  type UpdateCodecErrorCode,
} from './updateCodec.ts'

const INT8_64 = { kind: 'int8', blockSize: 64 } as const
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

/** Deterministic pseudo-random floats (xorshift32), so pinned digests need no stored fixture. */
function noise(seed: number, n: number, amplitude: number): Float32Array {
  let s = seed >>> 0 || 1
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    out[i] = ((s / 0x1_0000_0000) * 2 - 1) * amplitude
  }
  return out
}

/**
 * A fixed update with what the format must get right: blocks that end mid-tensor, a block of zeros, a
 * scalar, an empty tensor, exact halves (ties to even) and values of very different magnitudes.
 */
function fixedUpdate(): TensorList {
  const matrix = noise(7, 3 * 70, 0.01)
  matrix.fill(0, 64, 128) // the whole second block
  matrix[130] = 32.5 * 0.0078125 // with the block's max set below (scale 2^-7): an exact half quantum
  matrix[131] = 127 * 0.0078125
  matrix[132] = -2.5 * 0.0078125
  return {
    shapes: [[3, 70], [5], [], [0]],
    values: [matrix, noise(11, 5, 3e-6), new Float32Array([-1.5]), new Float32Array(0)],
  }
}

/**
 * Pinned: SHA-256 of the int8 (blockSize 64) and top-k encodings of `fixedUpdate()`. With int8 the claim
 * signs exactly these bytes, so a silent change to the format or its rounding must fail here.
 */
const FIXED_INT8_SHA256 = '0x4df979230aed29c0778b6aa819ad45da8920c18d200503853fb425b27a7e7133'
const FIXED_TOPK_SHA256 = '0x41838cfd12fe5fad6e7bf365ae364bf8455618d80e46bea7b1c25bed675de9c4'

function expectCode(fn: () => unknown, code: UpdateCodecErrorCode) {
  let caught: unknown
  try {
    fn()
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(UpdateCodecError)
  expect((caught as UpdateCodecError).code).toBe(code)
}

/** Per block of `blockSize` values in each tensor: the block's scale, as the encoder computes it. */
function blockScales(list: TensorList, blockSize: number): number[][] {
  return list.values.map((v) => {
    const scales = new Array<number>(v.length)
    for (let from = 0; from < v.length; from += blockSize) {
      let max = 0
      for (let i = from; i < Math.min(v.length, from + blockSize); i++) max = Math.max(max, Math.abs(v[i]!))
      scales.fill(Math.fround(max / 127), from, Math.min(v.length, from + blockSize))
    }
    return scales
  })
}

describe('float32 updates (no compression)', () => {
  it('are the canonical tensor bytes, so every existing hash is unchanged', () => {
    const update = fixedUpdate()
    const bytes = encodeUpdate(undefined, update)
    expect(hex(bytes)).toBe(hex(encodeTensorList(update)))
    const decoded = decodeUpdate(undefined, bytes, update.shapes)
    expect(decoded.shapes).toEqual(update.shapes)
    decoded.values.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(update.values[i]!)))
  })

  it('refuses int8 bytes, truncation, padding and other shapes with typed codes', () => {
    const update = fixedUpdate()
    const bytes = encodeUpdate(undefined, update)
    expectCode(() => decodeUpdate(undefined, encodeUpdate(INT8_64, update)), 'wrong_format')
    expectCode(() => decodeUpdate(undefined, bytes.subarray(0, bytes.length - 4)), 'truncated')
    expectCode(() => decodeUpdate(undefined, bytes.subarray(0, 10)), 'truncated')
    expectCode(() => decodeUpdate(undefined, new Uint8Array([...bytes, 0, 0, 0, 0])), 'trailing_bytes')
    expectCode(() => decodeUpdate(undefined, bytes, [[3, 70], [5], [1], [0]]), 'shape_mismatch')
    expectCode(() => decodeUpdate(undefined, new Uint8Array(2)), 'wrong_format')
  })
})

describe('int8 updates', () => {
  it('encode the documented layout byte for byte', () => {
    const update: TensorList = {
      shapes: [[6], []],
      values: [new Float32Array([127, -2.5, 3.5, 0.4999, 0, 0]), new Float32Array([-254])],
    }
    const expected =
      '54545138' + // 'TTQ8'
      '04000000' + // blockSize 4
      '02000000' + // 2 tensors
      '01000000' + '06000000' + // rank 1: [6]
      '00000000' + // rank 0: []
      '0000803f' + '00000000' + '00000040' + // scales: 1 (127 / 127), 0 (a block of zeros), 2 (254 / 127)
      '7f' + 'fe' + '04' + '00' + // 127, -2.5 → -2 and 3.5 → 4 (ties to even), 0.4999 → 0
      '0000' + // the zero block
      '81' // -254 / 2 = -127
    const bytes = encodeUpdate({ kind: 'int8', blockSize: 4 }, update)
    expect(hex(bytes)).toBe(expected)
    expect(new DataView(bytes.buffer).getUint32(0, true)).toBe(INT8_UPDATE_MAGIC)
    expect(bytes.length).toBe(encodedUpdateSize({ kind: 'int8', blockSize: 4 }, update.shapes))
    const decoded = decodeUpdate({ kind: 'int8', blockSize: 4 }, bytes, update.shapes)
    expect(Array.from(decoded.values[0]!)).toEqual([127, -2, 4, 0, 0, 0])
    expect(Array.from(decoded.values[1]!)).toEqual([-254])
  })

  it('pins the SHA-256 of a fixed update', () => {
    const bytes = encodeUpdate(INT8_64, fixedUpdate())
    const third = decodeUpdate(INT8_64, bytes).values[0]!.subarray(128)
    expect([third[2]! / 0.0078125, third[3]! / 0.0078125, third[4]! / 0.0078125]).toEqual([32, 127, -2]) // ties to even
    expect(sha256Hex(bytes)).toBe(FIXED_INT8_SHA256)
    expect(bytes.length).toBe(encodedUpdateSize(INT8_64, fixedUpdate().shapes))
  })

  it('is deterministic: the same update gives the same bytes, from a copy or a view at an odd offset', () => {
    const a = encodeUpdate(INT8_64, fixedUpdate())
    const copy = fixedUpdate()
    copy.values = copy.values.map((v) => new Float32Array(v))
    expect(hex(encodeUpdate(INT8_64, copy))).toBe(hex(a))
    const shifted = new Uint8Array(a.length + 1)
    shifted.set(a, 1)
    const fromView = decodeUpdate(INT8_64, shifted.subarray(1))
    const direct = decodeUpdate(INT8_64, a)
    fromView.values.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(direct.values[i]!)))
    // Decoding then re-encoding is a fixed point: the quantized values are exactly representable.
    expect(hex(encodeUpdate(INT8_64, direct))).toBe(hex(a))
  })

  it('round-trips within half a quantum of each value, and zero blocks exactly', () => {
    for (const blockSize of [1, 7, 64, 256, 4096]) {
      const update: TensorList = { shapes: [[50, 41], [300]], values: [noise(blockSize, 2050, 0.05), noise(3, 300, 40)] }
      update.values[0]!.fill(0, 100, 400)
      const compression = { kind: 'int8', blockSize } as const
      const decoded = decodeUpdate(compression, encodeUpdate(compression, update), update.shapes)
      const scales = blockScales(update, blockSize)
      update.values.forEach((v, t) => {
        for (let i = 0; i < v.length; i++) {
          const d = decoded.values[t]![i]!
          // scale / 2 from rounding to a quantum, plus the float32 rounding of q · scale.
          expect(Math.abs(v[i]! - d)).toBeLessThanOrEqual(scales[t]![i]! / 2 + Math.abs(d) * 2 ** -24)
          if (v[i] === 0 && scales[t]![i] === 0) expect(d).toBe(0)
        }
      })
    }
  })

  it('is about four times smaller than float32', () => {
    const shapes: Shape[] = [[784, 64], [64], [64, 10], [10]]
    const float32 = encodedUpdateSize(undefined, shapes)
    const int8 = encodedUpdateSize({ kind: 'int8', blockSize: 256 }, shapes)
    expect(float32 / int8).toBeGreaterThan(3.9)
    expect(int8).toBe(52 + 4 * (196 + 1 + 3 + 1) + 50890)
  })

  it('refuses to encode non-finite values', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const update = fixedUpdate()
      update.values[1]![2] = bad
      expectCode(() => encodeUpdate(INT8_64, update), 'non_finite_input')
    }
    expectCode(() => encodeUpdate(INT8_64, { shapes: [[2]], values: [new Float32Array([3.4028234663852886e38, 1])] }), 'non_finite_input')
    expectCode(() => encodeUpdate(INT8_64, { shapes: [[3]], values: [new Float32Array(2)] }), 'shape_mismatch')
    expectCode(() => encodeUpdate({ kind: 'int8', blockSize: 0 }, fixedUpdate()), 'bad_options')
  })

  it('refuses malformed bytes with typed codes', () => {
    const update = fixedUpdate()
    const good = encodeUpdate(INT8_64, update)
    const header = 4 * (3 + 3 + 2 + 1 + 2)
    const tampered = (offset: number, write: (view: DataView) => void) => {
      const bytes = good.slice()
      write(new DataView(bytes.buffer, offset))
      return bytes
    }
    expectCode(() => decodeUpdate(INT8_64, encodeUpdate(undefined, update)), 'wrong_format')
    expectCode(() => decodeUpdate({ kind: 'int8', blockSize: 32 }, good), 'block_size_mismatch')
    expectCode(() => decodeUpdate(INT8_64, good.subarray(0, good.length - 1)), 'truncated')
    expectCode(() => decodeUpdate(INT8_64, good.subarray(0, 14)), 'truncated')
    expectCode(() => decodeUpdate(INT8_64, new Uint8Array([...good, 0])), 'trailing_bytes')
    expectCode(() => decodeUpdate(INT8_64, good, [[3, 70], [5], [], [1]]), 'shape_mismatch')
    expectCode(() => decodeUpdate(INT8_64, tampered(8, (v) => v.setUint32(0, 1 << 20, true))), 'bad_header')
    expectCode(() => decodeUpdate(INT8_64, tampered(header, (v) => v.setFloat32(0, NaN, true))), 'non_finite_scale')
    expectCode(() => decodeUpdate(INT8_64, tampered(header + 4, (v) => v.setFloat32(0, Infinity, true))), 'non_finite_scale')
    expectCode(() => decodeUpdate(INT8_64, tampered(header, (v) => v.setFloat32(0, -1e-3, true))), 'bad_scale')
    expectCode(() => decodeUpdate(INT8_64, tampered(header, (v) => v.setFloat32(0, 3e38, true))), 'bad_scale')
    // Block 1 of tensor 0 is all zeros (scale 0): a non-zero value there, or -128 anywhere, is not the encoder's.
    const blocks = 4 + 1 + 1 + 0
    expectCode(() => decodeUpdate(INT8_64, tampered(header + 4 * blocks + 70, (v) => v.setInt8(0, 5))), 'bad_value')
    expectCode(() => decodeUpdate(INT8_64, tampered(header + 4 * blocks + 3, (v) => v.setInt8(0, -128))), 'bad_value')
    // The untampered bytes still decode (the offsets above point where they should).
    expect(decodeUpdate(INT8_64, good, update.shapes).shapes).toEqual(update.shapes)
  })
})

describe('top-k with error feedback (benchmark codec)', () => {
  const TOPK = { density: 0.05, blockSize: 8 }

  it('sends the largest |x|, ties to the lower index, and pins the SHA-256 of a fixed update', () => {
    const update: TensorList = { shapes: [[2, 4], [4]], values: [new Float32Array([1, -5, 3, -3, 0, 0.5, 5, 2]), new Float32Array([-3, 4, 0, 1])] }
    const decoded = decodeTopK(encodeTopK(update, { density: 4 / 12, blockSize: 2 }), 2, update.shapes)
    // |5| at 1 and 6, |4| at 9, then |3| at 2, 3 and 8: index 2 wins the tie.
    expect(Array.from(decoded.values[0]!).map((x) => x !== 0)).toEqual([false, true, true, false, false, false, true, false])
    expect(Array.from(decoded.values[1]!).map((x) => x !== 0)).toEqual([false, true, false, false])
    expect(sha256Hex(encodeTopK(fixedUpdate(), TOPK))).toBe(FIXED_TOPK_SHA256)
  })

  it('round-trips the selected values within half a quantum, with multi-byte index gaps', () => {
    const update: TensorList = { shapes: [[100_000], [3]], values: [noise(5, 100_000, 1), new Float32Array([9, 0, -9])] }
    const bytes = encodeTopK(update, { density: 0.001, blockSize: 16 })
    const decoded = decodeTopK(bytes, 16, update.shapes)
    let sent = 0
    decoded.values.forEach((v, t) =>
      v.forEach((d, i) => {
        if (d === 0) return
        sent += 1
        expect(Math.abs(d - update.values[t]![i]!)).toBeLessThanOrEqual(9 / 127 / 2 + 1e-6)
      }),
    )
    expect(sent).toBe(Math.ceil(0.001 * 100_003))
    expect(bytes.length).toBeLessThan(0.001 * 100_003 * 3 + 100)
  })

  it('refuses malformed bytes', () => {
    const bytes = encodeTopK(fixedUpdate(), TOPK)
    expectCode(() => decodeTopK(bytes, 4), 'block_size_mismatch')
    expectCode(() => decodeTopK(bytes.subarray(0, bytes.length - 1), TOPK.blockSize), 'truncated')
    expectCode(() => decodeTopK(new Uint8Array([...bytes, 0]), TOPK.blockSize), 'trailing_bytes')
    expectCode(() => decodeTopK(encodeUpdate(INT8_64, fixedUpdate()), TOPK.blockSize), 'wrong_format')
    const last = bytes.slice()
    last[last.length - 1] = 0x7f // a gap past the end of the values
    expectCode(() => decodeTopK(last, TOPK.blockSize), 'bad_index')
    expectCode(() => encodeTopK(fixedUpdate(), { density: 0, blockSize: 8 }), 'bad_options')
  })

  it('keeps what it did not send, so the decoded sends track the sum of the updates', () => {
    const shapes: Shape[] = [[40, 25], [25]]
    const n = shapes.reduce((s, sh) => s + shapeSize(sh), 0)
    const feedback = new ErrorFeedback(shapes)
    const total = new Float64Array(n)
    const received = new Float64Array(n)
    let maxResidual = 0
    const steps = 200
    for (let step = 0; step < steps; step++) {
      // A persistent direction plus noise, like successive units' updates.
      const drift = noise(1, n, 1e-3)
      const update: TensorList = { shapes, values: [noise(100 + step, 1000, 1e-3), noise(1000 + step, 25, 1e-3)] }
      update.values[0]!.forEach((_, i, v) => (v[i] = v[i]! + drift[i]!))
      const { bytes, sent } = feedback.step(update, { density: 0.02, blockSize: 64 })
      expect(bytes.length).toBeLessThan(n)
      let at = 0
      update.values.forEach((v, t) =>
        v.forEach((x, i) => {
          total[at] = total[at]! + x
          received[at] = received[at]! + sent.values[t]![i]!
          at += 1
        }),
      )
      for (const r of feedback.residual.values) for (const x of r) maxResidual = Math.max(maxResidual, Math.abs(x))
    }
    // What the coordinator received plus what is still held is what was produced (up to float32 rounding),
    // and what is held stays bounded while the sum grows with every step.
    let at = 0
    let totalMax = 0
    for (const r of feedback.residual.values) {
      for (const x of r) {
        expect(Math.abs(total[at]! - received[at]! - x)).toBeLessThan(1e-5)
        totalMax = Math.max(totalMax, Math.abs(total[at]!))
        at += 1
      }
    }
    expect(totalMax).toBeGreaterThan(0.1)
    expect(maxResidual).toBeLessThan(totalMax / 4)
  })
})
