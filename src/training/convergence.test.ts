import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { buildMnistPreset } from '../../coordinator/presets/mnist.ts'
import { isUnavailable } from '../kernels/device.ts'
import { setupTfjsWebgpu } from '../kernels/testing/tfjsWebgpu.ts'
import { activateKernelMode, KERNEL_MODES, trainModesInterleaved } from './convergence.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`convergence test skipped: ${unavailable}`)

afterAll(async () => {
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

/**
 * The MNIST preset as the coordinator runs it (10 inner Adam steps of 32 per unit, units averaged each
 * round), cut to ROUNDS rounds of UNITS units: about 89% held out, some minutes on SwiftShader for the
 * three modes. bench/convergence.ts trains longer and writes the curves.
 */
const ROUNDS = 4
const UNITS = 2
const HELD_OUT = 2000

describe.skipIf(unavailable !== null)('training the MNIST preset with TabTrain kernels converges as with stock tfjs-webgpu (Node, Dawn)', () => {
  it('each mode puts its own matmul kernels in place, and stock puts tfjs-webgpu\'s back', () => {
    const matmul = () => [tf.getKernel('BatchMatMul', 'webgpu')!.kernelFunc, tf.getKernel('_FusedMatMul', 'webgpu')!.kernelFunc]
    activateKernelMode('stock')
    const stock = matmul()
    activateKernelMode('deterministic')
    const deterministic = matmul()
    activateKernelMode('exact')
    const exact = matmul()
    activateKernelMode('stock')
    for (let i = 0; i < 2; i++) {
      expect(deterministic[i]).not.toBe(stock[i])
      expect(exact[i]).not.toBe(stock[i])
      expect(exact[i]).not.toBe(deterministic[i])
      expect(matmul()[i]).toBe(stock[i])
    }
  })

  it(`stock, deterministic and exact kernels reach >= 80% held out, within 1 point of stock (${ROUNDS} rounds x ${UNITS} units)`, { timeout: 600_000 }, async () => {
    const preset = await buildMnistPreset({ paid: false })
    const runs = await trainModesInterleaved(KERNEL_MODES, { preset, rounds: ROUNDS, unitsPerRound: UNITS, heldOutCount: HELD_OUT, evaluateEvery: ROUNDS })
    const stock = runs.stock!
    for (const mode of KERNEL_MODES) {
      const run = runs[mode]!
      console.log(
        `${mode}: held-out ${run.curve.map((p) => `r${p.round} loss ${p.loss.toFixed(4)} acc ${(100 * p.accuracy).toFixed(2)}%`).join(' -> ')}; ` +
          `${(run.timings.totalMs / 1000).toFixed(1)} s (${(run.timings.totalMs / stock.timings.totalMs).toFixed(2)}x stock), ` +
          `median unit ${run.timings.medianUnitMs.toFixed(0)} ms, evaluation ${(run.timings.evaluateMs / 1000).toFixed(1)} s`,
      )
    }
    // The exact bundle's matmuls round differently from stock's: its run is a different computation.
    expect(runs.exact!.finalCheckpoint).not.toBe(stock.finalCheckpoint)
    for (const mode of KERNEL_MODES) {
      const run = runs[mode]!
      expect(run.final.examples).toBe(HELD_OUT)
      // Same initial checkpoint in every mode; the loss falls, accuracy passes 80%, and lands where stock's does.
      expect(run.curve[0]!.loss).toBeCloseTo(stock.curve[0]!.loss, 3)
      expect(run.final.loss).toBeLessThan(run.curve[0]!.loss * 0.5)
      expect(run.final.accuracy).toBeGreaterThanOrEqual(0.8)
      expect(Math.abs(run.final.accuracy - stock.final.accuracy)).toBeLessThanOrEqual(0.01)
    }
  })
})
