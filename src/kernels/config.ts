import * as tf from '@tensorflow/tfjs'

/**
 * Kernels a unit runs with. Until TabTrain's own deterministic WGSL kernels land here, units run on
 * stock tfjs-webgpu 4.22 with one choice pinned: its split-K matmul sums partial products with float
 * atomics in whatever order the GPU schedules them, so the same unit gave different hashes run to run
 * (8 distinct hashes in 10 runs of an [8x4096]@[4096x64] matmul). Program type 3 is the plain tiled
 * matmul, whose reduction order is fixed by its tiles.
 */
export const WEBGPU_MATMUL_PROGRAM = 3
export const KERNEL_BUNDLE = `tfjs-webgpu-4.22.0/matmul-program-${WEBGPU_MATMUL_PROGRAM}`

export function configureTfjsWebgpu(): void {
  tf.env().set('WEBGPU_MATMUL_PROGRAM_TYPE', WEBGPU_MATMUL_PROGRAM)
}
