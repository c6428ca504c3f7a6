import * as tf from '@tensorflow/tfjs'
import { afterAll, describe, expect, it } from 'vitest'
import { buildMnistPreset, type PresetBlobs } from '../../coordinator/presets/mnist.ts'
import { jobSpecHash, parseJobSpec, type JobSpec, type WorkUnit } from '../protocol/index.ts'
import { trainPresetWithKernels } from '../training/convergence.ts'
import type { Evaluation } from '../training/evaluate.ts'
import { createUnitRunner } from '../worker/unitRunner.ts'
import { isUnavailable } from './device.ts'
import { registerDeterministicKernels } from './register.ts'
import { registerExactKernels, type ExactKernels } from './registerExact.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`exact-mode unit tests skipped: ${unavailable}`)

let restoreActive: (() => void) | null = null

afterAll(async () => {
  restoreActive?.()
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

type Mode = 'deterministic' | 'exact'

/** Registers one mode's matmul kernels (the other mode's first restored). */
function useMode(mode: Mode): ExactKernels | null {
  restoreActive?.()
  if (mode === 'exact') {
    const k = registerExactKernels()
    restoreActive = () => k.restore()
    return k
  }
  const k = registerDeterministicKernels()
  restoreActive = () => k.restore()
  return null
}

interface SmallJob {
  preset: PresetBlobs
  spec: JobSpec
  blobs: Map<string, Uint8Array>
}

/** The MNIST preset with fewer inner steps: the same ops, less SwiftShader time. */
let presetOnce: Promise<PresetBlobs> | null = null

async function smallMnistJob(innerSteps: number): Promise<SmallJob> {
  presetOnce ??= buildMnistPreset({ paid: false })
  const preset = await presetOnce
  const spec = parseJobSpec({ ...preset.spec, training: { ...preset.spec.training, innerSteps } })
  return { preset, spec, blobs: new Map(preset.blobs) }
}

function runnerFor(job: SmallJob) {
  return createUnitRunner({
    async get(hash) {
      const bytes = job.blobs.get(hash)
      if (!bytes) throw new Error(`test blob source has no ${hash}`)
      return bytes
    },
  })
}

describe.skipIf(unavailable !== null)('exact-mode matmuls in a training unit (Node, Dawn)', () => {
  it('the same unit twice in exact mode gives the same output hash', async () => {
    const job = await smallMnistJob(2)
    const unit: WorkUnit = { jobId: jobSpecHash(job.spec), round: 0, unit: 1, inputHash: job.spec.model.initialWeights }
    useMode('deterministic')
    let t0 = performance.now()
    const detHash = (await runnerFor(job).run(job.spec, unit)).outputHash
    const detFirstMs = performance.now() - t0
    t0 = performance.now()
    expect((await runnerFor(job).run(job.spec, unit)).outputHash).toBe(detHash)
    const detMs = performance.now() - t0
    const exact = useMode('exact')!
    t0 = performance.now()
    const first = (await runnerFor(job).run(job.spec, unit)).outputHash
    const t1 = performance.now()
    const second = (await runnerFor(job).run(job.spec, unit)).outputHash
    console.log(
      `exact-mode unit: ${first} (${(t1 - t0).toFixed(0)} ms, then ${(performance.now() - t1).toFixed(0)} ms); ` +
        `deterministic kernels: ${detHash} (${detFirstMs.toFixed(0)} ms with the preset's setup, then ${detMs.toFixed(0)} ms): ${first === detHash ? 'the same hash' : 'a different hash'}; ` +
        `calls ${JSON.stringify(exact.counts)}`,
    )
    expect(second).toBe(first)
    expect(exact.counts.BatchMatMul.exact).toBeGreaterThan(0)
    expect(exact.counts._FusedMatMul.exact).toBeGreaterThan(0)
    expect(exact.counts.BatchMatMul.stock + exact.counts._FusedMatMul.stock).toBe(0)
  })

  it('trains in exact mode as with the deterministic kernels (3 rounds x 2 units)', async () => {
    // The training path of src/training/convergence.ts (real unit runner, the coordinator's averaging),
    // with the bundles as config.ts puts them in place; this test's own registrations taken out first.
    restoreActive?.()
    restoreActive = null
    const { preset } = await smallMnistJob(3)
    const results: Partial<Record<Mode, Evaluation[]>> = {}
    for (const mode of ['deterministic', 'exact'] as const) {
      const run = await trainPresetWithKernels({ mode, preset, rounds: 3, unitsPerRound: 2, innerSteps: 3, heldOutCount: 400 })
      results[mode] = run.curve.map((p) => ({ loss: p.loss, accuracy: p.accuracy, examples: run.heldOutCount }))
      console.log(
        `${mode}: held-out ${results[mode]!.map((e) => `loss ${e.loss.toFixed(4)} acc ${(100 * e.accuracy).toFixed(1)}%`).join(' -> ')} ` +
          `(${run.timings.totalMs.toFixed(0)} ms)`,
      )
    }
    const det = results.deterministic!
    const exact = results.exact!
    // Same initial checkpoint; the loss falls in both modes, and lands in the same place.
    expect(exact[exact.length - 1]!.loss).toBeLessThan(exact[0]!.loss * 0.8)
    expect(det[det.length - 1]!.loss).toBeLessThan(det[0]!.loss * 0.8)
    expect(Math.abs(exact[exact.length - 1]!.accuracy - det[det.length - 1]!.accuracy)).toBeLessThanOrEqual(0.02)
  })
})
