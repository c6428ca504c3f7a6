import {
  TensorBytesError,
  decodeTensorList,
  encodeTensorList,
  sameShapes,
  shapeSize,
  type Shape,
  type TensorList,
  TENSOR_BYTES_MAGIC,
} from './tensorBytes.ts'
import type { TrainingConfig } from './jobSpec.ts'

/**
 * How an update travels from a contributor to the coordinator: the bytes whose SHA-256 the claim signs.
 *
 * Absent compression: the canonical float32 tensor bytes of tensorBytes.ts ('TTW1'), unchanged.
 *
 * `int8` ('TTQ8'), all little-endian:
 *
 *   'TTQ8' | u32 blockSize | u32 tensorCount | per tensor: u32 rank, u32 dims[rank]
 *          | float32 scale per block, tensor after tensor | int8 q per value, tensor after tensor
 *
 * Each tensor is cut into blocks of `blockSize` values (the last may be shorter; a block never spans two
 * tensors). scale = fround(max|x| / 127), q = x / scale rounded half to even and clamped to [-127, 127],
 * and a value decodes to fround(q · scale). Every step is one IEEE float64 operation on float32 inputs
 * followed by a float32 rounding, so every JS engine yields the same bytes, and a check that re-executes a
 * unit from its input checkpoint and example indices reproduces them bit for bit.
 *
 * Top-k (`encodeTopK`, 'TTK1') is deliberately not a job option. It is useful only with error feedback,
 * and error feedback makes the bytes sent depend on the contributor's private residual (everything it
 * did not send in earlier units), which a checker re-executing the unit from its input checkpoint and
 * example indices cannot know: verification would break. int8 has no state, so it can be a job option;
 * top-k stays here for the communication benchmark.
 */
export const INT8_UPDATE_MAGIC = 0x38515454 // 'TTQ8' read as a little-endian u32
export const TOPK_UPDATE_MAGIC = 0x314b5454 // 'TTK1' read as a little-endian u32

export type UpdateCompression = TrainingConfig['compression']

export type UpdateCodecErrorCode =
  /** The bytes end before the header or the body it promises. */
  | 'truncated'
  /** Bytes follow the body the header promises. */
  | 'trailing_bytes'
  /** Another encoding's tag (float32 bytes where int8 is expected, or the reverse), or none. */
  | 'wrong_format'
  /** An implausible tensor count, rank or dimension. */
  | 'bad_header'
  /** int8 or top-k bytes cut into blocks of another size than the job's. */
  | 'block_size_mismatch'
  /** The tensors' shapes are not the model's. */
  | 'shape_mismatch'
  /** A block scale is NaN or infinite. */
  | 'non_finite_scale'
  /** A block scale is negative (or -0), or so large that 127 · scale overflows float32. */
  | 'bad_scale'
  /** A quantized value the encoder never writes: -128, or non-zero in a block whose scale is 0. */
  | 'bad_value'
  /** Top-k indices out of range, not increasing, or not minimally encoded. */
  | 'bad_index'
  /** The encoder was given a NaN or infinite value (or one too large to quantize). */
  | 'non_finite_input'
  /** Encoder options out of range. */
  | 'bad_options'

export class UpdateCodecError extends Error {
  override name = 'UpdateCodecError'
  constructor(
    readonly code: UpdateCodecErrorCode,
    message: string,
  ) {
    super(message)
  }
}

const FLOAT32_MAX = 3.4028234663852886e38
/** The smallest positive float32 (a subnormal): the scale of a non-zero block whose max|x| / 127 underflows. */
const FLOAT32_MIN_SUBNORMAL = 1.401298464324817e-45
/** The largest float32 scale s with fround(127 · s) finite: every value an accepted block decodes to is finite. */
const MAX_SCALE = (() => {
  const bits = new Uint32Array(1)
  const scale = new Float32Array(bits.buffer)
  const finite = () => Number.isFinite(Math.fround(127 * scale[0]!))
  scale[0] = FLOAT32_MAX / 127
  while (!finite()) bits[0] = bits[0]! - 1
  while (finite()) bits[0] = bits[0]! + 1
  bits[0] = bits[0]! - 1
  return scale[0]!
})()
const MAX_TENSORS = 4096
const MAX_RANK = 8
const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

function checkBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 1 || blockSize > 1 << 16) {
    throw new UpdateCodecError('bad_options', `blockSize must be an integer in [1, 65536], got ${blockSize}`)
  }
}

function checkList(list: TensorList): void {
  if (list.shapes.length !== list.values.length) {
    throw new UpdateCodecError('shape_mismatch', `${list.shapes.length} shapes but ${list.values.length} value arrays`)
  }
  list.shapes.forEach((shape, i) => {
    if (shape.some((d) => !Number.isInteger(d) || d < 0 || d > 0xffff_ffff)) {
      throw new UpdateCodecError('bad_header', `tensor ${i}: bad shape [${shape.join(',')}]`)
    }
    if (shapeSize(shape) !== list.values[i]!.length) {
      throw new UpdateCodecError('shape_mismatch', `tensor ${i}: shape [${shape.join(',')}] holds ${shapeSize(shape)} values, got ${list.values[i]!.length}`)
    }
  })
}

function headerBytes(shapes: readonly Shape[], extraWords: number): number {
  return 4 * (extraWords + 2 + shapes.reduce((n, s) => n + 1 + s.length, 0))
}

/** Writes 'magic | u32 blockSize | u32 count | shapes' and returns the offset after it. */
function writeHeader(view: DataView, magic: number, blockSize: number, shapes: readonly Shape[]): number {
  let offset = 0
  const u32 = (x: number) => {
    view.setUint32(offset, x, true)
    offset += 4
  }
  u32(magic)
  u32(blockSize)
  u32(shapes.length)
  for (const shape of shapes) {
    u32(shape.length)
    for (const d of shape) u32(d)
  }
  return offset
}

const FORMAT_NAMES: Record<number, string> = {
  [TENSOR_BYTES_MAGIC]: "float32 ('TTW1')",
  [INT8_UPDATE_MAGIC]: "int8 ('TTQ8')",
  [TOPK_UPDATE_MAGIC]: "top-k ('TTK1')",
}

function formatName(bytes: Uint8Array): string {
  if (bytes.byteLength < 4) return 'fewer than 4 bytes'
  const magic = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true)
  return FORMAT_NAMES[magic] ?? `an unknown tag 0x${magic.toString(16).padStart(8, '0')}`
}

/** Reads 'magic | u32 blockSize | u32 count | shapes'; every read is bounds-checked. */
function readHeader(bytes: Uint8Array, magic: number, blockSize: number, expectedShapes: readonly Shape[] | undefined) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = 0
  const u32 = () => {
    if (offset + 4 > bytes.byteLength) throw new UpdateCodecError('truncated', `update bytes end inside the header (${bytes.byteLength} bytes)`)
    const x = view.getUint32(offset, true)
    offset += 4
    return x
  }
  if (bytes.byteLength < 4 || view.getUint32(0, true) !== magic) {
    throw new UpdateCodecError('wrong_format', `expected ${FORMAT_NAMES[magic]} update bytes, got ${formatName(bytes)}`)
  }
  offset = 4
  const actualBlockSize = u32()
  if (actualBlockSize !== blockSize) {
    throw new UpdateCodecError('block_size_mismatch', `update bytes use blocks of ${actualBlockSize} values, the job says ${blockSize}`)
  }
  const shapes = readShapes(u32, expectedShapes)
  return { view, offset, shapes }
}

function checkLength(actual: number, expected: number, what: string): void {
  if (actual < expected) throw new UpdateCodecError('truncated', `${what}: the header promises ${expected} bytes, ${actual} arrived`)
  if (actual > expected) throw new UpdateCodecError('trailing_bytes', `${what}: the header promises ${expected} bytes, ${actual} arrived`)
}

function readScales(bytes: Uint8Array, view: DataView, offset: number, count: number): Float32Array {
  const scales = new Float32Array(count)
  if (littleEndianHost && (bytes.byteOffset + offset) % 4 === 0) scales.set(new Float32Array(bytes.buffer, bytes.byteOffset + offset, count))
  else for (let b = 0; b < count; b++) scales[b] = view.getFloat32(offset + 4 * b, true)
  return scales
}

/**
 * Quantizes `values[from, to)` into `q[qAt…]` with one scale; returns the scale. The same arithmetic for
 * int8 blocks and for top-k's blocks of selected values. (Plain loops: this runs for every value sent.)
 */
function quantizeBlock(values: Float32Array, from: number, to: number, q: Int8Array, qAt: number, where: () => string): number {
  let max = 0
  for (let i = from; i < to; i++) {
    const a = Math.abs(values[i]!)
    if (!(a <= FLOAT32_MAX)) throw new UpdateCodecError('non_finite_input', `${where()}: value ${values[i]} at ${i} cannot be quantized`)
    if (a > max) max = a
  }
  if (max === 0) return 0
  let scale = Math.fround(max / 127)
  // Below 127 · 2^-150 the scale underflows; the smallest subnormal then represents the block exactly.
  if (scale === 0) scale = FLOAT32_MIN_SUBNORMAL
  if (scale > MAX_SCALE) throw new UpdateCodecError('non_finite_input', `${where()}: max |value| ${max} is too large to quantize`)
  for (let i = from, j = qAt; i < to; i++, j++) {
    const v = values[i]! / scale
    // Round half to even (the IEEE default); Math.round rounds halves towards +∞.
    let r = Math.round(v)
    if (r - v === 0.5 && (r & 1) !== 0) r -= 1
    q[j] = r > 127 ? 127 : r < -127 ? -127 : r
  }
  return scale
}

/**
 * Writes fround(q · scale) for `q[from, to)` into `out[outAt…]` after checking the block is one the encoder
 * could have written: a finite, non-negative scale no larger than MAX_SCALE, no -128, and only zeros under
 * a zero scale. q · scale is exact in float64 (8 × 24 significant bits); the Float32Array store rounds it
 * once.
 */
function dequantizeBlock(scale: number, q: Int8Array, from: number, to: number, out: Float32Array, outAt: number, where: () => string): void {
  if (!(scale >= 0 && scale <= MAX_SCALE) || (scale === 0 && 1 / scale < 0)) {
    if (!Number.isFinite(scale)) throw new UpdateCodecError('non_finite_scale', `${where()}: scale ${scale}`)
    if (scale <= 0) throw new UpdateCodecError('bad_scale', `${where()}: negative scale ${scale}`)
    throw new UpdateCodecError('bad_scale', `${where()}: scale ${scale} overflows float32 once multiplied by 127`)
  }
  if (scale === 0) {
    for (let i = from; i < to; i++) {
      if (q[i] !== 0) throw new UpdateCodecError('bad_value', `${where()}: non-zero value ${q[i]} in a block of scale 0`)
    }
    return
  }
  for (let i = from, j = outAt; i < to; i++, j++) {
    const v = q[i]!
    if (v === -128) throw new UpdateCodecError('bad_value', `${where()}: quantized value -128 (the encoder clamps to ±127)`)
    out[j] = v * scale
  }
}

function encodeInt8(blockSize: number, update: TensorList): Uint8Array {
  checkBlockSize(blockSize)
  checkList(update)
  const blocks = update.values.reduce((n, v) => n + Math.ceil(v.length / blockSize), 0)
  const n = update.values.reduce((s, v) => s + v.length, 0)
  const header = headerBytes(update.shapes, 1)
  const bytes = new Uint8Array(header + 4 * blocks + n)
  const view = new DataView(bytes.buffer)
  writeHeader(view, INT8_UPDATE_MAGIC, blockSize, update.shapes)
  const q = new Int8Array(bytes.buffer, header + 4 * blocks, n)
  let block = 0
  let at = 0
  for (let t = 0; t < update.values.length; t++) {
    const values = update.values[t]!
    for (let from = 0; from < values.length; from += blockSize) {
      const to = Math.min(values.length, from + blockSize)
      const scale = quantizeBlock(values, from, to, q, at, () => `tensor ${t}`)
      view.setFloat32(header + 4 * block++, scale, true)
      at += to - from
    }
  }
  return bytes
}

function decodeInt8(blockSize: number, bytes: Uint8Array, expectedShapes?: readonly Shape[]): TensorList {
  checkBlockSize(blockSize)
  const { view, offset, shapes } = readHeader(bytes, INT8_UPDATE_MAGIC, blockSize, expectedShapes)
  const sizes = shapes.map(shapeSize)
  const blocks = sizes.reduce((n, s) => n + Math.ceil(s / blockSize), 0)
  const n = sizes.reduce((a, b) => a + b, 0)
  checkLength(bytes.byteLength, offset + 4 * blocks + n, 'int8 update')
  const scales = readScales(bytes, view, offset, blocks)
  const q = new Int8Array(bytes.buffer, bytes.byteOffset + offset + 4 * blocks, n)
  const data = new Float32Array(n)
  let block = 0
  let at = 0
  for (let t = 0; t < sizes.length; t++) {
    const end = at + sizes[t]!
    while (at < end) {
      const to = Math.min(end, at + blockSize)
      const b = block++
      dequantizeBlock(scales[b]!, q, at, to, data, at, () => `tensor ${t} block ${b}`)
      at = to
    }
  }
  return { shapes, values: splitValues(data, sizes) }
}

function splitValues(data: Float32Array, sizes: number[]): Float32Array[] {
  const values: Float32Array[] = []
  let start = 0
  for (const size of sizes) {
    values.push(data.subarray(start, start + size))
    start += size
  }
  return values
}

/**
 * The bytes a contributor sends for `update` under the job's compression; the claim's outputHash is
 * their SHA-256. Absent compression: canonical float32 tensor bytes (NaN passes through, as it always did,
 * for the coordinator to refuse as non-finite). int8: refuses NaN and infinities (UpdateCodecError
 * 'non_finite_input'), which have no quantized form.
 */
export function encodeUpdate(compression: UpdateCompression, update: TensorList): Uint8Array {
  if (!compression) {
    try {
      return encodeTensorList(update)
    } catch (error) {
      if (error instanceof TensorBytesError) throw new UpdateCodecError('shape_mismatch', error.message)
      throw error
    }
  }
  return encodeInt8(compression.blockSize, update)
}

/**
 * Parses update bytes sent under the job's compression, refusing (UpdateCodecError with a stable code)
 * anything its encoder could not have written: another format, a different block size, truncated or
 * padded bytes, shapes other than `expectedShapes` (when given), and for int8 non-finite or negative
 * scales and out-of-range values. int8 decodes only to finite values; float32 values are returned as
 * they are (check them with findNonFinite).
 */
export function decodeUpdate(compression: UpdateCompression, bytes: Uint8Array, expectedShapes?: readonly Shape[]): TensorList {
  if (compression) return decodeInt8(compression.blockSize, bytes, expectedShapes)
  // Parse the header here for typed codes, then let tensorBytes.ts (the one float32 parser) read the body.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.byteLength < 4 || view.getUint32(0, true) !== TENSOR_BYTES_MAGIC) {
    throw new UpdateCodecError('wrong_format', `expected ${FORMAT_NAMES[TENSOR_BYTES_MAGIC]} update bytes, got ${formatName(bytes)}`)
  }
  let offset = 4
  const u32 = () => {
    if (offset + 4 > bytes.byteLength) throw new UpdateCodecError('truncated', `update bytes end inside the header (${bytes.byteLength} bytes)`)
    const x = view.getUint32(offset, true)
    offset += 4
    return x
  }
  const shapes = readShapes(u32, expectedShapes)
  checkLength(bytes.byteLength, offset + 4 * shapes.reduce((n, s) => n + shapeSize(s), 0), 'float32 update')
  try {
    return decodeTensorList(bytes)
  } catch (error) {
    if (error instanceof TensorBytesError) throw new UpdateCodecError('bad_header', error.message)
    throw error
  }
}

/**
 * The exact size in bytes of an update of these shapes under `compression`. int8 is smaller than float32
 * whenever 4 + 4 · blocks ≤ 3 · values, which holds for any model whose tensors are not nearly all tiny.
 */
export function encodedUpdateSize(compression: UpdateCompression, shapes: readonly Shape[]): number {
  const sizes = shapes.map(shapeSize)
  const n = sizes.reduce((a, b) => a + b, 0)
  if (!compression) return headerBytes(shapes, 0) + 4 * n
  const blocks = sizes.reduce((b, s) => b + Math.ceil(s / compression.blockSize), 0)
  return headerBytes(shapes, 1) + 4 * blocks + n
}

// ---------------------------------------------------------------------------------------------------------
// Top-k with error feedback: benchmark only (see the comment at the top for why it is not a job option).
//
//   'TTK1' | u32 blockSize | u32 tensorCount | shapes | u32 k | float32 scale per block of k
//          | int8 q[k] | k LEB128 varints: gaps between selected flat indices
//
// The flat index runs over the tensors concatenated. The k selected entries are the largest |x| (ties to
// the lower index), written in increasing index order; gap i is index_i − index_{i−1} − 1 (index_{−1} =
// −1), so adjacent entries cost one zero byte. Values are quantized exactly like int8 blocks, in blocks of
// `blockSize` consecutive selected entries.
// ---------------------------------------------------------------------------------------------------------

export interface TopKOptions {
  /** Fraction of the values sent, in (0, 1]: k = ceil(density · n), at least 1 when n > 0. */
  density: number
  /** Selected values per int8 scale. */
  blockSize: number
}

function flatten(list: TensorList): Float32Array {
  const n = list.values.reduce((s, v) => s + v.length, 0)
  const flat = new Float32Array(n)
  let at = 0
  for (const v of list.values) {
    flat.set(v, at)
    at += v.length
  }
  return flat
}

/**
 * The k flat indices of largest |x|, ties to the lower index, in increasing order. The k-th largest |x| is
 * found by a numeric sort of the magnitudes; then every index above it is taken, and as many of those equal
 * to it as fit, lowest first: the same set as sorting (|x| descending, index ascending), with no comparator.
 */
function selectTopK(flat: Float32Array, k: number): Uint32Array {
  const out = new Uint32Array(k)
  const n = flat.length
  if (k === 0) return out
  const magnitudes = new Float32Array(n)
  for (let i = 0; i < n; i++) magnitudes[i] = Math.abs(flat[i]!)
  magnitudes.sort()
  const threshold = magnitudes[n - k]!
  let ties = k
  for (let i = 0; i < n; i++) if (Math.abs(flat[i]!) > threshold) ties--
  for (let i = 0, j = 0; i < n; i++) {
    const a = Math.abs(flat[i]!)
    if (a > threshold || (a === threshold && ties-- > 0)) out[j++] = i
  }
  return out
}

export function encodeTopK(update: TensorList, options: TopKOptions): Uint8Array {
  checkBlockSize(options.blockSize)
  if (!(options.density > 0 && options.density <= 1)) throw new UpdateCodecError('bad_options', `density must be in (0, 1], got ${options.density}`)
  checkList(update)
  const flat = flatten(update)
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isFinite(flat[i]!)) throw new UpdateCodecError('non_finite_input', `value ${flat[i]} at flat index ${i}`)
  }
  const n = flat.length
  const k = n === 0 ? 0 : Math.min(n, Math.max(1, Math.ceil(options.density * n)))
  const indices = selectTopK(flat, k)
  const selected = new Float32Array(k)
  for (let j = 0; j < k; j++) selected[j] = flat[indices[j]!]!

  const blocks = Math.ceil(k / options.blockSize)
  const varints: number[] = []
  let previous = -1
  for (const index of indices) {
    let gap = index - previous - 1
    previous = index
    while (gap >= 0x80) {
      varints.push((gap & 0x7f) | 0x80)
      gap >>>= 7
    }
    varints.push(gap)
  }
  const header = headerBytes(update.shapes, 2)
  const bytes = new Uint8Array(header + 4 * blocks + k + varints.length)
  const view = new DataView(bytes.buffer)
  view.setUint32(writeHeader(view, TOPK_UPDATE_MAGIC, options.blockSize, update.shapes), k, true)
  const q = new Int8Array(bytes.buffer, header + 4 * blocks, k)
  for (let b = 0, from = 0; from < k; b++, from += options.blockSize) {
    const to = Math.min(k, from + options.blockSize)
    view.setFloat32(header + 4 * b, quantizeBlock(selected, from, to, q, from, () => `top-k block ${b}`), true)
  }
  bytes.set(varints, header + 4 * blocks + k)
  return bytes
}

/** The dense update a top-k encoding stands for (zeros where nothing was sent). */
export function decodeTopK(bytes: Uint8Array, blockSize: number, expectedShapes?: readonly Shape[]): TensorList {
  checkBlockSize(blockSize)
  const header = readHeader(bytes, TOPK_UPDATE_MAGIC, blockSize, expectedShapes)
  const { view, shapes } = header
  const sizes = shapes.map(shapeSize)
  const n = sizes.reduce((a, b) => a + b, 0)
  if (header.offset + 4 > bytes.byteLength) throw new UpdateCodecError('truncated', 'top-k update ends before its count')
  const k = view.getUint32(header.offset, true)
  const offset = header.offset + 4
  if (k > n) throw new UpdateCodecError('bad_header', `top-k of ${k} values from ${n}`)
  const blocks = Math.ceil(k / blockSize)
  // The gaps take at least one byte each.
  if (bytes.byteLength < offset + 4 * blocks + 2 * k) throw new UpdateCodecError('truncated', `top-k of ${k} values needs at least ${offset + 4 * blocks + 2 * k} bytes, ${bytes.byteLength} arrived`)
  const scales = readScales(bytes, view, offset, blocks)
  const q = new Int8Array(bytes.buffer, bytes.byteOffset + offset + 4 * blocks, k)
  const selected = new Float32Array(k)
  for (let b = 0, from = 0; from < k; b++, from += blockSize) {
    dequantizeBlock(scales[b]!, q, from, Math.min(k, from + blockSize), selected, from, () => `top-k block ${b}`)
  }
  const data = new Float32Array(n)
  let at = offset + 4 * blocks + k
  let previous = -1
  for (let j = 0; j < k; j++) {
    let gap = 0
    for (let shift = 0; ; shift += 7) {
      if (at >= bytes.byteLength) throw new UpdateCodecError('truncated', `top-k index ${j} ends past the bytes`)
      const byte = bytes[at++]!
      if (shift === 28 && byte > 0x0f) throw new UpdateCodecError('bad_index', `top-k index ${j}: varint exceeds 32 bits`)
      gap += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) {
        if (byte === 0 && shift > 0) throw new UpdateCodecError('bad_index', `top-k index ${j}: varint not minimally encoded`)
        break
      }
    }
    const index = previous + 1 + gap
    if (index >= n) throw new UpdateCodecError('bad_index', `top-k index ${index} past the ${n} values`)
    previous = index
    data[index] = selected[j]!
  }
  if (at !== bytes.byteLength) throw new UpdateCodecError('trailing_bytes', `${bytes.byteLength - at} bytes follow the last top-k index`)
  return { shapes, values: splitValues(data, sizes) }
}

/**
 * The contributor's side of top-k with error feedback: what was not sent is kept and added to the next
 * update, so over many units everything is sent eventually and the sum of what the coordinator decodes
 * tracks the sum of the true updates (they differ by exactly the residual still held).
 */
export class ErrorFeedback {
  readonly residual: TensorList

  constructor(shapes: readonly Shape[]) {
    this.residual = { shapes: shapes.map((s) => [...s]), values: shapes.map((s) => new Float32Array(shapeSize(s))) }
  }

  /** residual += update; send topk(residual); residual −= decode(sent). Returns the bytes to send and their decoding. */
  step(update: TensorList, options: TopKOptions): { bytes: Uint8Array; sent: TensorList } {
    checkList(update)
    if (!sameShapes(update.shapes, this.residual.shapes)) {
      throw new UpdateCodecError('shape_mismatch', `update shapes ${JSON.stringify(update.shapes)} differ from the residual's ${JSON.stringify(this.residual.shapes)}`)
    }
    this.residual.values.forEach((r, t) => {
      const u = update.values[t]!
      for (let i = 0; i < r.length; i++) r[i] = r[i]! + u[i]!
    })
    const bytes = encodeTopK(this.residual, options)
    const sent = decodeTopK(bytes, options.blockSize, this.residual.shapes)
    this.residual.values.forEach((r, t) => {
      const s = sent.values[t]!
      for (let i = 0; i < r.length; i++) r[i] = r[i]! - s[i]!
    })
    return { bytes, sent }
  }
}

/** The tensor count and shapes of a header, read with `u32`; refused when implausible or not the model's. */
function readShapes(u32: () => number, expectedShapes: readonly (readonly number[])[] | undefined): number[][] {
  const count = u32()
  if (count > MAX_TENSORS) throw new UpdateCodecError('bad_header', `implausible tensor count ${count}`)
  const shapes: number[][] = []
  for (let i = 0; i < count; i++) {
    const rank = u32()
    if (rank > MAX_RANK) throw new UpdateCodecError('bad_header', `tensor ${i}: implausible rank ${rank}`)
    const shape: number[] = []
    for (let d = 0; d < rank; d++) shape.push(u32())
    shapes.push(shape)
  }
  if (expectedShapes && !sameShapes(shapes, expectedShapes)) {
    throw new UpdateCodecError('shape_mismatch', `update shapes ${JSON.stringify(shapes)} differ from the model's ${JSON.stringify(expectedShapes)}`)
  }
  return shapes
}
