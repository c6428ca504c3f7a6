/**
 * Exact mode's element-wise kernels on tfjs's WebGPU backend: every float32 arithmetic op a preset runs
 * outside the matmuls, computed with the soft-float library (softFloat.ts), so each output has the same bits
 * on every conforming WebGPU implementation. The CPU model of each is beside it (`model`), from
 * softFloatReference.ts.
 *
 * Why every one, even Add: WGSL's `+` is correctly rounded, but an implementation may flush subnormal
 * operands and results (or not) and sign a flushed zero either way, and Relu/Step compare a subnormal with
 * 0 differently on a flushing device. Soft float reads and writes every value canonically (subnormal and
 * zero as +0), so those choices disappear.
 *
 * Broadcasting and index arithmetic are tfjs's own (`getAByOutputIndex`): integer work, exact everywhere.
 */
import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu'
import { flatDispatch } from './tfjsKernels.ts'
import { softFloatWgsl } from './softFloat.ts'
import { f32Bits, sfAdd, sfDiv, sfExp, sfLog, sfMul, sfNeg, sfRelu, sfSqrt, sfSub } from './softFloatReference.ts'

/** Version of the element-wise programs; in the exact bundle id with the digest of their WGSL. */
export const EXACT_ELEMENTWISE_VERSION = 1

/** Workgroup width: any value gives the same bits (one output per invocation); 64 is the portable default. */
const WORKGROUP = 64

export interface ExactBinaryOp {
  kind: 'binary'
  /** The WGSL expression of bit patterns `a` and `b`. */
  wgsl: string
  model(a: number, b: number): number
}

export interface ExactUnaryOp {
  kind: 'unary'
  wgsl: string
  model(a: number, attrs: Record<string, unknown>): number
  /** Attributes passed as the f32 bits of one i32 uniform each, read in WGSL as `uniforms.<name>`. */
  uniforms?: readonly string[]
}

export type ExactElementwiseOp = ExactBinaryOp | ExactUnaryOp

const stepAlphaOf = (attrs: Record<string, unknown>) => Number(attrs.alpha ?? 0)

/** The tfjs kernels exact mode replaces with an element-wise soft-float program, by tfjs kernel name. */
export const EXACT_ELEMENTWISE_OPS = {
  Add: { kind: 'binary', wgsl: 'sf_add(a, b)', model: sfAdd },
  Sub: { kind: 'binary', wgsl: 'sf_sub(a, b)', model: sfSub },
  Multiply: { kind: 'binary', wgsl: 'sf_mul(a, b)', model: sfMul },
  RealDiv: { kind: 'binary', wgsl: 'sf_div(a, b)', model: sfDiv },
  Square: { kind: 'unary', wgsl: 'sf_mul(a, a)', model: (a) => sfMul(a, a) },
  Sqrt: { kind: 'unary', wgsl: 'sf_sqrt(a)', model: sfSqrt },
  Exp: { kind: 'unary', wgsl: 'sf_exp(a)', model: sfExp },
  Log: { kind: 'unary', wgsl: 'sf_log(a)', model: sfLog },
  Neg: { kind: 'unary', wgsl: 'sf_neg(a)', model: sfNeg },
  Relu: { kind: 'unary', wgsl: 'sf_relu(a)', model: sfRelu },
  // tfjs's Step: 1 for x > 0, alpha otherwise, NaN for NaN.
  Step: {
    kind: 'unary',
    wgsl: 'select(select(sf_canon(bitcast<u32>(uniforms.alphaBits)), SF_ONE, sf_greater(a, 0u)), SF_NAN, sf_is_nan(sf_canon(a)))',
    uniforms: ['alphaBits'],
    model: (a, attrs) => {
      const c = sfRelu(a)
      return Number.isNaN(c) ? NaN : c > 0 ? 1 : sfAdd(stepAlphaOf(attrs), 0)
    },
  },
} as const satisfies Record<string, ExactElementwiseOp>

export type ExactElementwiseKernel = keyof typeof EXACT_ELEMENTWISE_OPS

/** The user code of one op's program (inside tfjs's preamble, which declares A, B, result and uniforms). */
export function exactElementwiseWgsl(name: ExactElementwiseKernel): string {
  const op: ExactElementwiseOp = EXACT_ELEMENTWISE_OPS[name]
  const read =
    op.kind === 'binary'
      ? 'let a = bitcast<u32>(getAByOutputIndex(index));\n    let b = bitcast<u32>(getBByOutputIndex(index));'
      : 'let a = bitcast<u32>(getAByOutputIndex(index));'
  return /* wgsl */ `${softFloatWgsl()}
fn main(index: i32) {
  if (index < uniforms.size) {
    ${read}
    setOutputAtIndex(index, bitcast<f32>(${op.wgsl}));
  }
}
`
}

/** Runs `name` on float32 inputs with tfjs's broadcasting; the output stays on the GPU. */
export function runExactElementwise(
  backend: WebGPUBackend,
  name: ExactElementwiseKernel,
  inputs: readonly tf.TensorInfo[],
  attrs: Record<string, unknown> = {},
): tf.TensorInfo {
  const op: ExactElementwiseOp = EXACT_ELEMENTWISE_OPS[name]
  const outputShape = op.kind === 'binary' ? tf.backend_util.assertAndGetBroadcastShape(inputs[0]!.shape, inputs[1]!.shape) : inputs[0]!.shape
  const uniformNames = op.kind === 'unary' ? (op.uniforms ?? []) : []
  const program: WebGPUProgram = {
    variableNames: op.kind === 'binary' ? ['A', 'B'] : ['A'],
    outputShape,
    ...flatDispatch(outputShape, WORKGROUP),
    workgroupSize: [WORKGROUP, 1, 1],
    size: true,
    ...(uniformNames.length > 0 ? { uniforms: uniformNames.map((u) => `${u} : i32,`).join(' ') } : {}),
    shaderKey: `exactElementwise/v${EXACT_ELEMENTWISE_VERSION}/${name}`,
    getUserCode: () => exactElementwiseWgsl(name),
  }
  // The attribute's float32 bits, carried in an i32 uniform so no float conversion touches them.
  const uniformData = uniformNames.map(() => ({ type: 'int32', data: [f32Bits(stepAlphaOf(attrs)) | 0] }))
  return backend.runWebGPUProgram(program, [...inputs], 'float32', uniformData)
}

/** The CPU model of `runExactElementwise` for inputs of one shape (tests): bit for bit. */
export function exactElementwiseModel(name: ExactElementwiseKernel, a: Float32Array, b?: Float32Array, attrs: Record<string, unknown> = {}): Float32Array {
  const op: ExactElementwiseOp = EXACT_ELEMENTWISE_OPS[name]
  const out = new Float32Array(a.length)
  for (let i = 0; i < a.length; i++) {
    out[i] = op.kind === 'binary' ? op.model(a[i]!, b![b!.length === 1 ? 0 : i]!) : op.model(a[i]!, attrs)
  }
  return out
}
