/**
 * Exact mode inside tfjs: puts the exact (Ozaki-style integer-limb) matmul of matmulExact.ts in place of
 * tfjs-backend-webgpu's `BatchMatMul` and `_FusedMatMul`, on the backend's own buffers. Every float32
 * product then has the bits of `matmulExactReference` on any conforming WebGPU implementation.
 *
 * Each call runs three tfjs programs (through `runWebGPUProgram`, so no CPU round-trip and no sync):
 * 1. `exponents`, for A's rows and B's columns: one invocation per group, the max exponent field over K
 *    (integer max, order-free). A group holding Inf or NaN gets the sentinel exponent NONFINITE.
 * 2. `limbs`: one invocation per (group, word of 4 K-elements): the same integer code as `exactPrepWgsl`,
 *    writing L packed signed-byte limb words. The transposes are index remaps here: element k of group g
 *    of batch b is `src[b * batchStride + g * gStride + k * kStride]`, so op(A) and op(B) are never copied.
 * 3. `matmul`: one invocation per output, the kept limb-pair dot products in i32, the exact 64-bit
 *    recombination and the integer rounding to float32 bits (the very WGSL of the standalone kernel:
 *    `exactArithmeticWgsl`), then optionally bias and relu (below), stored as f32.
 *
 * Cost: no CPU round-trip and no sync; three extra small dispatches per operand pair (exponents and limbs of
 * A and of B) and L · groups · ceil(K/4) int32 words of limbs per operand, freed after the call. On
 * SwiftShader (CPU) an MNIST forward matmul [32,784]@[784,64]+bias+relu took 38.6 ms exact vs 31.9 ms
 * deterministic vs 18.9 ms stock; [500,784]@[784,64] 475 ms vs 490 ms vs 272 ms (no GPU figures yet).
 *
 * Decisions:
 * - Bias (_FusedMatMul): the bias value is read as bits and flushed explicitly when subnormal (WGSL lets an
 *   implementation flush it or not), then added with one f32 add, which WGSL requires to be correctly
 *   rounded; a subnormal sum is flushed to +0 explicitly and a zero sum is written as +0, so every
 *   implementation stores the same bits. CPU model: `exactBiasRelu`.
 * - Relu: `select(v, 0.0, v < 0.0)`, an exact comparison (NaN stays NaN).
 * - Non-finite inputs: the standalone kernel throws; here there is no sync point to throw from, so an output
 *   whose row of op(A) or column of op(B) holds Inf or NaN is the canonical NaN 0x7fc00000. Training then
 *   sees a NaN loss, which the coordinator refuses in any unit; outputs not touched by the bad value are
 *   exact as usual. (Plain float matmul would also give NaN or ±Inf there.) Caveat: WGSL lets an
 *   implementation assume that no NaN or Inf occurs, so the NaN's payload (and an overflowed ±Inf, which
 *   the rounding emits past the float32 range) is promised only as "not finite", not bit for bit; both
 *   end in a non-finite loss, and a unit with one is refused whatever its bits. Finite outputs, the only
 *   ones an accepted unit has, are exact. The inputs are read as f32 and bitcast to u32, which keeps their
 *   bits on every implementation we know of; the only patterns whose reading could differ (subnormals,
 *   NaN, Inf) are flushed or rejected by value class, not by their exact bits.
 * - Calls outside what the exact kernel covers (non-float32 operands, activations other than linear and
 *   relu, PReLU weights, a bias that is not one value per column, broadcasting other than batch 1, sizes
 *   past the dispatch limits) throw ExactKernelError by default: silently going to the float kernel would
 *   break the exact-mode promise. With `fallback: 'stock'` they go to the previously registered kernel and
 *   are counted in `counts.*.stock`.
 * - Only one matmul registration at a time: if the deterministic kernels of register.ts are active, this
 *   refuses with ExactKernelRegistrationError (call their `restore()` first). Registering the
 *   deterministic kernels while exact ones are active would capture the exact ones as "stock"; don't.
 */
import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu'
import { sha256Hex } from '../protocol/hash.ts'
import { checkScheme, EXACT_MAX_K, keptPairs, mantissaBits, type ExactScheme } from './exactReference.ts'
import { DEFAULT_EXACT_SCHEME, exactArithmeticWgsl, exactBundleId, exactMantissaWgsl, ExactMatmulError, hasDot4, pairAdd64Wgsl } from './matmulExact.ts'
import { OVERRIDDEN_KERNELS, registerDeterministicKernels } from './register.ts'
import type { MatMulDims } from './matmulDeterministic.ts'
import { matMulCallOf, reinstateKernels, replaceWebgpuKernels, type MatMulCall } from './tfjsKernels.ts'
import { EXACT_ELEMENTWISE_OPS, exactElementwiseWgsl, runExactElementwise, type ExactElementwiseKernel } from './exactElementwise.ts'
import { EXACT_REDUCE_OPS, exactReduceWgsl, fixedOrderReduceKernel, type ExactReduceKernel } from './fixedOrderReduce.ts'

type TensorInfo = tf.TensorInfo
type KernelFunc = tf.KernelConfig['kernelFunc']

/** Version of the registered programs (prep, matmul, bias/relu epilogue); in the bundle id. */
export const EXACT_REGISTERED_VERSION = 2

const ELEMENTWISE_KERNELS = Object.keys(EXACT_ELEMENTWISE_OPS) as ExactElementwiseKernel[]
const REDUCE_KERNELS = Object.keys(EXACT_REDUCE_OPS) as ExactReduceKernel[]

/**
 * Kernels exact mode leaves to stock tfjs-webgpu: they relabel, copy, cast without arithmetic, or write
 * constants (0 and 1), so their output bits are their input bits on every implementation. Any other kernel
 * called on a float32 tensor in exact mode throws ExactKernelError (a computation exact mode has no exact
 * form for must not run silently in float hardware); the op audit test lists what a preset unit calls.
 */
export const EXACT_PASSTHROUGH_KERNELS = [
  'Identity', 'Reshape', 'Cast', 'ZerosLike', 'OnesLike', 'Fill', 'OneHot', 'Pack', 'Unpack', 'Transpose', 'ExpandDims',
  'Squeeze', 'Concat', 'Slice', 'StridedSlice', 'GatherV2', 'Tile', 'Reverse', 'PadV2',
] as const

/** Every tfjs kernel exact mode replaces: the matmuls, the float32 element-wise ops and the reductions. */
export const EXACT_KERNELS = [...OVERRIDDEN_KERNELS, ...ELEMENTWISE_KERNELS, ...REDUCE_KERNELS] as const
export type ExactKernelName = (typeof OVERRIDDEN_KERNELS)[number] | ExactElementwiseKernel | ExactReduceKernel

/** Exponent given to a group holding Inf or NaN; any output that uses the group becomes NaN. */
const NONFINITE = 1 << 20
const NAN_BITS = 0x7fc00000
const PREP_WG = 64
const MM_WG = 8
const MAX_WORKGROUPS = 65535

/** A call the exact kernel does not cover (with fallback 'throw'). An ExactMatmulError like the kernel's own. */
export class ExactKernelError extends ExactMatmulError {
  constructor(message: string) {
    super(message)
    Object.defineProperty(this, 'name', { value: 'ExactKernelError' })
  }
}

export class ExactKernelRegistrationError extends Error {
  override readonly name = 'ExactKernelRegistrationError'
}

export interface ExactKernelOptions extends Partial<ExactScheme> {
  /** Use `dot4I8Packed` (same bits either way; not in the bundle id). Default: detected from navigator.gpu. */
  readonly dot4?: boolean
  /** What calls outside the exact kernel do: 'throw' (default) or go to the previous kernel ('stock'). */
  readonly fallback?: 'throw' | 'stock'
}

export interface ExactKernels {
  readonly scheme: ExactScheme
  /** The id of the kernels as registered: goes into a job spec that asks for exact mode. */
  readonly bundleId: string
  /**
   * Calls by kernel name: how many ran the exact program and how many went to the previous kernel (the
   * matmuls only with `fallback: 'stock'`; element-wise ops and reductions on int32 or bool tensors, whose
   * arithmetic is exact on every implementation anyway).
   */
  readonly counts: Record<ExactKernelName, { exact: number; stock: number }>
  /** Puts the previous (stock) kernels back. Idempotent. */
  restore(): void
}

// ---------------------------------------------------------------------------------------------------------
// WGSL. The tfjs preamble declares `result`, the inputs by variable name (typed by dtype: float32 ->
// array<f32>, int32 -> array<i32>), `uniforms` (i32 fields) and the private builtins; we define `main()`.

const PREP_UNIFORMS = ['exGroups', 'exG', 'exK', 'exKW', 'exBatchStride', 'exGStride', 'exKStride'] as const

/** Exponent pass: input `X` (float32, read as bits), output int32 [groups]. */
export function exactExponentsWgsl(): string {
  return /* wgsl */ `
// A rank-1 output makes the backend's dispatch layout flat: its entry point calls main(global index).
fn main(flatIndex: i32) {
  let gg = i32(globalId.x);
  if (gg >= uniforms.exGroups) { return; }
  let base = (gg / uniforms.exG) * uniforms.exBatchStride + (gg % uniforms.exG) * uniforms.exGStride;
  var maxE = -1;
  var bad = false;
  for (var k = 0; k < uniforms.exK; k++) {
    let ef = i32((bitcast<u32>(X[base + k * uniforms.exKStride]) >> 23u) & 0xffu);
    if (ef == 255) { bad = true; }
    if (ef != 0 && ef != 255 && ef > maxE) { maxE = ef; }
  }
  var e = select(maxE - 127, 0, maxE < 0);
  if (bad) { e = ${NONFINITE}; }
  result[gg] = e;
}
`
}

/** Limb pass: inputs `X` (float32) and `E` (int32 exponents), output int32 [limbs, groups, KW]. */
export function exactLimbsWgsl(limbs: number): string {
  checkScheme({ limbs, minPairOrder: 0 })
  const w = mantissaBits(limbs)
  const range = Array.from({ length: limbs }, (_, p) => p)
  return /* wgsl */ `${exactMantissaWgsl(w)}
fn main(flatIndex: i32) {
  // The grid may be 2-D (more than 65535 workgroups), so the index is computed here.
  let idx = i32((workgroupId.y * numWorkgroups.x + workgroupId.x) * ${PREP_WG}u + localIndex);
  if (idx >= uniforms.exGroups * uniforms.exKW) { return; }
  let gg = idx / uniforms.exKW;
  let word = idx % uniforms.exKW;
  let base = (gg / uniforms.exG) * uniforms.exBatchStride + (gg % uniforms.exG) * uniforms.exGStride;
  let e = E[gg];
${range.map((p) => `  var w${p} = 0u;`).join('\n')}
  for (var b = 0; b < 4; b++) {
    let k = word * 4 + b;
    if (k >= uniforms.exK) { break; }
    let bits = bitcast<u32>(X[base + k * uniforms.exKStride]);
    var m = select(0, exactMantissa(bits, e), e != ${NONFINITE});
${range.map((p) => `    let d${p} = extractBits(m, 0u, 8u);\n    w${p} = w${p} | ((bitcast<u32>(d${p}) & 0xffu) << (8u * u32(b)));\n    m = (m - d${p}) >> 8u;`).join('\n')}
  }
${range.map((p) => `  result[(${p} * uniforms.exGroups + gg) * uniforms.exKW + word] = bitcast<i32>(w${p});`).join('\n')}
}
`
}

const MM_UNIFORMS = ['exM', 'exN', 'exKW', 'exGroupsA', 'exGroupsB', 'exRowsPerBatchA', 'exColsPerBatchB'] as const

export interface ExactEpilogue {
  bias: boolean
  activation: 'linear' | 'relu'
}

/** Matmul pass: inputs AL, BL (int32 limbs), AE, BE (int32 exponents), optional bias (float32). */
export function exactMatmulTfjsWgsl(scheme: ExactScheme, dot4: boolean, epi: ExactEpilogue): string {
  checkScheme(scheme)
  const L = scheme.limbs
  const w = mantissaBits(L)
  const pairs = keptPairs(scheme)
  const dot = dot4 ? 'dot4I8Packed' : 'dot4Fallback'
  const range = Array.from({ length: L }, (_, p) => p)
  return /* wgsl */ `
${exactArithmeticWgsl(w)}
fn main() {
  let col = i32(globalId.x);
  let row = i32(globalId.y);
  let batch = i32(globalId.z);
  let M = uniforms.exM;
  let N = uniforms.exN;
  let KW = uniforms.exKW;
  if (row >= M || col >= N) { return; }
  let ga = batch * uniforms.exRowsPerBatchA + row;
  let gb = batch * uniforms.exColsPerBatchB + col;
${pairs.map(([p, q]) => `  var acc_${p}${q}: i32 = 0;`).join('\n')}
  for (var w = 0; w < KW; w++) {
${range.map((p) => `    let a_${p} = bitcast<u32>(AL[(${p} * uniforms.exGroupsA + ga) * KW + w]);`).join('\n')}
${range.map((q) => `    let b_${q} = bitcast<u32>(BL[(${q} * uniforms.exGroupsB + gb) * KW + w]);`).join('\n')}
${pairs.map(([p, q]) => `    acc_${p}${q} += ${dot}(a_${p}, b_${q});`).join('\n')}
  }
  let ea = AE[ga];
  let eb = BE[gb];
  var bits = ${NAN_BITS}u;
  if (ea != ${NONFINITE} && eb != ${NONFINITE}) {
    var hi = 0u;
    var lo = 0u;
${pairs.map(([p, q]) => pairAdd64Wgsl(`acc_${p}${q}`, p, q)).join('\n')}
    bits = toF32Bits(hi, lo, ea + eb);
  }
  var value = bitcast<f32>(bits);
${
  epi.bias
    ? `  // Subnormal bias flushed explicitly; one correctly rounded f32 add; a subnormal or zero sum is +0.
  let bb = bitcast<u32>(bias[col]);
  let bv = select(bitcast<f32>(bb), 0.0, (bb & 0x7f800000u) == 0u);
  value = value + bv;
  if ((bitcast<u32>(value) & 0x7f800000u) == 0u) { value = 0.0; }`
    : ''
}
${epi.activation === 'relu' ? '  value = select(value, 0.0, value < 0.0);' : ''}
  result[(batch * M + row) * N + col] = value;
}
`
}

/** The CPU model of the epilogue, applied to `matmulExactReference`'s output (in place). */
export function exactBiasRelu(c: Float32Array, n: number, bias: Float32Array | undefined, activation: 'linear' | 'relu'): Float32Array {
  const bitsOf = new Uint32Array(1)
  const f = new Float32Array(bitsOf.buffer)
  for (let i = 0; i < c.length; i++) {
    let v = c[i]!
    if (bias) {
      f[0] = bias[i % n]!
      const bv = (bitsOf[0]! & 0x7f800000) === 0 ? 0 : f[0]!
      // A double sum of two floats rounded once to float32 equals the correctly rounded float32 sum.
      f[0] = v + bv
      v = (bitsOf[0]! & 0x7f800000) === 0 ? 0 : f[0]!
    }
    if (activation === 'relu' && v < 0) v = 0
    c[i] = v
  }
  return c
}

// ---------------------------------------------------------------------------------------------------------
// The bundle id: the scheme's id plus a digest of every registered program's WGSL.

function allVariantsSource(scheme: ExactScheme): string {
  const parts = [exactExponentsWgsl(), exactLimbsWgsl(scheme.limbs)]
  for (const bias of [false, true]) {
    for (const activation of ['linear', 'relu'] as const) parts.push(exactMatmulTfjsWgsl(scheme, false, { bias, activation }))
  }
  for (const name of ELEMENTWISE_KERNELS) parts.push(exactElementwiseWgsl(name))
  for (const name of REDUCE_KERNELS) parts.push(exactReduceWgsl(name))
  return parts.join('\n')
}

/**
 * Id of the exact kernels as registered in tfjs: the version and a digest of every registered program's WGSL
 * (matmul in its dot4 fallback form, as dot4I8Packed gives the same bits; the soft-float element-wise ops and
 * reductions), `exactBundleId(scheme)` (the matmul's arithmetic), and the tfjs version whose preamble they
 * run in.
 */
export function exactKernelBundleId(scheme: ExactScheme = DEFAULT_EXACT_SCHEME): string {
  const digest = sha256Hex(new TextEncoder().encode(allVariantsSource(scheme))).slice(2, 18)
  return `tabtrain-exact-v${EXACT_REGISTERED_VERSION}-${digest}+${exactBundleId(scheme)}+softfloat+tfjs-webgpu-4.22.0`
}

export const EXACT_KERNEL_BUNDLE = exactKernelBundleId()

// ---------------------------------------------------------------------------------------------------------
// Planning a call.

/** The matmul's dimensions as the deterministic kernel names them, plus the output's tfjs shape. */
interface Plan extends MatMulDims {
  outShape: number[]
}

/** The call's shapes, or a reason why the exact kernel does not cover it. */
function plan(call: MatMulCall): Plan | string {
  const { a, b, bias, transposeA, transposeB } = call
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || (bias && bias.dtype !== 'float32')) return 'operands are not float32'
  if (a.shape.length < 2 || b.shape.length < 2) return 'operands of rank < 2'
  const ra = a.shape.length
  const rb = b.shape.length
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!
  if (k !== kb) return `inner dimensions differ (${k} vs ${kb})`
  const outerA = a.shape.slice(0, -2)
  const outerB = b.shape.slice(0, -2)
  let outer: number[]
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB)
  } catch {
    return 'batch shapes do not broadcast'
  }
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1)
  const batch = size(outer)
  const batchA = size(outerA)
  const batchB = size(outerB)
  if ((batchA !== 1 && batchA !== batch) || (batchB !== 1 && batchB !== batch)) return 'broadcast other than batch 1'
  if ([m, n, k, batch].some((d) => d < 1)) return 'empty operand'
  if (k > EXACT_MAX_K) return `K = ${k} exceeds ${EXACT_MAX_K}`
  if (batch > MAX_WORKGROUPS || Math.ceil(m / MM_WG) > MAX_WORKGROUPS || Math.ceil(n / MM_WG) > MAX_WORKGROUPS) return 'too large for one dispatch'
  if (Math.max(batchA * m, batchB * n) > MAX_WORKGROUPS * PREP_WG) return 'too many rows or columns'
  if (bias && (size(bias.shape) !== n || bias.shape.slice(0, -1).some((d) => d !== 1))) return 'bias is not one value per column'
  return { batch, batchA, batchB, m, n, k, outShape: [...outer, m, n] }
}

function view(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype }
}

function uniformsDecl(fields: readonly string[]): string {
  return fields.map((f) => `${f} : i32,`).join(' ')
}

function ints(values: number[]): Array<{ type: string; data: number[] }> {
  return values.map((v) => ({ type: 'int32', data: [v] }))
}

class Runner {
  readonly pairsKey: string
  constructor(
    readonly scheme: ExactScheme,
    readonly dot4: boolean,
  ) {
    this.pairsKey = `L${scheme.limbs}p${scheme.minPairOrder}d${Number(dot4)}`
  }

  /**
   * Limbs and exponents of one operand: `groups` = batchX · G groups of K elements, element k of group g of
   * batch b at `src[b · batchStride + g · gStride + k · kStride]`.
   */
  private prepare(backend: WebGPUBackend, src: TensorInfo, batchX: number, G: number, K: number, batchStride: number, gStride: number, kStride: number) {
    const groups = batchX * G
    const KW = Math.ceil(K / 4)
    const flat = view(src, [src.shape.reduce((x, y) => x * y, 1)])
    const u = ints([groups, G, K, KW, batchStride, gStride, kStride])
    const expProgram: WebGPUProgram = {
      variableNames: ['X'],
      outputShape: [groups],
      dispatchLayout: { x: [0] },
      dispatch: [Math.ceil(groups / PREP_WG), 1, 1],
      workgroupSize: [PREP_WG, 1, 1],
      uniforms: uniformsDecl(PREP_UNIFORMS),
      shaderKey: 'exactExponents/v1',
      getUserCode: exactExponentsWgsl,
    }
    const exps = backend.runWebGPUProgram(expProgram, [flat], 'int32', u)
    const limbs = this.scheme.limbs
    const wgs = Math.ceil((groups * KW) / PREP_WG)
    const dx = Math.min(wgs, MAX_WORKGROUPS)
    const limbProgram: WebGPUProgram = {
      variableNames: ['X', 'E'],
      outputShape: [limbs * groups * KW],
      dispatchLayout: { x: [0] },
      dispatch: [dx, Math.ceil(wgs / dx), 1],
      workgroupSize: [PREP_WG, 1, 1],
      uniforms: uniformsDecl(PREP_UNIFORMS),
      shaderKey: `exactLimbs/v1/L${limbs}`,
      getUserCode: () => exactLimbsWgsl(limbs),
    }
    const packed = backend.runWebGPUProgram(limbProgram, [flat, exps], 'int32', u)
    return { exps, packed, groups, KW }
  }

  run(backend: WebGPUBackend, call: MatMulCall, p: Plan): TensorInfo {
    const { m, n, k, batch, batchA, batchB } = p
    // op(A) rows: A [.., M, K] row i = stride K, k stride 1; A^T stored [.., K, M]: row stride 1, k stride M.
    const A = call.transposeA
      ? this.prepare(backend, call.a, batchA, m, k, m * k, 1, m)
      : this.prepare(backend, call.a, batchA, m, k, m * k, k, 1)
    // op(B) columns: B [.., K, N] column j = stride 1, k stride N; B^T stored [.., N, K]: stride K, 1.
    const B = call.transposeB
      ? this.prepare(backend, call.b, batchB, n, k, k * n, k, 1)
      : this.prepare(backend, call.b, batchB, n, k, k * n, 1, n)
    const epi: ExactEpilogue = { bias: call.bias !== undefined, activation: call.activation }
    const program: WebGPUProgram = {
      variableNames: epi.bias ? ['AL', 'BL', 'AE', 'BE', 'bias'] : ['AL', 'BL', 'AE', 'BE'],
      outputShape: [batch, m, n],
      dispatchLayout: { x: [2], y: [1], z: [0] },
      dispatch: [Math.ceil(n / MM_WG), Math.ceil(m / MM_WG), batch],
      workgroupSize: [MM_WG, MM_WG, 1],
      uniforms: uniformsDecl(MM_UNIFORMS),
      shaderKey: `exactMatmul/v${EXACT_REGISTERED_VERSION}/${this.pairsKey}/bias${Number(epi.bias)}/${epi.activation}`,
      getUserCode: () => exactMatmulTfjsWgsl(this.scheme, this.dot4, epi),
    }
    const inputs = [A.packed, B.packed, A.exps, B.exps, ...(call.bias ? [view(call.bias, [n])] : [])]
    const u = ints([m, n, A.KW, A.groups, B.groups, batchA === 1 ? 0 : m, batchB === 1 ? 0 : n])
    const out = backend.runWebGPUProgram(program, inputs, 'float32', u)
    // The intermediates are freed once the queued commands that use them have run (the backend defers it).
    for (const t of [A.exps, A.packed, B.exps, B.packed]) backend.disposeData(t.dataId)
    return view(out, p.outShape)
  }
}

let active: ExactKernels | null = null

function detectDot4(): boolean {
  const nav = (globalThis as { navigator?: { gpu?: { wgslLanguageFeatures?: ReadonlySet<string> } } }).navigator
  return hasDot4(nav?.gpu?.wgslLanguageFeatures)
}

/** True when register.ts's deterministic kernels are active (probing leaves the registrations as found). */
function deterministicActive(): boolean {
  const before = tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc
  const probe = registerDeterministicKernels()
  if (tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc === before) return true
  probe.restore()
  return false
}

/**
 * Replaces the webgpu backend's BatchMatMul and _FusedMatMul with the exact kernel. Call after
 * `@tensorflow/tfjs-backend-webgpu` is imported. Idempotent: a second call returns the first handle (its
 * options are ignored). Throws ExactKernelRegistrationError while the deterministic kernels are active.
 */
export function registerExactKernels(options: ExactKernelOptions = {}): ExactKernels {
  if (active) return active
  const scheme: ExactScheme = {
    limbs: options.limbs ?? DEFAULT_EXACT_SCHEME.limbs,
    minPairOrder: options.minPairOrder ?? DEFAULT_EXACT_SCHEME.minPairOrder,
  }
  checkScheme(scheme)
  for (const name of EXACT_KERNELS) {
    if (!tf.getKernel(name, 'webgpu')) {
      throw new ExactKernelRegistrationError(`no ${name} kernel on webgpu: import @tensorflow/tfjs-backend-webgpu first`)
    }
  }
  if (deterministicActive()) {
    throw new ExactKernelRegistrationError('the deterministic matmul kernels are registered: call their restore() first')
  }
  const stock = new Map<string, tf.KernelConfig>()
  for (const name of EXACT_KERNELS) stock.set(name, tf.getKernel(name, 'webgpu')!)
  const fallback = options.fallback ?? 'throw'
  const runner = new Runner(scheme, options.dot4 ?? detectDot4())
  const counts = Object.fromEntries(EXACT_KERNELS.map((name) => [name, { exact: 0, stock: 0 }])) as ExactKernels['counts']

  const dispatch = (name: (typeof OVERRIDDEN_KERNELS)[number], args: Parameters<KernelFunc>[0], call: MatMulCall | string) => {
    const p = typeof call === 'string' ? call : plan(call)
    if (typeof p === 'string' || typeof call === 'string') {
      if (fallback === 'throw') throw new ExactKernelError(`exact ${name} does not cover this call: ${p as string}`)
      counts[name].stock++
      return stock.get(name)!.kernelFunc(args)
    }
    counts[name].exact++
    return runner.run(args.backend as WebGPUBackend, call, p)
  }

  const batchMatMul: KernelFunc = (args) => dispatch('BatchMatMul', args, matMulCallOf('BatchMatMul', args))
  const fusedMatMul: KernelFunc = (args) => dispatch('_FusedMatMul', args, matMulCallOf('_FusedMatMul', args))

  // Element-wise ops and reductions: float32 through soft float; int32 and bool (exact arithmetic on every
  // implementation) through the stock kernel.
  const elementwise = (name: ExactElementwiseKernel): KernelFunc => (args) => {
    const named = args.inputs as Record<string, TensorInfo>
    const inputs = EXACT_ELEMENTWISE_OPS[name].kind === 'binary' ? [named.a!, named.b!] : [named.x!]
    if (inputs.some((t) => t.dtype !== 'float32')) {
      counts[name].stock++
      return stock.get(name)!.kernelFunc(args)
    }
    counts[name].exact++
    return runExactElementwise(args.backend as WebGPUBackend, name, inputs, args.attrs as Record<string, unknown>)
  }
  const reduce = (name: ExactReduceKernel): KernelFunc =>
    fixedOrderReduceKernel(name, 'soft', stock.get(name)!.kernelFunc, (ran) => counts[name][ran === 'fixed' ? 'exact' : 'stock']++)

  // Everything else: refused on float32 (see EXACT_PASSTHROUGH_KERNELS), unless calls may go to stock.
  const covered = new Set<string>([...EXACT_KERNELS, ...EXACT_PASSTHROUGH_KERNELS])
  const guarded = fallback === 'stock' ? [] : tf.getKernelsForBackend('webgpu').filter((k) => !covered.has(k.kernelName))
  for (const config of guarded) stock.set(config.kernelName, config)
  const refuseFloat = (config: tf.KernelConfig): KernelFunc => (args) => {
    const inputs = Object.values(args.inputs as Record<string, TensorInfo | undefined>)
    if (inputs.some((t) => t?.dtype === 'float32')) {
      throw new ExactKernelError(`${config.kernelName} has no exact form: exact mode cannot run it on float32 values`)
    }
    return config.kernelFunc(args)
  }

  replaceWebgpuKernels([
    ['BatchMatMul', batchMatMul],
    ['_FusedMatMul', fusedMatMul],
    ...ELEMENTWISE_KERNELS.map((name) => [name, elementwise(name)] as const),
    ...REDUCE_KERNELS.map((name) => [name, reduce(name)] as const),
    ...guarded.map((config) => [config.kernelName, refuseFloat(config)] as const),
  ])

  const handle: ExactKernels = {
    scheme,
    bundleId: exactKernelBundleId(scheme),
    counts,
    restore() {
      if (active !== handle) return
      reinstateKernels(stock.values())
      active = null
    },
  }
  active = handle
  return handle
}
