import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { activateKernelBundle, EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from './config.ts'
import { isUnavailable } from './device.ts'
import { matmulExactReference } from './exactReference.ts'
import { seededFloats } from './reference.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`kernel bundle switching tests skipped: ${unavailable}`)

afterAll(async () => {
  activateKernelBundle(KERNEL_BUNDLE)
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

const M = 8
const K = 50
const N = 6
const a = seededFloats(M * K, 11)
const b = seededFloats(K * N, 12)

async function product(): Promise<Float32Array> {
  const c = tf.matMul(tf.tensor2d(a, [M, K]), tf.tensor2d(b, [K, N]))
  return (await c.data()) as Float32Array
}

const bits = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('hex')

/**
 * One Worker runs units of jobs in different modes: the job's bundle is put in place before each unit,
 * so consecutive units switch between the deterministic and the exact matmul on the same backend.
 */
describe.skipIf(unavailable !== null)('switching kernel bundles on one tfjs-webgpu backend', () => {
  it('computes with the exact matmul under the exact bundle and with the deterministic one otherwise, back and forth', async () => {
    const exact = bits(matmulExactReference(a, b, M, K, N))
    activateKernelBundle(EXACT_KERNEL_BUNDLE)
    expect(bits(await product())).toBe(exact)
    activateKernelBundle(KERNEL_BUNDLE)
    const deterministic = bits(await product())
    expect(deterministic).not.toBe(exact)
    activateKernelBundle(EXACT_KERNEL_BUNDLE)
    expect(bits(await product())).toBe(exact)
    activateKernelBundle(KERNEL_BUNDLE)
    expect(bits(await product())).toBe(deterministic)
  })
})
