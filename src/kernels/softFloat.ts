/**
 * Float32 arithmetic done in integers on the GPU ("soft float"), so that it gives the same bits on every
 * conforming WebGPU implementation.
 *
 * Why: WGSL lets an implementation flush subnormals (or not), contract `a*b+c` into an fma, reassociate,
 * and compute `/`, `sqrt`, `exp` and `log` to ULP bounds rather than exactly. Integer arithmetic (wrapping
 * u32/i32, shifts, comparisons, `countLeadingZeros`) is exact everywhere. Every function here takes and
 * returns float32 *bit patterns* as u32, and never lets a float instruction touch them.
 *
 * The arithmetic, which `softFloatReference.ts` models on the CPU bit for bit:
 * - Inputs are read canonically: a subnormal or a zero of either sign is +0; every NaN is 0x7fc00000.
 * - `sf_add`, `sf_sub`, `sf_mul`, `sf_div`, `sf_sqrt` are IEEE 754 round-to-nearest-even on those inputs,
 *   then the result is written canonically: a result below 2^-126 in magnitude after rounding (what IEEE
 *   would make subnormal) is +0, zero is +0, NaN is 0x7fc00000. This is "flush to zero" with one sign of
 *   zero, the same rule the exact matmul's epilogue uses (registerExact.ts), so a value's bits never depend
 *   on whether a device flushes or on how it signs a zero.
 * - `sf_exp` and `sf_log` are fixed sequences of the operations above (range reduction, then a polynomial
 *   evaluated by Horner's rule), so every device computes the same function; they are not correctly rounded
 *   (see `softFloatReference.ts` for the accuracy against float64).
 *
 * Float constants are written as bit patterns (`f32Hex`), because WGSL leaves the rounding of a float literal
 * that float32 cannot represent to the implementation.
 */
import { MAX_WORKGROUPS_PER_DIMENSION, readBuffer, runProgram, storageBuffer, type KernelProgram } from './program.ts'

/** The float32 bits of `x` (rounded to nearest by Math.fround), as a WGSL u32 literal. */
export function f32Hex(x: number): string {
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0]!
  return `0x${bits.toString(16).padStart(8, '0')}u`
}

/** The canonical quiet NaN every soft-float operation returns for a NaN result. */
export const CANONICAL_NAN_BITS = 0x7fc00000

/**
 * Coefficients of exp(r) = 1 + r + r²/2! + … + r⁷/7! on |r| ≤ ln2/2: the truncation error, r⁸/8! ≤ 5.2e-9
 * relative, is under a tenth of a float32 ULP, so the Taylor terms need no fitted constants.
 */
export const EXP_TAYLOR_DEGREE = 7

/**
 * log(1+f) = 2·atanh(s), s = f/(2+f), with f ∈ [√½−1, √2−1] so |s| ≤ 0.1716: the series up to s⁹/9 leaves
 * a relative error under s¹⁰/11 ≈ 2e-9, again under a tenth of a ULP.
 */
export const LOG_ATANH_LAST_POWER = 9

/**
 * ln 2 split for Cody–Waite range reduction: the high part has 9 significant bits, so n·LN2_HI is exact for
 * every |n| ≤ 255 (all float32 exponents), and LN2_LO = ln2 − LN2_HI to float32.
 */
export const LN2_HI = 0.693359375
export const LN2_LO = Math.fround(Math.LN2 - LN2_HI)

/** exp overflows float32 past this argument and flushes to +0 below the second (e^-87.34 = 2^-126). */
export const EXP_OVERFLOW_ABOVE = 88.8
export const EXP_FLUSH_BELOW = -88

/** The inverse factorials for `sf_exp`, highest degree first (Horner order). */
export function expCoefficients(): number[] {
  const out: number[] = []
  let factorial = 1
  for (let k = 1; k <= EXP_TAYLOR_DEGREE; k++) factorial *= k
  for (let k = EXP_TAYLOR_DEGREE; k >= 2; k--) {
    out.push(1 / factorial)
    factorial /= k
  }
  return out
}

/** 1/(2k+1) for the atanh series of `sf_log`, highest power first (Horner order in s²), down to 1/3. */
export function logCoefficients(): number[] {
  const out: number[] = []
  for (let p = LOG_ATANH_LAST_POWER; p >= 3; p -= 2) out.push(1 / p)
  return out
}

/** √2 as float32 bits' mantissa field: a mantissa above it is halved so that m ∈ [√½, √2). */
export const SQRT2_MANTISSA_FIELD = 0x3504f3

function horner(coefficients: number[], variable: string, accumulator: string): string {
  const [first, ...rest] = coefficients
  return [`var ${accumulator} = ${f32Hex(first!)};`, ...rest.map((c) => `${accumulator} = sf_add(sf_mul(${accumulator}, ${variable}), ${f32Hex(c)});`)].join(
    '\n  ',
  )
}

/**
 * The WGSL library: `sf_canon`, `sf_add`, `sf_sub`, `sf_mul`, `sf_div`, `sf_sqrt`, `sf_exp`, `sf_log`,
 * `sf_neg`, `sf_relu`, `sf_greater`, `sf_order` (a u32 key that sorts like the float).
 */
export function softFloatWgsl(): string {
  return /* wgsl */ `
const SF_NAN: u32 = ${CANONICAL_NAN_BITS}u;
const SF_INF: u32 = 0x7f800000u;
const SF_SIGN: u32 = 0x80000000u;
const SF_ONE: u32 = ${f32Hex(1)};

fn sf_is_nan(x: u32) -> bool { return (x & 0x7fffffffu) > SF_INF; }

// The canonical reading of a value: subnormals and zeros are +0, NaNs are SF_NAN.
fn sf_canon(x: u32) -> u32 {
  if ((x & SF_INF) == 0u) { return 0u; }
  if (sf_is_nan(x)) { return SF_NAN; }
  return x;
}

// Rounds (sign, e, m) to float32 bits, nearest-even. The value is (m / 2^31) * 2^(e - 127) with any lost low
// bits OR-ed into bit 0 of m (sticky); m has its leading one at bit 31, or m == 0. A result that IEEE would
// round to a subnormal is +0 (flush); past the largest finite it is infinite.
fn sf_round_pack(sign: u32, e_in: i32, m_in: u32) -> u32 {
  var e = e_in;
  var m = m_in;
  if (m == 0u) { return 0u; }
  if (e <= 0) {
    // Below the normal range: round on the subnormal grid, as IEEE does, to see whether it reaches 2^-126.
    let shift = u32(1 - e);
    if (shift >= 32u) {
      m = 1u;
    } else {
      m = (m >> shift) | select(0u, 1u, (m << (32u - shift)) != 0u);
    }
    e = 0;
  }
  let rest = m & 0xffu;
  var q = m >> 8u;
  if (rest > 0x80u || (rest == 0x80u && (q & 1u) == 1u)) { q = q + 1u; }
  if (e == 0) {
    if (q >= 0x800000u) { return sign | 0x800000u; }
    return 0u;
  }
  if (q >= 0x1000000u) {
    q = q >> 1u;
    e = e + 1;
  }
  if (e >= 255) { return sign | SF_INF; }
  return sign | (u32(e) << 23u) | (q & 0x7fffffu);
}

// x >> d with the lost bits OR-ed into bit 0.
fn sf_shift_right_jam(x: u32, d: u32) -> u32 {
  if (d == 0u) { return x; }
  if (d >= 32u) { return select(0u, 1u, x != 0u); }
  return (x >> d) | select(0u, 1u, (x << (32u - d)) != 0u);
}

fn sf_add(a_in: u32, b_in: u32) -> u32 {
  let a = sf_canon(a_in);
  let b = sf_canon(b_in);
  if (sf_is_nan(a) || sf_is_nan(b)) { return SF_NAN; }
  let a_inf = (a & 0x7fffffffu) == SF_INF;
  let b_inf = (b & 0x7fffffffu) == SF_INF;
  if (a_inf && b_inf) { return select(SF_NAN, a, a == b); }
  if (a_inf) { return a; }
  if (b_inf) { return b; }
  if (a == 0u) { return b; }
  if (b == 0u) { return a; }
  // x is the larger magnitude.
  var x = a;
  var y = b;
  if ((b & 0x7fffffffu) > (a & 0x7fffffffu)) {
    x = b;
    y = a;
  }
  let ex = i32((x >> 23u) & 0xffu);
  let ey = i32((y >> 23u) & 0xffu);
  // Significands at bits 30..7: bit 31 takes a carry, bits 6..0 keep guard, round and sticky.
  let mx = ((x & 0x7fffffu) | 0x800000u) << 7u;
  let my = sf_shift_right_jam(((y & 0x7fffffu) | 0x800000u) << 7u, u32(ex - ey));
  let sign = x & SF_SIGN;
  if ((x ^ y) & SF_SIGN) == 0u {
    let sum = mx + my;
    if (sum >= 0x80000000u) { return sf_round_pack(sign, ex + 1, sum); }
    return sf_round_pack(sign, ex, sum << 1u);
  }
  let diff = mx - my;
  if (diff == 0u) { return 0u; }
  let lz = countLeadingZeros(diff);
  return sf_round_pack(sign, ex + 1 - i32(lz), diff << lz);
}

fn sf_neg(a: u32) -> u32 {
  let c = sf_canon(a);
  if (c == 0u || sf_is_nan(c)) { return c; }
  return c ^ SF_SIGN;
}

fn sf_sub(a: u32, b: u32) -> u32 { return sf_add(a, sf_neg(b)); }

// The 64-bit product of two u32, as (hi, lo).
fn sf_mul_wide(x: u32, y: u32) -> vec2<u32> {
  let x0 = x & 0xffffu;
  let x1 = x >> 16u;
  let y0 = y & 0xffffu;
  let y1 = y >> 16u;
  let p00 = x0 * y0;
  let p01 = x0 * y1;
  let p10 = x1 * y0;
  let p11 = x1 * y1;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return vec2<u32>(p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u), (p00 & 0xffffu) | (mid << 16u));
}

fn sf_mul(a_in: u32, b_in: u32) -> u32 {
  let a = sf_canon(a_in);
  let b = sf_canon(b_in);
  if (sf_is_nan(a) || sf_is_nan(b)) { return SF_NAN; }
  let sign = (a ^ b) & SF_SIGN;
  let a_inf = (a & 0x7fffffffu) == SF_INF;
  let b_inf = (b & 0x7fffffffu) == SF_INF;
  if (a_inf || b_inf) {
    if (a == 0u || b == 0u) { return SF_NAN; }
    return sign | SF_INF;
  }
  if (a == 0u || b == 0u) { return 0u; }
  let ea = i32((a >> 23u) & 0xffu);
  let eb = i32((b >> 23u) & 0xffu);
  let p = sf_mul_wide(((a & 0x7fffffu) | 0x800000u) << 8u, ((b & 0x7fffffu) | 0x800000u) << 8u);
  if (p.x >= 0x80000000u) {
    return sf_round_pack(sign, ea + eb - 126, p.x | select(0u, 1u, p.y != 0u));
  }
  return sf_round_pack(sign, ea + eb - 127, (p.x << 1u) | (p.y >> 31u) | select(0u, 1u, (p.y << 1u) != 0u));
}

fn sf_div(a_in: u32, b_in: u32) -> u32 {
  let a = sf_canon(a_in);
  let b = sf_canon(b_in);
  if (sf_is_nan(a) || sf_is_nan(b)) { return SF_NAN; }
  let sign = (a ^ b) & SF_SIGN;
  let a_inf = (a & 0x7fffffffu) == SF_INF;
  let b_inf = (b & 0x7fffffffu) == SF_INF;
  if (a_inf) { return select(sign | SF_INF, SF_NAN, b_inf); }
  if (b_inf) { return 0u; }
  if (b == 0u) { return select(sign | SF_INF, SF_NAN, a == 0u); }
  if (a == 0u) { return 0u; }
  var ea = i32((a >> 23u) & 0xffu);
  let eb = i32((b >> 23u) & 0xffu);
  var r = (a & 0x7fffffu) | 0x800000u;
  let d = (b & 0x7fffffu) | 0x800000u;
  // Quotient in [1, 2): a smaller significand is doubled and the exponent lowered.
  if (r < d) {
    r = r << 1u;
    ea = ea - 1;
  }
  // 26 quotient bits by restoring division: 24 kept, a guard bit, a round bit; the remainder is the sticky.
  var q = 0u;
  for (var i = 0u; i < 26u; i = i + 1u) {
    q = q << 1u;
    if (r >= d) {
      r = r - d;
      q = q | 1u;
    }
    r = r << 1u;
  }
  return sf_round_pack(sign, ea - eb + 127, (q << 6u) | select(0u, 1u, r != 0u));
}

fn sf_sqrt(a_in: u32) -> u32 {
  let a = sf_canon(a_in);
  if (sf_is_nan(a)) { return SF_NAN; }
  if (a == 0u) { return 0u; }
  if ((a & SF_SIGN) != 0u) { return SF_NAN; }
  if (a == SF_INF) { return SF_INF; }
  // a = sig * 2^(E - 23), sig in [2^23, 2^24). Make the exponent even, then take the integer square root
  // of the 52-bit radicand R = sig' * 2^27 one result bit at a time (26 bits: 24 kept, guard, round).
  let big_e = i32((a >> 23u) & 0xffu) - 127;
  var sig = (a & 0x7fffffu) | 0x800000u;
  var even_e = big_e;
  if ((big_e & 1) != 0) {
    sig = sig << 1u;
    even_e = big_e - 1;
  }
  let hi = sig >> 5u;
  let lo = sig << 27u;
  var rem = 0u;
  var root = 0u;
  for (var i = 25i; i >= 0i; i = i - 1i) {
    let shift = u32(2 * i);
    var pair = 0u;
    if (shift >= 32u) { pair = (hi >> (shift - 32u)) & 3u; } else { pair = (lo >> shift) & 3u; }
    rem = (rem << 2u) | pair;
    let trial = (root << 2u) | 1u;
    root = root << 1u;
    if (rem >= trial) {
      rem = rem - trial;
      root = root | 1u;
    }
  }
  return sf_round_pack(0u, even_e / 2 + 127, (root << 6u) | select(0u, 1u, rem != 0u));
}

// Round half away from zero of a canonical finite value with |x| < 2^23, as an i32.
fn sf_round_to_int(x: u32) -> i32 {
  let e = i32((x >> 23u) & 0xffu);
  if (e < 126) { return 0; }
  let m = (x & 0x7fffffu) | 0x800000u;
  let shift = u32(150 - e);
  var n = 0i;
  if (shift == 0u) { n = i32(m); } else { n = i32((m + (1u << (shift - 1u))) >> shift); }
  return select(n, -n, (x & SF_SIGN) != 0u);
}

// The float32 bits of a small integer n (|n| < 2^24): exact.
fn sf_from_int(n: i32) -> u32 {
  if (n == 0) { return 0u; }
  let sign = select(0u, SF_SIGN, n < 0);
  let mag = u32(abs(n));
  let lz = countLeadingZeros(mag);
  return sf_round_pack(sign, 127 + 31 - i32(lz), mag << lz);
}

fn sf_exp(a_in: u32) -> u32 {
  let a = sf_canon(a_in);
  if (sf_is_nan(a)) { return SF_NAN; }
  if (a == SF_INF) { return SF_INF; }
  if (a == (SF_SIGN | SF_INF)) { return 0u; }
  // Past the float32 range: by comparison on the order keys (exact).
  if (sf_order(a) > sf_order(${f32Hex(EXP_OVERFLOW_ABOVE)})) { return SF_INF; }
  if (sf_order(a) < sf_order(${f32Hex(EXP_FLUSH_BELOW)})) { return 0u; }
  // exp(a) = 2^n * exp(r), n = round(a / ln2), r = a - n*LN2_HI - n*LN2_LO, |r| <= ln2/2 (plus rounding).
  let n = sf_round_to_int(sf_mul(a, ${f32Hex(Math.LOG2E)}));
  let nf = sf_from_int(n);
  let r = sf_sub(sf_sub(a, sf_mul(nf, ${f32Hex(LN2_HI)})), sf_mul(nf, ${f32Hex(LN2_LO)}));
  ${horner(expCoefficients(), 'r', 'p')}
  // 1 + r + r^2 * p(r)
  let y = sf_add(SF_ONE, sf_add(r, sf_mul(sf_mul(r, r), p)));
  // Scale by 2^n in the exponent field: exact while the result stays normal.
  let e = i32((y >> 23u) & 0xffu) + n;
  if (e <= 0) { return 0u; }
  if (e >= 255) { return SF_INF; }
  return (y & 0x807fffffu) | (u32(e) << 23u);
}

fn sf_log(a_in: u32) -> u32 {
  let a = sf_canon(a_in);
  if (sf_is_nan(a)) { return SF_NAN; }
  if (a == 0u) { return SF_SIGN | SF_INF; }
  if ((a & SF_SIGN) != 0u) { return SF_NAN; }
  if (a == SF_INF) { return SF_INF; }
  // a = m * 2^k with m in [sqrt(1/2), sqrt(2)), so f = m - 1 is exact (Sterbenz) and small.
  var k = i32((a >> 23u) & 0xffu) - 127;
  var m = (a & 0x7fffffu) | SF_ONE;
  if ((a & 0x7fffffu) > ${SQRT2_MANTISSA_FIELD}u) {
    m = (a & 0x7fffffu) | (126u << 23u);
    k = k + 1;
  }
  let f = sf_sub(m, SF_ONE);
  let s = sf_div(f, sf_add(${f32Hex(2)}, f));
  let z = sf_mul(s, s);
  ${horner(logCoefficients(), 'z', 'p')}
  // log(1 + f) = 2s + 2 s z p(z)
  let two_s = sf_add(s, s);
  let log1p = sf_add(two_s, sf_mul(sf_mul(two_s, z), p));
  if (k == 0) { return log1p; }
  let kf = sf_from_int(k);
  return sf_add(sf_mul(kf, ${f32Hex(LN2_HI)}), sf_add(sf_mul(kf, ${f32Hex(LN2_LO)}), log1p));
}

// A key that orders like the canonical float: negative values reversed below the positives.
fn sf_order(a: u32) -> u32 {
  if ((a & SF_SIGN) != 0u) { return ~a; }
  return a | SF_SIGN;
}

fn sf_greater(a_in: u32, b_in: u32) -> bool {
  return sf_order(sf_canon(a_in)) > sf_order(sf_canon(b_in));
}

fn sf_max(a_in: u32, b_in: u32) -> u32 {
  let a = sf_canon(a_in);
  let b = sf_canon(b_in);
  if (sf_is_nan(a) || sf_is_nan(b)) { return SF_NAN; }
  return select(b, a, sf_order(a) >= sf_order(b));
}

fn sf_relu(a_in: u32) -> u32 {
  let a = sf_canon(a_in);
  if (sf_is_nan(a)) { return SF_NAN; }
  return select(a, 0u, (a & SF_SIGN) != 0u);
}
`
}

/** The operations of the library, by the name a standalone program or a test calls them. */
export const SOFT_FLOAT_BINARY = { add: 'sf_add', sub: 'sf_sub', mul: 'sf_mul', div: 'sf_div', max: 'sf_max' } as const
export const SOFT_FLOAT_UNARY = { sqrt: 'sf_sqrt', exp: 'sf_exp', log: 'sf_log', neg: 'sf_neg', relu: 'sf_relu' } as const
export type SoftFloatOp = keyof typeof SOFT_FLOAT_BINARY | keyof typeof SOFT_FLOAT_UNARY

const STANDALONE_WG = 64

/** A standalone program applying one operation element-wise to bit patterns: out[i] = op(a[i], b[i]). */
export function softFloatProgram(op: SoftFloatOp, count: number): KernelProgram {
  const binary = op in SOFT_FLOAT_BINARY
  const fn = binary ? SOFT_FLOAT_BINARY[op as keyof typeof SOFT_FLOAT_BINARY] : SOFT_FLOAT_UNARY[op as keyof typeof SOFT_FLOAT_UNARY]
  const groups = Math.ceil(count / STANDALONE_WG)
  const dx = Math.min(groups, MAX_WORKGROUPS_PER_DIMENSION)
  return {
    key: `softFloat/${op}`,
    wgsl: /* wgsl */ `${softFloatWgsl()}
@group(0) @binding(0) var<storage, read> A: array<u32>;
@group(0) @binding(1) var<storage, read> B: array<u32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;
@compute @workgroup_size(${STANDALONE_WG})
fn _start(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let i = id.y * groups.x * ${STANDALONE_WG}u + id.x;
  if (i >= arrayLength(&OUT)) { return; }
  // Unary ops still read B once: layout 'auto' drops unused bindings, and the bind group always has three.
  OUT[i] = ${binary ? `${fn}(A[i], B[i])` : `${fn}(A[i] + 0u * B[0])`};
}
`,
    workgroupSize: [STANDALONE_WG, 1, 1],
    dispatch: [dx, Math.ceil(groups / dx), 1],
  }
}

/** Runs one soft-float operation on a bare device over bit patterns (tests and benchmarks). */
export async function runSoftFloat(device: GPUDevice, op: SoftFloatOp, a: Uint32Array, b: Uint32Array = new Uint32Array(1)): Promise<Uint32Array> {
  const buffers = [storageBuffer(device, a), storageBuffer(device, b), storageBuffer(device, a.byteLength)]
  try {
    await runProgram(device, softFloatProgram(op, a.length), buffers)
    const bytes = await readBuffer(device, buffers[2]!, a.byteLength)
    return new Uint32Array(bytes.buffer, bytes.byteOffset, a.length)
  } finally {
    for (const buffer of buffers) buffer.destroy()
  }
}
