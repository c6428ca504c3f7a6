import * as tf from '@tensorflow/tfjs'
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu'
import { afterAll, describe, expect, it } from 'vitest'
import { isUnavailable } from './device.ts'
import { GpuComputationError, watchDeviceErrors } from './gpuErrors.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`GPU error watch tests skipped: ${unavailable}`)

afterAll(async () => {
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

/** A program tfjs runs without complaint although its WGSL does not compile. */
function brokenProgram(): WebGPUProgram {
  return {
    variableNames: ['A'],
    outputShape: [4],
    dispatchLayout: { x: [0] },
    dispatch: [1, 1, 1],
    workgroupSize: [64, 1, 1],
    size: true,
    shaderKey: 'test/broken',
    getUserCode: () => 'fn main(index: i32) { let x: f32 = bitcast<f32>(0xff800000u); setOutputAtIndex(index, x); }',
  }
}

describe.skipIf(unavailable !== null)('GPU errors during a computation (Node, Dawn)', () => {
  it('turns a shader that does not compile, which tfjs runs silently, into GpuComputationError', async () => {
    if (isUnavailable(tfjs)) return
    // Replaces the test helper's own watch for this file: the error below is meant to happen.
    const watch = watchDeviceErrors(tfjs.backend.device)
    const x = tf.tensor1d([1, 2, 3, 4])
    const run = () =>
      watch.guard(async () => {
        const out = tfjs.backend.runWebGPUProgram(brokenProgram(), [x], 'float32')
        const values = await tf.engine().makeTensorFromTensorInfo(out).data()
        return Array.from(values)
      })
    const error = await run().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(GpuComputationError)
    expect((error as GpuComputationError).message).toMatch(/cannot be represented as 'f32'/)
    // Again: tfjs caches the invalid pipeline, and every later use of it is an error too.
    await expect(run()).rejects.toThrow(GpuComputationError)
    // A computation without errors goes through.
    await expect(watch.guard(async () => Array.from(await tf.add(x, x).data()))).resolves.toEqual([2, 4, 6, 8])
  })
})
