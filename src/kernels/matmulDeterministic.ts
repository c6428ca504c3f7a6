/**
 * Deterministic batched matmul: C[b] = op(A[b]) @ op(B[b]) (+ bias, then relu), op = optional transpose.
 *
 * Determinism argument: every output element is accumulated by ONE invocation, in registers, as
 * `acc = acc + a[k] * b[k]` for k = 0, 1, ..., K-1 in that order, starting from 0. No other invocation
 * touches that sum (no split-K, no atomics, no subgroup or workgroup reduction), and the k-order does not
 * depend on the tile sizes, the grid, the adapter or the vendor. Workgroup memory only stages operands.
 * What the WGSL spec still leaves to the implementation is whether `acc + a * b` is contracted into one
 * fused multiply-add and how subnormals are treated; both are fixed per implementation, so the result is
 * bitwise reproducible on one implementation (driver + compiler). Across implementations use the exact
 * kernel (matmulExact).
 */
import {
  checkDispatch,
  MAX_WORKGROUPS_PER_DIMENSION,
  readBuffer,
  runProgram,
  storageBuffer,
  uniformBuffer,
  type KernelProgram,
  type Vec3,
} from './program.ts'

export type MatMulActivation = 'linear' | 'relu'

export interface MatMulVariant {
  transposeA: boolean
  transposeB: boolean
  /** Adds bias[n] to every output of column n (tfjs `_FusedMatMul`'s bias, rank 1 of length N). */
  bias: boolean
  activation: MatMulActivation
}

export interface MatMulDims {
  /** Batch of the output: max of the operands' batches, each 1 or equal to it. */
  batch: number
  batchA: number
  batchB: number
  m: number
  n: number
  k: number
}

/**
 * 64 invocations (8 x 8): a multiple of every SIMD width in use (4 on SwiftShader, 8-32 on Intel, 32 on
 * NVIDIA and Apple, 64 on AMD wave64) and a quarter of WebGPU's guaranteed 256 invocations per workgroup,
 * so it never needs a limit check.
 */
export const THREADS_X = 8
export const THREADS_Y = 8
/**
 * Each invocation owns a 4 x 4 block of outputs (rows ty + 8i, columns tx + 8j, strided so that
 * neighbouring invocations read neighbouring workgroup-memory words): 16 multiply-adds per 8 staged
 * loads. A 32 x 32 output tile per workgroup.
 */
export const PER_THREAD = 4
export const TILE_M = THREADS_Y * PER_THREAD
export const TILE_N = THREADS_X * PER_THREAD
/**
 * K staged per pass: 32 x 32 floats of A and of B are 8 KiB of workgroup memory, half of WebGPU's
 * guaranteed 16 KiB. It only changes how operands are staged, never the order of the sum.
 */
export const TILE_K = 32

/** Bumped whenever the WGSL changes in a way that may change results: it is part of every cache key. */
export const MATMUL_DETERMINISTIC_VERSION = 1

export class MatMulShapeError extends Error {
  override name = 'MatMulShapeError'
}

export function variantKey(v: MatMulVariant): string {
  return `matmulDeterministic/v${MATMUL_DETERMINISTIC_VERSION}/tA${Number(v.transposeA)}tB${Number(v.transposeB)}/bias${Number(v.bias)}/${v.activation}`
}

/**
 * Fields the kernel reads from `uniforms`. They are i32 because tfjs-backend-webgpu packs its
 * program-defined uniforms as int32; in the standalone module they are the whole `Uniforms` struct.
 */
export const MATMUL_UNIFORM_FIELDS = ['dimM', 'dimN', 'dimK', 'batchStrideA', 'batchStrideB'] as const

export function matmulUniformValues(d: MatMulDims): number[] {
  // A batch of 1 broadcasts: stride 0 reads the same matrix for every output batch.
  return [d.m, d.n, d.k, d.batchA === 1 ? 0 : d.m * d.k, d.batchB === 1 ? 0 : d.k * d.n]
}

/**
 * The kernel's WGSL, without bindings or entry point. It expects what tfjs-backend-webgpu's shader
 * preamble declares: storage arrays `result` (read_write), `A`, `B` and (with bias) `bias`; `uniforms`
 * with the fields above; private `localId` and `workgroupId` set by the entry point; and it defines
 * `fn main()`. The standalone module (below) declares the same, so both paths compile this exact text.
 */
export function matmulCoreWgsl(v: MatMulVariant): string {
  // Element (row, k) of op(A) and (k, col) of op(B), in the untransposed operands' row-major layout.
  const aIndex = v.transposeA ? 'base + k * uniforms.dimM + row' : 'base + row * uniforms.dimK + k'
  const bIndex = v.transposeB ? 'base + col * uniforms.dimK + k' : 'base + k * uniforms.dimN + col'
  return /* wgsl */ `
const DMM_TX = ${THREADS_X};
const DMM_TY = ${THREADS_Y};
const DMM_TILE_M = ${TILE_M};
const DMM_TILE_N = ${TILE_N};
const DMM_TILE_K = ${TILE_K};

var<workgroup> dmmTileA : array<array<f32, DMM_TILE_K>, DMM_TILE_M>;
var<workgroup> dmmTileB : array<array<f32, DMM_TILE_N>, DMM_TILE_K>;

fn dmmReadA(base : i32, row : i32, k : i32) -> f32 {
  if (row < uniforms.dimM && k < uniforms.dimK) { return A[${aIndex}]; }
  return 0.0;
}

fn dmmReadB(base : i32, k : i32, col : i32) -> f32 {
  if (k < uniforms.dimK && col < uniforms.dimN) { return B[${bIndex}]; }
  return 0.0;
}

fn main() {
  let batch = i32(workgroupId.z);
  let row0 = i32(workgroupId.y) * DMM_TILE_M;
  let col0 = i32(workgroupId.x) * DMM_TILE_N;
  let tx = i32(localId.x);
  let ty = i32(localId.y);
  let flat = ty * DMM_TX + tx;
  let baseA = batch * uniforms.batchStrideA;
  let baseB = batch * uniforms.batchStrideB;

  var acc : array<array<f32, ${PER_THREAD}>, ${PER_THREAD}>;
  for (var i = 0; i < ${PER_THREAD}; i++) {
    for (var j = 0; j < ${PER_THREAD}; j++) { acc[i][j] = 0.0; }
  }

  let tiles = (uniforms.dimK + DMM_TILE_K - 1) / DMM_TILE_K;
  for (var t = 0; t < tiles; t++) {
    let k0 = t * DMM_TILE_K;
    for (var e = flat; e < DMM_TILE_M * DMM_TILE_K; e += DMM_TX * DMM_TY) {
      let r = e / DMM_TILE_K;
      let c = e % DMM_TILE_K;
      dmmTileA[r][c] = dmmReadA(baseA, row0 + r, k0 + c);
    }
    for (var e = flat; e < DMM_TILE_K * DMM_TILE_N; e += DMM_TX * DMM_TY) {
      let r = e / DMM_TILE_N;
      let c = e % DMM_TILE_N;
      dmmTileB[r][c] = dmmReadB(baseB, k0 + r, col0 + c);
    }
    workgroupBarrier();
    // Only the K that exist: padded zeros are never added, so every output is exactly the sum over
    // k < K in increasing k (an added 0 * x would also turn -0 into +0 and Inf into NaN).
    let kCount = min(DMM_TILE_K, uniforms.dimK - k0);
    for (var k = 0; k < kCount; k++) {
      var a : array<f32, ${PER_THREAD}>;
      var b : array<f32, ${PER_THREAD}>;
      for (var i = 0; i < ${PER_THREAD}; i++) { a[i] = dmmTileA[ty + i * DMM_TY][k]; }
      for (var j = 0; j < ${PER_THREAD}; j++) { b[j] = dmmTileB[k][tx + j * DMM_TX]; }
      for (var i = 0; i < ${PER_THREAD}; i++) {
        for (var j = 0; j < ${PER_THREAD}; j++) { acc[i][j] = acc[i][j] + a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0; i < ${PER_THREAD}; i++) {
    let row = row0 + ty + i * DMM_TY;
    for (var j = 0; j < ${PER_THREAD}; j++) {
      let col = col0 + tx + j * DMM_TX;
      if (row < uniforms.dimM && col < uniforms.dimN) {
        var value = acc[i][j];
        ${v.bias ? 'value = value + bias[col];' : ''}
        ${v.activation === 'relu' ? '// select keeps NaN and -0 as they are, like tfjs relu on the CPU.\n        value = select(value, 0.0, value < 0.0);' : ''}
        result[(batch * uniforms.dimM + row) * uniforms.dimN + col] = value;
      }
    }
  }
}
`
}

/** Workgroups: x over column tiles, y over row tiles, z over batches. */
export function matmulDispatch(d: MatMulDims): Vec3 {
  return [Math.ceil(d.n / TILE_N), Math.ceil(d.m / TILE_M), d.batch]
}

export const MATMUL_WORKGROUP_SIZE: Vec3 = [THREADS_X, THREADS_Y, 1]

/**
 * Standalone module: bindings 0 result, 1 A, 2 B, (3 bias), then the uniform struct; the same names and
 * order as tfjs-backend-webgpu gives the core.
 */
export function matmulStandaloneWgsl(v: MatMulVariant): string {
  const uniformBinding = v.bias ? 4 : 3
  return /* wgsl */ `
struct Uniforms { ${MATMUL_UNIFORM_FIELDS.map((f) => `${f} : i32`).join(', ')} };
@group(0) @binding(0) var<storage, read_write> result : array<f32>;
@group(0) @binding(1) var<storage, read> A : array<f32>;
@group(0) @binding(2) var<storage, read> B : array<f32>;
${v.bias ? '@group(0) @binding(3) var<storage, read> bias : array<f32>;' : ''}
@group(0) @binding(${uniformBinding}) var<uniform> uniforms : Uniforms;
var<private> localId : vec3<u32>;
var<private> workgroupId : vec3<u32>;
${matmulCoreWgsl(v)}
@compute @workgroup_size(${THREADS_X}, ${THREADS_Y}, 1)
fn _start(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  localId = lid;
  workgroupId = wid;
  main();
}
`
}

export function checkMatMulDims(d: MatMulDims): void {
  for (const [name, value] of Object.entries(d)) {
    if (!Number.isInteger(value) || value < 1) throw new MatMulShapeError(`${name} must be a positive integer, got ${value}`)
  }
  if ((d.batchA !== 1 && d.batchA !== d.batch) || (d.batchB !== 1 && d.batchB !== d.batch)) {
    throw new MatMulShapeError(`batches ${d.batchA} and ${d.batchB} do not broadcast to ${d.batch}`)
  }
  // Indices are i32 in the shader.
  if (d.batch * d.m * d.n >= 2 ** 31 || d.batchA * d.m * d.k >= 2 ** 31 || d.batchB * d.k * d.n >= 2 ** 31) {
    throw new MatMulShapeError('operands too large for 32-bit indexing')
  }
  if (d.batch > MAX_WORKGROUPS_PER_DIMENSION) throw new MatMulShapeError(`batch ${d.batch} exceeds ${MAX_WORKGROUPS_PER_DIMENSION}`)
}

export function matmulProgram(v: MatMulVariant, d: MatMulDims): KernelProgram {
  checkMatMulDims(d)
  const key = variantKey(v)
  const dispatch = matmulDispatch(d)
  checkDispatch(key, dispatch)
  return { key, wgsl: matmulStandaloneWgsl(v), workgroupSize: MATMUL_WORKGROUP_SIZE, dispatch }
}

/**
 * Runs the kernel on a bare device (tests, benchmarks). Operands are row-major: A is
 * [batchA, m, k] ([batchA, k, m] when transposed), B is [batchB, k, n] ([batchB, n, k] when transposed).
 */
export async function runMatMulDeterministic(
  device: GPUDevice,
  params: { a: Float32Array; b: Float32Array; bias?: Float32Array; dims: MatMulDims; variant: MatMulVariant },
): Promise<Float32Array> {
  const { a, b, bias, dims: d, variant: v } = params
  const program = matmulProgram(v, d)
  if (a.length !== d.batchA * d.m * d.k || b.length !== d.batchB * d.k * d.n) {
    throw new MatMulShapeError(`operand sizes ${a.length} and ${b.length} do not match ${JSON.stringify(d)}`)
  }
  if (v.bias !== (bias !== undefined) || (bias && bias.length !== d.n)) {
    throw new MatMulShapeError(`bias must be given exactly when the variant has one, with ${d.n} values`)
  }
  const outBytes = d.batch * d.m * d.n * 4
  const buffers = [
    storageBuffer(device, outBytes),
    storageBuffer(device, a),
    storageBuffer(device, b),
    ...(bias ? [storageBuffer(device, bias)] : []),
    uniformBuffer(device, Int32Array.from(matmulUniformValues(d))),
  ]
  try {
    await runProgram(device, program, buffers)
    const bytes = await readBuffer(device, buffers[0]!, outBytes)
    return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
  } finally {
    for (const buffer of buffers) buffer.destroy()
  }
}
