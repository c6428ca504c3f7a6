import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { activateKernelBundle, deactivateKernelBundles, EXACT_KERNEL_BUNDLE } from './config.ts'
import { isUnavailable } from './device.ts'
import { registerExactCpuKernels } from './exactCpu.ts'
import { seededFloats } from './reference.ts'
import { presetUnit } from './testing/presetUnit.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

/**
 * The hash of one exact-mode preset unit (2 inner steps, round 0, unit 1, from the initial checkpoint). Exact
 * mode promises these bits on every implementation, so the hash is pinned: the CPU implementation must give
 * it on any machine, and WebGPU where an adapter exists. It changes only with the exact arithmetic (the
 * bundle id), the preset, or the training code.
 */
const EXACT_UNIT_HASH = '0x2b8fc9bd18dc51e0642500b83569a6f18ca031a56a388ac8776783d157d5d29c'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`exact mode on WebGPU vs CPU: the WebGPU half is skipped: ${unavailable}`)

afterAll(async () => {
  deactivateKernelBundles()
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

async function exactUnit(): Promise<{ run: () => Promise<string> }> {
  const { spec, unit, runner } = await presetUnit({ kernelBundle: EXACT_KERNEL_BUNDLE })
  const fresh = runner()
  return { run: async () => (await fresh.run(spec, unit)).outputHash }
}

describe('exact mode is one arithmetic: the same unit hash on the CPU as on WebGPU', () => {
  it('computes an exact-mode unit on the CPU backend to the pinned hash (no GPU needed)', async () => {
    const previous = tf.getBackend()
    await tf.setBackend('cpu')
    const cpu = registerExactCpuKernels()
    try {
      const t0 = performance.now()
      const hash = await (await exactUnit()).run()
      console.log(`exact-mode unit on the CPU: ${hash} (${(performance.now() - t0).toFixed(0)} ms)`)
      expect(hash).toBe(EXACT_UNIT_HASH)
      // And its kernels, not tfjs's: with tfjs's own CPU kernels the same unit has other bits.
      cpu.restore()
      expect(await (await exactUnit()).run()).not.toBe(EXACT_UNIT_HASH)
    } finally {
      cpu.restore()
      if (previous) await tf.setBackend(previous)
    }
  })

  it.skipIf(unavailable !== null)('computes the same unit on WebGPU in exact mode to the same hash', async () => {
    await tf.setBackend('webgpu')
    activateKernelBundle(EXACT_KERNEL_BUNDLE)
    const hash = await (await exactUnit()).run()
    expect(hash).toBe(EXACT_UNIT_HASH)
  })

  it('broadcasts element-wise ops as tfjs does (checked against tfjs on plain values)', async () => {
    const previous = tf.getBackend()
    await tf.setBackend('cpu')
    let cpu = registerExactCpuKernels()
    try {
      // Small integers: every exact operation on them is exact, so tfjs's own arithmetic is the reference.
      const a = tf.tensor(Array.from(seededFloats(2 * 3 * 4, 1), (v) => Math.round(v * 8)), [2, 3, 4])
      for (const shape of [[4], [3, 1], [1], [2, 1, 4], []]) {
        const b = tf.tensor(Array.from(seededFloats(Math.max(1, shape.reduce((p, d) => p * d, 1)), 2), (v) => Math.round(v * 8) + 9), shape)
        const got = await tf.add(a, b).data()
        cpu.restore()
        const want = await tf.add(a, b).data()
        cpu = registerExactCpuKernels()
        expect(Array.from(got), `b of shape [${shape.join(', ')}]`).toEqual(Array.from(want))
      }
    } finally {
      cpu.restore()
      if (previous) await tf.setBackend(previous)
    }
  })
})
