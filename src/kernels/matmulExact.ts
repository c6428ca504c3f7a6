/**
 * Exact-mode matmul on WebGPU: float32 A [M,K] @ B [K,N] through integer limbs (Ozaki-style), so that the
 * output bits are the same on every conforming WebGPU implementation. The scheme and its error bound are
 * described in `exactReference.ts`, whose CPU model this kernel matches bit for bit.
 *
 * Everything runs on the GPU by default: preprocessing (shared exponents, mantissas, limbs; `exactPrepWgsl`,
 * integer and bit operations on the inputs' bit patterns), the integer matmul of every kept limb pair, the
 * exact 64-bit recombination (two u32 words, wrapping adds with carries) and the conversion to float32 with
 * an explicit round-to-nearest-even in integer code. The same preprocessing exists in TypeScript
 * (`prepareA`/`prepareB`, upload with prep 'cpu'); tests hold the two to the same bits. No float operation touches the result path: the shader has no
 * f32 value at all and writes the float32 bit patterns as u32 (a tfjs-registered variant can store
 * `bitcast<f32>(bits)` instead: the kernel never produces NaN or subnormal bits, so a store keeps them).
 */
import {
  DEFAULT_EXACT_SCHEME,
  ExactMatmulError,
  checkScheme,
  checkShape,
  keptPairs,
  mantissaBits,
  prepareA,
  prepareB,
  type ExactOperand,
  type ExactScheme,
} from './exactReference.ts'

export { DEFAULT_EXACT_SCHEME, ExactMatmulError, type ExactScheme }

const KERNEL_VERSION = 1
const WORKGROUP = 8
/** WebGPU's guaranteed maxComputeWorkgroupsPerDimension. */
const MAX_WORKGROUPS = 65535

export interface ExactMatmulOptions extends Partial<ExactScheme> {
  /**
   * Use WGSL's `dot4I8Packed` (language feature `packed_4x8_integer_dot_product`). Both paths are exact
   * integer arithmetic and give the same bits, so this is not part of the bundle id. Default: detected
   * from `navigator.gpu.wgslLanguageFeatures` where that exists, else false.
   */
  readonly dot4?: boolean
  /**
   * Outputs per invocation in each dimension: 2 loads each limb word once for two dot products (fewer
   * memory reads on a GPU; a longer shader to compile). Same bits either way; not in the bundle id.
   */
  readonly block?: 1 | 2
}

/** Identifies the kernel's arithmetic: goes into the kernel bundle id. Same id, same output bits. */
export function exactBundleId(scheme: ExactScheme = DEFAULT_EXACT_SCHEME): string {
  return `exact-matmul/v${KERNEL_VERSION}/limbs=${scheme.limbs}/minPairOrder=${scheme.minPairOrder}`
}

export function hasDot4(languageFeatures: ReadonlySet<string> | undefined): boolean {
  return languageFeatures?.has('packed_4x8_integer_dot_product') ?? false
}

function detectDot4(): boolean {
  const nav = (globalThis as { navigator?: { gpu?: { wgslLanguageFeatures?: ReadonlySet<string> } } }).navigator
  return hasDot4(nav?.gpu?.wgslLanguageFeatures)
}

/**
 * The kernel's integer helpers (dot4Fallback, add64, toF32Bits for W-bit mantissas), shared verbatim by
 * the standalone kernel and the tfjs-registered one (registerExact.ts), so both round with the same code.
 */
export function exactArithmeticWgsl(w: number): string {
  return `// Four signed 8-bit products summed in i32: what dot4I8Packed does, for adapters without it.
fn dot4Fallback(x: u32, y: u32) -> i32 {
  let a = bitcast<i32>(x);
  let b = bitcast<i32>(y);
  return extractBits(a, 0u, 8u) * extractBits(b, 0u, 8u) + extractBits(a, 8u, 8u) * extractBits(b, 8u, 8u)
       + extractBits(a, 16u, 8u) * extractBits(b, 16u, 8u) + extractBits(a, 24u, 8u) * extractBits(b, 24u, 8u);
}

// (hi, lo) += (xh, xl), two's complement 64-bit, wrapping: exact whatever the order of additions.
fn add64(hi: ptr<function, u32>, lo: ptr<function, u32>, xh: u32, xl: u32) {
  let l = *lo + xl;
  *hi = *hi + xh + select(0u, 1u, l < xl);
  *lo = l;
}

// float32 bits of S · 2^(expSum - 2(W-1)), S = (hi, lo) as a signed 64-bit integer: round to nearest even
// in integer code; +0 for zero and below the normal range (flushed, like subnormal inputs), ±Inf above it.
fn toF32Bits(hiIn: u32, loIn: u32, expSum: i32) -> u32 {
  var hi = hiIn;
  var lo = loIn;
  // Sign and magnitude.
  let negative = (hi >> 31u) == 1u;
  if (negative) {
    lo = ~lo + 1u;
    hi = ~hi + select(0u, 1u, lo == 0u);
  }
  if (hi == 0u && lo == 0u) { return 0u; }
  // Normalize: top = the 32 bits below and including the leading one, sticky = any bit under them.
  var top: u32;
  var sticky = false;
  var pos: i32;
  if (hi != 0u) {
    let lz = countLeadingZeros(hi);
    top = (hi << lz) | select(0u, lo >> (32u - lz), lz > 0u);
    sticky = (lo << lz) != 0u;
    pos = 63 - i32(lz);
  } else {
    let lz = countLeadingZeros(lo);
    top = lo << lz;
    pos = 31 - i32(lz);
  }
  // 24-bit significand, round to nearest even on the 8 bits below it plus the sticky bit.
  var sig = top >> 8u;
  let rest = top & 0xffu;
  if (rest > 0x80u || (rest == 0x80u && (sticky || (sig & 1u) == 1u))) {
    sig = sig + 1u;
  }
  var exponent = pos + expSum - ${2 * (w - 1)};
  if (sig == 0x1000000u) {
    sig = 0x800000u;
    exponent = exponent + 1;
  }
  let biased = exponent + 127;
  let sign = select(0u, 0x80000000u, negative);
  if (biased <= 0) { return 0u; }
  if (biased >= 255) { return sign | 0x7f800000u; }
  return sign | (u32(biased) << 23u) | (sig & 0x7fffffu);
}

`
}

/** The WGSL line that adds limb pair (p, q)'s i32 sum `v`, shifted by 8(p+q) bits, into the 64-bit (hi, lo). */
export function pairAdd64Wgsl(v: string, p: number, q: number): string {
  // Shift amounts are fixed per pair, so the three cases (0, 1..31, 32..63) are chosen here rather than in
  // the shader (WGSL masks shift amounts to 5 bits, so a shift by 32 would silently be a shift by 0).
  const sh = 8 * (p + q)
  if (sh === 0) return `    add64(&hi, &lo, bitcast<u32>(${v} >> 31u), bitcast<u32>(${v}));`
  if (sh < 32) return `    add64(&hi, &lo, bitcast<u32>(${v} >> ${32 - sh}u), bitcast<u32>(${v}) << ${sh}u);`
  return `    add64(&hi, &lo, bitcast<u32>(${v}) << ${sh - 32}u, 0u);`
}

/** WGSL of the matmul for one scheme; one invocation computes a block x block block of outputs. */
export function exactMatmulWgsl(scheme: ExactScheme, dot4: boolean, block: 1 | 2 = 1): string {
  checkScheme(scheme)
  const L = scheme.limbs
  const w = mantissaBits(L)
  const pairs = keptPairs(scheme)
  const dot = dot4 ? 'dot4I8Packed' : 'dot4Fallback'
  // Each invocation computes a block x block tile of outputs (rows r, columns c), so one load of a limb
  // word serves `block` dot products. Rows and columns past the edge load a clamped (valid) index and are
  // never stored. The blocking changes no sum: each output's limb-pair sums are the same integers.
  const R = block
  const loads: string[] = []
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < L; p++) loads.push(`    let a${r}_${p} = aLimbs[(${p}u * M + row${r}) * KW + w];`)
  }
  for (let c = 0; c < R; c++) {
    for (let q = 0; q < L; q++) loads.push(`    let b${c}_${q} = bLimbs[(${q}u * N + col${c}) * KW + w];`)
  }
  const decls: string[] = []
  const macs: string[] = []
  const finals: string[] = []
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < R; c++) {
      const t = `${r}${c}`
      for (const [p, q] of pairs) {
        decls.push(`  var acc${t}_${p}${q}: i32 = 0;`)
        macs.push(`    acc${t}_${p}${q} += ${dot}(a${r}_${p}, b${c}_${q});`)
      }
      // Each pair's i32 sum enters the 64-bit total shifted by 8(p+q) bits, sign-extended (pairAdd64Wgsl).
      const adds = pairs.map(([p, q]) => pairAdd64Wgsl(`acc${t}_${p}${q}`, p, q))
      finals.push(`  if (i0 + ${r}u < M && j0 + ${c}u < N) {
    var hi = 0u;
    var lo = 0u;
${adds.join('\n')}
    outBits[(i0 + ${r}u) * N + j0 + ${c}u] = toF32Bits(hi, lo, aExp[i0 + ${r}u] + bExp[j0 + ${c}u]);
  }`)
    }
  }
  const rowsCols: string[] = []
  for (let r = 0; r < R; r++) rowsCols.push(`  let row${r} = min(i0 + ${r}u, M - 1u);`)
  for (let c = 0; c < R; c++) rowsCols.push(`  let col${c} = min(j0 + ${c}u, N - 1u);`)
  return /* wgsl */ `
// ${exactBundleId(scheme)}; ${dot4 ? 'dot4I8Packed' : 'i32 multiply-add fallback'}
struct Params { M: u32, N: u32, KW: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> aLimbs: array<u32>;
@group(0) @binding(1) var<storage, read> bLimbs: array<u32>;
@group(0) @binding(2) var<storage, read> aExp: array<i32>;
@group(0) @binding(3) var<storage, read> bExp: array<i32>;
@group(0) @binding(4) var<storage, read_write> outBits: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

${exactArithmeticWgsl(w)}@compute @workgroup_size(${WORKGROUP}, ${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let M = params.M;
  let N = params.N;
  let KW = params.KW;
  let i0 = gid.y * ${R}u;
  let j0 = gid.x * ${R}u;
  if (i0 >= M || j0 >= N) { return; }
${rowsCols.join('\n')}
${decls.join('\n')}
  for (var w = 0u; w < KW; w++) {
${loads.join('\n')}
${macs.join('\n')}
  }
${finals.join('\n')}
}
`
}

/**
 * WGSL of the GPU preprocessing, the same arithmetic as `prepareOperand`: integer and bit operations on the
 * inputs' bit patterns (read as u32: no f32 value exists in the shader). Element k of group g is
 * `src[g * gStride + k * kStride]` (A's rows: gStride = K, kStride = 1; B's columns: 1 and N).
 * `exponents` runs one workgroup per group (max exponent field); `limbs` one invocation per (group, word),
 * so each packed word has one writer and needs no atomics. A non-finite input sets `status` to 1.
 */
/**
 * WGSL `exactMantissa(bits, e)`: the signed W-bit mantissa of the float32 `bits` under the shared
 * power-of-two exponent `e`, rounded to nearest even in integer code; 0 for zeros, subnormals (flushed)
 * and non-finite values. One text for the standalone preprocessing and the tfjs kernels, so both split
 * operands into limbs identically.
 */
export function exactMantissaWgsl(w: number): string {
  return /* wgsl */ `
fn exactMantissa(bits: u32, e: i32) -> i32 {
  let ef = i32((bits >> 23u) & 0xffu);
  if (ef == 0 || ef == 255) { return 0; }
  let s = (bits & 0x7fffffu) | 0x800000u;
  // m = RNE(s / 2^r), r = e - E + 24 - W >= 24 - W >= 2 (W <= 22), so always a right shift.
  let r = u32(e - (ef - 127) + ${24 - w});
  var q = 0u;
  if (r < 32u) {
    q = s >> r;
    let rem = s & ((1u << r) - 1u);
    let half = 1u << (r - 1u);
    if (rem > half || (rem == half && (q & 1u) == 1u)) { q = q + 1u; }
  }
  return select(i32(q), -i32(q), (bits >> 31u) == 1u);
}
`
}

export function exactPrepWgsl(limbs: number): string {
  checkScheme({ limbs, minPairOrder: 0 })
  const w = mantissaBits(limbs)
  return /* wgsl */ `
struct Prep { groups: u32, K: u32, KW: u32, gStride: u32, kStride: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> exps: array<i32>;
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: atomic<u32>;
@group(0) @binding(4) var<uniform> prep: Prep;
${exactMantissaWgsl(w)}
// One workgroup per group: 64 invocations stride over K, then an integer atomicMax in workgroup memory
// (max is order-independent, so the schedule cannot change the result).
var<workgroup> groupMax: atomic<i32>;

@compute @workgroup_size(64)
fn exponents(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x;
  if (lid == 0u) { atomicStore(&groupMax, -1); }
  workgroupBarrier();
  var maxE = -1;
  for (var k = lid; k < prep.K; k += 64u) {
    let ef = i32((src[g * prep.gStride + k * prep.kStride] >> 23u) & 0xffu);
    if (ef == 255) { atomicMax(&status, 1u); }
    // Field 0 (zero or subnormal, flushed) never sets the exponent.
    if (ef != 0 && ef > maxE) { maxE = ef; }
  }
  atomicMax(&groupMax, maxE);
  workgroupBarrier();
  if (lid == 0u) {
    let e = atomicLoad(&groupMax);
    exps[g] = select(e - 127, 0, e < 0);
  }
}

@compute @workgroup_size(64)
fn limbs(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = gid.x;
  if (idx >= prep.groups * prep.KW) { return; }
  let g = idx / prep.KW;
  let word = idx % prep.KW;
  let e = exps[g];
${Array.from({ length: limbs }, (_, p) => `  var w${p} = 0u;`).join('\n')}
  for (var b = 0u; b < 4u; b++) {
    let k = word * 4u + b;
    if (k >= prep.K) { break; }
    let bits = src[g * prep.gStride + k * prep.kStride];
    var m = exactMantissa(bits, e);
    // Balanced base-256 digits: the low byte read as signed, then an exact arithmetic shift.
${Array.from({ length: limbs }, (_, p) => `    let d${p} = extractBits(m, 0u, 8u);\n    w${p} = w${p} | ((bitcast<u32>(d${p}) & 0xffu) << (8u * b));\n    m = (m - d${p}) >> 8u;`).join('\n')}
  }
${Array.from({ length: limbs }, (_, p) => `  packed[(${p}u * prep.groups + g) * prep.KW + word] = w${p};`).join('\n')}
}
`
}

/** One matmul's GPU buffers, uploaded once; `submit` can run repeatedly (for benchmarks). */
export interface ExactMatmulRun {
  readonly m: number
  readonly n: number
  /** Encodes and submits the dispatch. */
  submit(): void
  /** Copies the output back (submits a copy; waits for the queue). */
  read(): Promise<Float32Array>
  destroy(): void
}

function checkGpuPrep(m: number, n: number, prep: 'gpu' | 'cpu'): void {
  // The exponent pass runs one workgroup per row of A and per column of B.
  if (prep === 'gpu' && Math.max(m, n) > MAX_WORKGROUPS) {
    throw new ExactMatmulError(`M and N must be at most ${MAX_WORKGROUPS} for GPU preprocessing; use prep 'cpu'`)
  }
}

export class ExactMatmul {
  readonly scheme: ExactScheme
  readonly dot4: boolean
  readonly block: 1 | 2
  readonly bundleId: string
  private readonly pipeline: GPUComputePipeline

  constructor(
    private readonly device: GPUDevice,
    options: ExactMatmulOptions = {},
  ) {
    this.scheme = {
      limbs: options.limbs ?? DEFAULT_EXACT_SCHEME.limbs,
      minPairOrder: options.minPairOrder ?? DEFAULT_EXACT_SCHEME.minPairOrder,
    }
    checkScheme(this.scheme)
    this.dot4 = options.dot4 ?? detectDot4()
    this.block = options.block ?? 1
    this.bundleId = exactBundleId(this.scheme)
    const module = device.createShaderModule({ code: exactMatmulWgsl(this.scheme, this.dot4, this.block) })
    this.pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } })
  }

  /**
   * Uploads A and B for repeated runs. prep 'gpu' (default) uploads the float32 bits and splits them into
   * limbs on the GPU in each `submit`; 'cpu' splits them here in TypeScript and uploads the limbs.
   */
  upload(
    a: Float32Array,
    b: Float32Array,
    m: number,
    k: number,
    n: number,
    prep: 'gpu' | 'cpu' = 'gpu',
  ): ExactMatmulRun {
    checkShape(m, k, n, a.length, b.length)
    checkGpuPrep(m, n, prep)
    if (prep === 'cpu') {
      return this.uploadPrepared(prepareA(a, m, k, this.scheme.limbs), prepareB(b, k, n, this.scheme.limbs))
    }
    const device = this.device
    const L = this.scheme.limbs
    const kWords = Math.ceil(k / 4)
    const bitsOf = (x: Float32Array) => new Uint32Array(x.buffer, x.byteOffset, x.length)
    const aSrc = this.storage(bitsOf(a))
    const bSrc = this.storage(bitsOf(b))
    const aExp = this.storage(m * 4)
    const bExp = this.storage(n * 4)
    const aPacked = this.storage(L * m * kWords * 4)
    const bPacked = this.storage(L * n * kWords * 4)
    const status = this.storage(4, GPUBufferUsage.COPY_SRC)
    const statusRead = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    const prepPipelines = this.prepPipelines()
    const passes: Array<{ pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: number }> = []
    const extra: GPUBuffer[] = [aSrc, bSrc, status, statusRead]
    for (const [src, exps, packed, groups, gStride, kStride] of [
      [aSrc, aExp, aPacked, m, k, 1],
      [bSrc, bExp, bPacked, n, 1, n],
    ] as const) {
      const params = device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
      device.queue.writeBuffer(params, 0, new Uint32Array([groups, k, kWords, gStride, kStride, 0, 0, 0]))
      extra.push(params)
      const entries = [src, exps, packed, status, params].map((buffer, binding) => ({ binding, resource: { buffer } }))
      passes.push({
        pipeline: prepPipelines.exponents,
        bindGroup: device.createBindGroup({ layout: prepPipelines.exponents.getBindGroupLayout(0), entries }),
        groups,
      })
      passes.push({
        pipeline: prepPipelines.limbs,
        bindGroup: device.createBindGroup({ layout: prepPipelines.limbs.getBindGroupLayout(0), entries }),
        groups: Math.ceil((groups * kWords) / 64),
      })
    }
    return this.makeRun(m, n, kWords, aPacked, bPacked, aExp, bExp, passes, extra, async () => {
      const encoder = device.createCommandEncoder()
      encoder.copyBufferToBuffer(status, 0, statusRead, 0, 4)
      device.queue.submit([encoder.finish()])
      await statusRead.mapAsync(GPUMapMode.READ)
      const flag = new Uint32Array(statusRead.getMappedRange().slice(0))[0]
      statusRead.unmap()
      if (flag !== 0) throw new ExactMatmulError('non-finite input')
    })
  }

  private prepCache: { exponents: GPUComputePipeline; limbs: GPUComputePipeline } | null = null

  private prepPipelines(): { exponents: GPUComputePipeline; limbs: GPUComputePipeline } {
    if (!this.prepCache) {
      const module = this.device.createShaderModule({ code: exactPrepWgsl(this.scheme.limbs) })
      // One explicit layout for both entry points: an 'auto' layout would hold only the bindings each one
      // uses, and the shared bind group would not fit either.
      const storage = (type: GPUBufferBindingType) => ({ visibility: GPUShaderStage.COMPUTE, buffer: { type } })
      const bindGroupLayout = this.device.createBindGroupLayout({
        entries: [
          { binding: 0, ...storage('read-only-storage') },
          { binding: 1, ...storage('storage') },
          { binding: 2, ...storage('storage') },
          { binding: 3, ...storage('storage') },
          { binding: 4, ...storage('uniform') },
        ],
      })
      const layout = this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] })
      const make = (entryPoint: string) => this.device.createComputePipeline({ layout, compute: { module, entryPoint } })
      this.prepCache = { exponents: make('exponents'), limbs: make('limbs') }
    }
    return this.prepCache
  }

  private storage(data: Uint32Array | Int32Array | number, usage = 0): GPUBuffer {
    const bytes = typeof data === 'number' ? data : data.byteLength
    // WebGPU rejects zero-sized bindings; every array here has at least one element (M, N, K >= 1).
    const buffer = this.device.createBuffer({
      size: Math.max(4, bytes),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | usage,
    })
    if (typeof data !== 'number') this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength)
    return buffer
  }

  /** Uploads operands already split on the CPU (`prepareA`, `prepareB`). */
  uploadPrepared(A: ExactOperand, B: ExactOperand): ExactMatmulRun {
    if (A.k !== B.k) throw new ExactMatmulError(`inner dimensions differ: ${A.k} vs ${B.k}`)
    const aBuf = this.storage(A.packed)
    const bBuf = this.storage(B.packed)
    const aExp = this.storage(A.exponents)
    const bExp = this.storage(B.exponents)
    return this.makeRun(A.groups, B.groups, A.kWords, aBuf, bBuf, aExp, bExp, [], [], async () => {})
  }

  private makeRun(
    m: number,
    n: number,
    kWords: number,
    aBuf: GPUBuffer,
    bBuf: GPUBuffer,
    aExp: GPUBuffer,
    bExp: GPUBuffer,
    prepPasses: ReadonlyArray<{ pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: number }>,
    extraBuffers: readonly GPUBuffer[],
    checkStatus: () => Promise<void>,
  ): ExactMatmulRun {
    const device = this.device
    const outBytes = m * n * 4
    const out = device.createBuffer({ size: outBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC })
    const staging = device.createBuffer({ size: outBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
    device.queue.writeBuffer(params, 0, new Uint32Array([m, n, kWords, 0]))
    const bindGroup = device.createBindGroup({
      layout: this.pipeline.getBindGroupLayout(0),
      entries: [aBuf, bBuf, aExp, bExp, out, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
    })
    const buffers = [aBuf, bBuf, aExp, bExp, out, staging, params, ...extraBuffers]
    const pipeline = this.pipeline
    const block = this.block
    return {
      m,
      n,
      submit() {
        const encoder = device.createCommandEncoder()
        // Passes run in order: the limb pass reads the exponents, the matmul the limbs.
        for (const p of prepPasses) {
          const pass = encoder.beginComputePass()
          pass.setPipeline(p.pipeline)
          pass.setBindGroup(0, p.bindGroup)
          pass.dispatchWorkgroups(p.groups)
          pass.end()
        }
        const pass = encoder.beginComputePass()
        pass.setPipeline(pipeline)
        pass.setBindGroup(0, bindGroup)
        pass.dispatchWorkgroups(Math.ceil(n / (WORKGROUP * block)), Math.ceil(m / (WORKGROUP * block)))
        pass.end()
        device.queue.submit([encoder.finish()])
      },
      async read() {
        await checkStatus()
        const encoder = device.createCommandEncoder()
        encoder.copyBufferToBuffer(out, 0, staging, 0, outBytes)
        device.queue.submit([encoder.finish()])
        await staging.mapAsync(GPUMapMode.READ)
        const bits = new Uint32Array(staging.getMappedRange().slice(0))
        staging.unmap()
        return new Float32Array(bits.buffer)
      },
      destroy() {
        for (const buffer of buffers) buffer.destroy()
      },
    }
  }

  /** C = A @ B, exactly as `matmulExactReference` computes it. */
  async run(
    a: Float32Array,
    b: Float32Array,
    m: number,
    k: number,
    n: number,
    prep: 'gpu' | 'cpu' = 'gpu',
  ): Promise<Float32Array> {
    // Typed errors first, so that no error scope is left pushed when they throw.
    checkShape(m, k, n, a.length, b.length)
    checkGpuPrep(m, n, prep)
    this.device.pushErrorScope('validation')
    const job = this.upload(a, b, m, k, n, prep)
    try {
      job.submit()
      const error = await this.device.popErrorScope()
      if (error) throw new ExactMatmulError(`WebGPU rejected the exact matmul: ${error.message}`)
      return await job.read()
    } finally {
      job.destroy()
    }
  }
}

/** One-shot convenience: compiles the kernel and runs one matmul. */
export async function matmulExact(
  device: GPUDevice,
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  options: ExactMatmulOptions = {},
): Promise<Float32Array> {
  return new ExactMatmul(device, options).run(a, b, m, k, n)
}
