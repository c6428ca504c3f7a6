import * as tf from '@tensorflow/tfjs'
import { sha256Hex } from '../protocol/hash.ts'
import { matmulCoreWgsl, MATMUL_DETERMINISTIC_VERSION, type MatMulVariant } from './matmulDeterministic.ts'
import { DETERMINISTIC_REDUCE_KERNELS, registerDeterministicKernels } from './register.ts'
import { FLOAT_REDUCE_VERSION, floatReduceWgsl } from './fixedOrderReduce.ts'
import { EXACT_KERNEL_BUNDLE, registerExactKernels } from './registerExact.ts'

/**
 * Kernels a unit runs with on WebGPU: TabTrain's deterministic matmul (matmulDeterministic.ts) in place
 * of tfjs-webgpu's BatchMatMul and _FusedMatMul, fixed-order Sum and Max (fixedOrderReduce.ts), and stock
 * tfjs-webgpu 4.22 for every other op (element-wise: one output from its own inputs), with
 * one choice pinned for the cases that still reach the stock matmul: its split-K program sums partial
 * products with float atomics in whatever order the GPU schedules them (8 distinct hashes in 10 runs of
 * an [8x4096]@[4096x64] matmul); program type 3 is the plain tiled matmul, whose order its tiles fix.
 */
export const WEBGPU_MATMUL_PROGRAM = 3

/** Every shader variant the deterministic matmul registers: any change to one changes the bundle id. */
const MATMUL_VARIANTS: MatMulVariant[] = [false, true].flatMap((transposeA) =>
  [false, true].flatMap((transposeB) =>
    [false, true].flatMap((bias) => (['linear', 'relu'] as const).map((activation) => ({ transposeA, transposeB, bias, activation }))),
  ),
)

/** First 8 bytes of SHA-256 over the WGSL of every registered program (matmul variants, then reductions). */
export const DETERMINISTIC_BUNDLE_DIGEST = sha256Hex(
  new TextEncoder().encode([...MATMUL_VARIANTS.map(matmulCoreWgsl), ...DETERMINISTIC_REDUCE_KERNELS.map(floatReduceWgsl)].join('\n')),
).slice(2, 18)

/**
 * The kernel bundle id: part of every job spec (so a job names the kernels its units must run with)
 * and of every device class. It carries the digest of the kernels' source, so editing a kernel changes
 * it and no unit computed with the old kernels can be confused with one computed with the new.
 */
export const KERNEL_BUNDLE = `tabtrain-det-v${MATMUL_DETERMINISTIC_VERSION + FLOAT_REDUCE_VERSION}-${DETERMINISTIC_BUNDLE_DIGEST}+tfjs-webgpu-4.22.0-p${WEBGPU_MATMUL_PROGRAM}`

/** Pins the stock matmul program; used alone by tests that compare against stock tfjs-webgpu. */
export function configureTfjsWebgpu(): void {
  tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', WEBGPU_MATMUL_PROGRAM)
}

/** A job names kernels this build does not have: its units cannot be computed here under its name. */
export class UnsupportedKernelBundleError extends Error {
  override name = 'UnsupportedKernelBundleError'
  constructor(readonly bundle: string) {
    super(`this build has no kernel bundle "${bundle}" (it has: ${Object.keys(KERNEL_BUNDLES).join(', ')})`)
  }
}

/**
 * Exact mode: the matmuls summed exactly in integers (matmulExact.ts), every other float32 operation of a
 * preset in integer soft float (exactElementwise.ts, fixedOrderReduce.ts), all registered by registerExact.ts, so a
 * unit gives the same bits on every conforming WebGPU implementation (docs/kernels.md). A job chooses it by
 * naming this bundle in its spec.
 */
export { EXACT_KERNEL_BUNDLE }

/** Every bundle this build can run, by id, with what puts it in place (returning how to take it out). */
const KERNEL_BUNDLES: Record<string, () => { restore(): void }> = {
  [KERNEL_BUNDLE]: () => {
    configureTfjsWebgpu()
    return registerDeterministicKernels()
  },
  [EXACT_KERNEL_BUNDLE]: () => {
    configureTfjsWebgpu()
    return registerExactKernels()
  },
}

/** The bundle in place now: a worker running units of jobs in different modes switches between them. */
let current: { bundle: string; restore(): void } | null = null

export function knownKernelBundles(): string[] {
  return Object.keys(KERNEL_BUNDLES)
}

/**
 * Puts a kernel bundle in place on tfjs's WebGPU backend (the default one unless a job names another).
 * Call after `@tensorflow/tfjs-backend-webgpu` is imported (its import registers the stock kernels that
 * this replaces). Throws UnsupportedKernelBundleError for a bundle this build does not have.
 */
export function activateKernelBundle(bundle: string = KERNEL_BUNDLE): void {
  const activate = KERNEL_BUNDLES[bundle]
  if (!activate) throw new UnsupportedKernelBundleError(bundle)
  if (current?.bundle === bundle) return
  current?.restore()
  current = null
  const handle = activate()
  current = { bundle, restore: () => handle.restore() }
}

/**
 * Takes the bundle in place out, leaving stock tfjs-webgpu kernels (with the matmul program pinned by
 * `configureTfjsWebgpu`): what the convergence comparison trains with as its "stock" baseline.
 */
export function deactivateKernelBundles(): void {
  current?.restore()
  current = null
}
