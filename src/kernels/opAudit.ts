/**
 * Which tfjs kernels a preset unit dispatches on tfjs-backend-webgpu 4.22 (with TabTrain's matmul
 * registered, register.ts), and for each one why its result is or is not the same bits on every run of
 * one implementation, and what could still differ across implementations (drivers, vendors, browsers).
 *
 * Two tables, because tfjs has two levels: `KERNEL_AUDIT` lists the registered kernels the engine calls
 * (what `tf.getKernel` resolves; these are what a model change or a tfjs upgrade adds), and
 * `PROGRAM_AUDIT` lists the WebGPU programs those kernels run (kernels call each other's implementations
 * directly, e.g. Sum runs Transpose and Reshape without going through the registry, so only the program
 * level sees everything that reaches the GPU). opAudit.test.ts runs a preset unit with both recorders
 * on and fails when anything dispatched is missing from these tables. docs/kernels.md summarises.
 *
 * File references are to node_modules/@tensorflow/tfjs-backend-webgpu/dist/ (4.22.0).
 */
import * as tf from '@tensorflow/tfjs'
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu'

export type OpClass = 'matmul' | 'element-wise' | 'reduction' | 'data-movement'

export interface OpAuditEntry {
  class: OpClass
  /** Same inputs, same program, same implementation: same bits on every run? */
  deterministicOnOneImplementation: boolean
  /** What may differ between two conforming WebGPU implementations. */
  crossImplementationRisk: 'none' | 'low' | 'high'
  reason: string
}

/**
 * WGSL lets an implementation contract a*b+c into an fma and flush subnormals; `+ - *` are otherwise
 * correctly rounded, `/` is 2.5 ULP, `exp`/`log`/`sqrt` have ULP or absolute bounds, so two drivers may
 * give different last bits for the same element. Nothing in an element-wise program reads another
 * element, so workgroup size and dispatch shape cannot change any result.
 */
const ELEMENTWISE_NOTE = 'each output element from its own input elements only; workgroup size/grid cannot change it'

export const KERNEL_AUDIT = {
  BatchMatMul: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'replaced by TabTrain (register.ts -> matmulDeterministic.ts): fixed 8x8 tiles, fixed sequential k order, no atomics; ' +
      'across implementations fma contraction may differ (exact mode: matmulExact.ts)',
  },
  _FusedMatMul: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: 'as BatchMatMul, with bias add and relu in the same program (register.ts); linear/relu only, others go to stock type 3 (config.ts)',
  },
  Add: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason: `BinaryOpProgram ADD (binary_op_webgpu.js, binary_op_util.js 'a + b'): ${ELEMENTWISE_NOTE}; correctly rounded, only subnormal flushing may differ`,
  },
  Sub: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason: `BinaryOpProgram SUB (binary_op_util.js 'a - b'): ${ELEMENTWISE_NOTE}; correctly rounded, only subnormal flushing may differ`,
  },
  Multiply: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason: `BinaryOpProgram MUL (binary_op_util.js 'a * b'): ${ELEMENTWISE_NOTE}; correctly rounded, only subnormal flushing may differ`,
  },
  RealDiv: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: `BinaryOpProgram DIV (binary_op_util.js 'a / b'): ${ELEMENTWISE_NOTE}; WGSL allows 2.5 ULP for f32 division, so drivers differ in last bits`,
  },
  Relu: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: `UnaryOpProgram RELU (unary_op_util.js select(a, 0.0, a < 0.0)): ${ELEMENTWISE_NOTE}; a select, exact`,
  },
  Step: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: `UnaryOpProgram STEP (unary_op_util.js select(stepAlpha, 1.0, a > 0.0)): relu's gradient mask; ${ELEMENTWISE_NOTE}; exact`,
  },
  Neg: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: `UnaryOpProgram NEG ('-a') or negImplCPU when the input is CPU-resident and small (kernels/Neg.js): sign flip, exact either way`,
  },
  Square: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason: `UnaryOpProgram SQUARE ('a * a'): ${ELEMENTWISE_NOTE}; correctly rounded, only subnormal flushing may differ (Adam second moment)`,
  },
  Sqrt: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: `UnaryOpProgram SQRT (unary_op_util.js sqrt(a)): ${ELEMENTWISE_NOTE}; WGSL sqrt is inherited from 1/inverseSqrt (2.5 ULP), not correctly rounded (Adam denominator)`,
  },
  Exp: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: `UnaryOpProgram EXP (unary_op_util.js exp(a)): ${ELEMENTWISE_NOTE}; WGSL exp error bound 3 + 2|x| ULP, vendor libraries differ (softmax cross-entropy)`,
  },
  Log: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: `UnaryOpProgram LOG (unary_op_util.js log(a), NaN below 0): ${ELEMENTWISE_NOTE}; WGSL log is 3 ULP / 2^-21 absolute near 1 (log-sum-exp)`,
  },
  Cast: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason:
      'kernels/Cast.js: a cast without encoding loss (float32->float32, int32/bool->float32) is identity() on the same buffer, ' +
      'no program (none ran in the preset); lossy casts (to int32/bool) would run castImplCPU or int()/NotEqual programs',
  },
  OneHot: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'OneHotProgram (onehot_webgpu.js): select(offValue, onValue, index == coords.y) per element, exact',
  },
  ZerosLike: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'kernels/ZerosLike.js -> fill(): FillProgram writes a constant (fill_webgpu.js), exact',
  },
  Identity: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'kernels/Identity.js: increments the ref count of the same buffer, no program',
  },
  Reshape: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'kernels/Reshape.js: same buffer under a new shape, no program',
  },
  Concat: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason:
      'kernels/Concat.js: ConcatProgram (concat_webgpu.js), or concatImplCPU for small CPU-resident inputs; joins the step losses and Δ of a unit for one read back (src/training/trainUnit.ts); copies, exact',
  },
  Pack: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'kernels/Pack.js: expandDims (reshape), then for more than one input concat (ConcatProgram, or concatImplCPU for small CPU-resident inputs); stacks the per-step scalar losses; copies, exact',
  },
  Max: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason:
      'Replaced (register.ts -> fixedOrderReduce.ts, f32 arithmetic): one invocation per output folds the reduced elements with ' +
      'WGSL max in row-major order; max is exact and order-independent (only NaN handling is up to the implementation); no atomics',
  },
  Sum: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason:
      'Replaced (register.ts -> fixedOrderReduce.ts, f32 arithmetic): the reduced axes transposed innermost, then one invocation ' +
      'per output adds them sequentially in row-major order, at every size: no tree chosen from adapter limits (stock ' +
      'ReduceProgram picks a 512-wide one from 32768 elements when the adapter allows), no atomics. Across implementations: ' +
      'subnormal flushing and a compiler\'s freedom to reassociate float adds (exact mode: soft float)',
  },
  // The convolutional preset (coordinator/presets/mnistConv.ts) and uploaded models with Conv2D / MaxPooling2D.
  Conv2D: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'Conv2D_impl.js conv2DImpl: Conv2DMMProgram (conv2d_mm_webgpu.js, a tiled implicit-GEMM, each output summed over its own ' +
      'h*w*inChannels in a fixed tile order, no atomics), or for outputs of at most 8 (16 on Intel gen 12+) 32x32 tiles im2col + ' +
      'the stock matmul pinned to program type 3 (config.ts); the path and Conv2DMMProgram\'s sequentialAccessByThreads depend on ' +
      'the adapter vendor/architecture, which are part of the device class, so one class always runs one program',
  },
  Conv2DBackpropFilter: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'Conv2DDerFilterProgram (conv_backprop_webgpu.js): one invocation per filter element loops over batch, output rows and ' +
      'columns in index order, workgroup 64 fixed; no atomics, so the order depends on the shape alone; long float sums, fma may differ',
  },
  Conv2DBackpropInput: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'Conv2DDerInputMMProgram (conv_backprop_mm_webgpu.js, tiled, fixed k order) or Conv2DDerInputProgram when ' +
      'WEBGPU_USE_NAIVE_CONV2D_DEBUG is set: one output per invocation, no atomics (only a conv layer above another trainable layer runs it)',
  },
  MaxPool: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'Pool2DProgram max (pool_webgpu.js): each output is the max of its own window; max is exact and order-free',
  },
  MaxPoolGrad: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason:
      'Pool2DProgram with positions, then MaxPool2DBackpropProgram (max_pool_backprop_webgpu.js): each input element sums dy over the ' +
      'windows whose argmax it is, in a fixed loop order; for non-overlapping windows (stride = pool size) that is one value, exact',
  },
} as const satisfies Record<string, OpAuditEntry>

export type AuditedKernel = keyof typeof KERNEL_AUDIT

/** WebGPU programs, by constructor name (`Object` is a plain-object program: TabTrain's own kernels). */
export const PROGRAM_AUDIT = {
  Object: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'TabTrain programs passed to runWebGPUProgram as object literals: matmulDeterministic (register.ts tfjsMatMulProgram) and ' +
      'the fixed-order reductions (fixedOrderReduce.ts)',
  },
  BinaryOpProgram: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'binary_op_webgpu.js: workgroup 128 (vec4 or scalar by shape) or 256 with the rank-1 operand staged in workgroup memory ' +
      '(a copy, no arithmetic across elements); each output from its own a and b',
  },
  UnaryOpProgram: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: 'unary_op_webgpu.js: workgroup 128, one output per invocation from its own input',
  },
  ReduceProgram: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason:
      'reduce_webgpu.js: fixed strided-then-halving tree, no atomics; workgroup 64/256 by reduce size, 512 (adapter-dependent) ' +
      'only from REDUCE_ADAPTER_DEPENDENT_SIZE elements',
  },
  TransposeProgram: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'transpose_webgpu.js: each output reads one input element, exact',
  },
  TransposeSharedProgram: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'transpose_shared_webgpu.js: 16x16 tile through workgroup memory, copies only, exact',
  },
  ConcatProgram: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'concat_webgpu.js: each output copies one input element (Pack of the per-step losses), exact',
  },
  FillProgram: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'fill_webgpu.js: writes one constant, exact',
  },
  OneHotProgram: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'onehot_webgpu.js: a select per element, exact',
  },
  Conv2DMMProgram: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: 'conv2d_mm_webgpu.js: implicit GEMM, each output accumulated over its fixed tiles of h*w*inChannels in order, no atomics',
  },
  Im2ColProgram: {
    class: 'data-movement',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'im2col_webgpu.js: copies input patches into columns, exact (small convolutions only, then MatMulPackedProgram)',
  },
  MatMulPackedProgram: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason:
      'matmul_packed_webgpu.js: stock tiled matmul with a fixed k order, reached only by conv2d\'s im2col path (matmuls proper go to ' +
      'matmulDeterministic); program type pinned to 3 so split-K and its float atomics never run',
  },
  Conv2DDerFilterProgram: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: 'conv_backprop_webgpu.js: one invocation per filter element, sequential loops over batch and output positions, no atomics',
  },
  Conv2DDerInputMMProgram: {
    class: 'matmul',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'high',
    reason: 'conv_backprop_mm_webgpu.js: tiled, fixed k order per output, no atomics',
  },
  Pool2DProgram: {
    class: 'reduction',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'none',
    reason: 'pool_webgpu.js: each output the max of its own window (or its argmax position for MaxPoolGrad); exact',
  },
  MaxPool2DBackpropProgram: {
    class: 'element-wise',
    deterministicOnOneImplementation: true,
    crossImplementationRisk: 'low',
    reason: 'max_pool_backprop_webgpu.js: each dx element sums its windows\' dy in a fixed loop order; no atomics',
  },
} as const satisfies Record<string, OpAuditEntry>

/**
 * From this many reduced elements on, ReduceProgram uses a 512-wide workgroup when the adapter allows it
 * and 256 when not (reduce_webgpu.js `inSize >= 32768 && maxComputeWorkgroupSizeX >= 512`), so the
 * summation tree, and the bits, depend on the adapter. Below it the tree is a function of the shape alone.
 */
export const REDUCE_ADAPTER_DEPENDENT_SIZE = 32768

export interface ProgramRecord {
  count: number
  /** Workgroup sizes seen, as "XxYxZ". */
  workgroupSizes: Set<string>
  shaderKeys: Set<string>
}

export interface KernelRecorder {
  /** Registered kernels the engine called, with call counts. */
  kernels: Map<string, number>
  /** WebGPU programs run, by constructor name. */
  programs: Map<string, ProgramRecord>
  /** For ReduceProgram runs: reduced length (inSize) and workgroup size X of each. */
  reductions: Array<{ shaderKey: string; reduceSize: number; workgroupSizeX: number }>
  /** Puts every kernel and the backend's runWebGPUProgram back as they were. */
  stop(): void
}

/**
 * Records what reaches tfjs-webgpu: wraps every kernel registered for 'webgpu' (so call this AFTER any
 * other registration, such as registerDeterministicKernels(), and stop() BEFORE restoring those) and the
 * backend's runWebGPUProgram. Test-only.
 */
export function recordKernels(backend: WebGPUBackend): KernelRecorder {
  const kernels = new Map<string, number>()
  const programs = new Map<string, ProgramRecord>()
  const reductions: KernelRecorder['reductions'] = []
  const originals = tf.getKernelsForBackend('webgpu')
  for (const config of originals) {
    const name = config.kernelName
    tf.unregisterKernel(name, 'webgpu')
    tf.registerKernel({
      ...config,
      kernelFunc: (args) => {
        kernels.set(name, (kernels.get(name) ?? 0) + 1)
        return config.kernelFunc(args)
      },
    })
  }
  const b = backend as unknown as { runWebGPUProgram: WebGPUBackend['runWebGPUProgram'] }
  const own = Object.prototype.hasOwnProperty.call(b, 'runWebGPUProgram')
  const previous = b.runWebGPUProgram
  b.runWebGPUProgram = function (this: WebGPUBackend, program: WebGPUProgram, ...rest: unknown[]) {
    const name = (program as object).constructor.name
    let entry = programs.get(name)
    if (!entry) {
      entry = { count: 0, workgroupSizes: new Set(), shaderKeys: new Set() }
      programs.set(name, entry)
    }
    entry.count++
    entry.workgroupSizes.add(program.workgroupSize.join('x'))
    entry.shaderKeys.add(program.shaderKey ?? '')
    if (name === 'ReduceProgram') {
      const inputShape = (program as unknown as { inputShape: number[] }).inputShape
      reductions.push({ shaderKey: program.shaderKey ?? '', reduceSize: inputShape[1]!, workgroupSizeX: program.workgroupSize[0] })
    }
    return (previous as (...a: unknown[]) => tf.TensorInfo).call(this, program, ...rest)
  } as WebGPUBackend['runWebGPUProgram']
  return {
    kernels,
    programs,
    reductions,
    stop() {
      for (const config of originals) {
        tf.unregisterKernel(config.kernelName, 'webgpu')
        tf.registerKernel(config)
      }
      if (own) b.runWebGPUProgram = previous
      else delete (b as { runWebGPUProgram?: unknown }).runWebGPUProgram
    },
  }
}

/**
 * Exact mode (registerExact.ts) replaces every float32 arithmetic kernel the preset runs and refuses any
 * other on float32 values, except kernels that only relabel, copy or write constants
 * (`EXACT_PASSTHROUGH_KERNELS` there). These stock programs only copy or write constants (1.0 and 0.0 for
 * OneHot, 0.0 for ZerosLike), so their output bits are their input bits on every implementation; the
 * exact-mode audit test fails on any other program a unit dispatches.
 */
export const EXACT_MODE_STOCK_PROGRAMS = ['TransposeProgram', 'TransposeSharedProgram', 'FillProgram', 'OneHotProgram', 'ConcatProgram'] as const
