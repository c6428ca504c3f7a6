import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import type { Hash } from '../protocol/index.ts'
import { acquireNodeGpu, isUnavailable } from './device.ts'
import { runMatMulDeterministic, type MatMulVariant } from './matmulDeterministic.ts'
import { registerDeterministicKernels, type DeterministicKernels } from './register.ts'
import { seededFloats } from './reference.ts'
import { presetUnit, type PresetUnit } from './testing/presetUnit.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const standalone = isUnavailable(tfjs) ? tfjs : await acquireNodeGpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : isUnavailable(standalone) ? standalone.unavailable : null
if (unavailable) console.warn(`unit determinism tests skipped: ${unavailable}`)

let kernels: DeterministicKernels | null = null
const stockBatchMatMul = isUnavailable(tfjs) ? undefined : tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc

afterAll(async () => {
  kernels?.restore()
  if (!isUnavailable(standalone)) await standalone.release()
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

function bits(x: Float32Array | ArrayLike<number>): Buffer {
  const f = x instanceof Float32Array ? x : Float32Array.from(x)
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength)
}

/** The MNIST preset with 2 inner steps instead of 10: the same ops, a fifth of the SwiftShader time. */
const smallMnistUnit = () => presetUnit({ innerSteps: 2 })

async function runUnit(job: PresetUnit): Promise<Hash> {
  const runner = job.runner()
  const before = tf.memory().numTensors
  const out = await runner.run(job.spec, job.unit)
  expect(out.losses.every(Number.isFinite)).toBe(true)
  // The runner keeps its model; only that model's weights may stay behind.
  expect(tf.memory().numTensors - before).toBeLessThanOrEqual(4)
  return out.outputHash
}

describe.skipIf(unavailable !== null)('deterministic kernels inside tfjs-webgpu (Node, Dawn)', () => {
  let job: PresetUnit
  let stockHash: Hash

  it('runs the small MNIST unit on stock kernels (for comparison)', async () => {
    job = await smallMnistUnit()
    const t0 = performance.now()
    stockHash = await runUnit(job)
    console.log(`stock tfjs-webgpu unit: ${stockHash} (${(performance.now() - t0).toFixed(0)} ms)`)
  })

  it('registered BatchMatMul and _FusedMatMul give the standalone kernel bits', async () => {
    kernels = registerDeterministicKernels()
    expect(registerDeterministicKernels()).toBe(kernels)
    const device = (standalone as Exclude<typeof standalone, { unavailable: string }>).device
    const cases: Array<{ m: number; k: number; n: number; v: MatMulVariant }> = [
      { m: 32, k: 784, n: 64, v: { transposeA: false, transposeB: false, bias: true, activation: 'relu' } },
      { m: 784, k: 32, n: 64, v: { transposeA: true, transposeB: false, bias: false, activation: 'linear' } },
      { m: 33, k: 37, n: 29, v: { transposeA: false, transposeB: true, bias: true, activation: 'linear' } },
    ]
    for (const { m, k, n, v } of cases) {
      const a = seededFloats(m * k, m + k)
      const b = seededFloats(k * n, k + n)
      const bias = seededFloats(n, n)
      const expected = await runMatMulDeterministic(device, {
        a,
        b,
        ...(v.bias ? { bias } : {}),
        dims: { batch: 1, batchA: 1, batchB: 1, m, n, k },
        variant: v,
      })
      const ta = tf.tensor2d(a, v.transposeA ? [k, m] : [m, k])
      const tb = tf.tensor2d(b, v.transposeB ? [n, k] : [k, n])
      const tbias = tf.tensor1d(bias)
      const c = v.bias
        ? tf.fused.matMul({ a: ta, b: tb, transposeA: v.transposeA, transposeB: v.transposeB, bias: tbias, activation: v.activation })
        : tf.matMul(ta, tb, v.transposeA, v.transposeB)
      const got = await c.data()
      tf.dispose([ta, tb, tbias, c])
      expect(bits(got as Float32Array).equals(bits(expected))).toBe(true)
    }
    // A rank-3 product with batch 1 broadcast, as tfjs-layers' Dense applies to rank-3 inputs.
    const a3 = tf.tensor3d(seededFloats(2 * 5 * 7, 3), [2, 5, 7])
    const b2 = tf.tensor3d(seededFloats(7 * 3, 4), [1, 7, 3])
    const c3 = tf.matMul(a3, b2)
    expect(c3.shape).toEqual([2, 5, 3])
    const expected3 = await runMatMulDeterministic(device, {
      a: seededFloats(2 * 5 * 7, 3),
      b: seededFloats(7 * 3, 4),
      dims: { batch: 2, batchA: 2, batchB: 1, m: 5, n: 3, k: 7 },
      variant: { transposeA: false, transposeB: false, bias: false, activation: 'linear' },
    })
    expect(bits((await c3.data()) as Float32Array).equals(bits(expected3))).toBe(true)
    tf.dispose([a3, b2, c3])
    expect(kernels.counts.BatchMatMul.deterministic).toBeGreaterThan(0)
    expect(kernels.counts._FusedMatMul.deterministic).toBeGreaterThan(0)
  })

  it('runs the same unit twice to the same output hash', async () => {
    kernels ??= registerDeterministicKernels()
    const before = structuredClone(kernels.counts)
    const t0 = performance.now()
    const first = await runUnit(job)
    const t1 = performance.now()
    const second = await runUnit(job)
    console.log(
      `deterministic kernels unit: ${first} (${(t1 - t0).toFixed(0)} ms, then ${(performance.now() - t1).toFixed(0)} ms); ` +
        `stock gave ${stockHash}: ${first === stockHash ? 'the same hash' : 'a different hash'}`,
    )
    console.log(`kernel calls: before ${JSON.stringify(before)}, after ${JSON.stringify(kernels.counts)}`)
    expect(second).toBe(first)
    // The unit's matmuls all went through the deterministic kernel, none to stock.
    expect(kernels.counts.BatchMatMul.stock).toBe(before.BatchMatMul.stock)
    expect(kernels.counts._FusedMatMul.stock).toBe(before._FusedMatMul.stock)
    expect(kernels.counts._FusedMatMul.deterministic).toBeGreaterThan(before._FusedMatMul.deterministic)
    expect(kernels.counts.BatchMatMul.deterministic).toBeGreaterThan(before.BatchMatMul.deterministic)
  })

  it('hands what it does not cover to stock, and restore() puts the stock kernels back', async () => {
    kernels ??= registerDeterministicKernels()
    const before = kernels.counts._FusedMatMul.stock
    const a = tf.tensor2d(seededFloats(6, 1), [2, 3])
    const b = tf.tensor2d(seededFloats(12, 2), [3, 4])
    const fused = tf.fused.matMul({ a, b, activation: 'sigmoid' })
    const composed = tf.sigmoid(tf.matMul(a, b))
    const [got, want] = await Promise.all([fused.data(), composed.data()])
    tf.dispose([a, b, fused, composed])
    expect(kernels.counts._FusedMatMul.stock).toBe(before + 1)
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 6)
    kernels.restore()
    kernels = null
    expect(tf.getKernel('BatchMatMul', 'webgpu')?.kernelFunc).toBe(stockBatchMatMul)
  })
})
