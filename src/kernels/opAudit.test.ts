import * as tf from '@tensorflow/tfjs'
// The stock reduction program itself (a plain class; constructing it and reading its WGSL needs no GPU).
import { ReduceProgram } from '@tensorflow/tfjs-backend-webgpu/dist/reduce_webgpu.js'
import { afterAll, describe, expect, it } from 'vitest'
import { isUnavailable } from './device.ts'
import {
  EXACT_MODE_STOCK_PROGRAMS,
  KERNEL_AUDIT,
  PROGRAM_AUDIT,
  recordKernels,
  REDUCE_ADAPTER_DEPENDENT_SIZE,
  type KernelRecorder,
} from './opAudit.ts'
import { registerDeterministicKernels } from './register.ts'
import { EXACT_KERNELS, EXACT_PASSTHROUGH_KERNELS, registerExactKernels } from './registerExact.ts'
import { buildPreset } from '../../coordinator/presets/index.ts'
import { jobSpecHash, parseJobSpec, type WorkUnit } from '../protocol/index.ts'
import { mapBlobSource } from '../worker/blobSource.ts'
import { createUnitRunner } from '../worker/unitRunner.ts'
import { presetUnit } from './testing/presetUnit.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`op audit tests skipped: ${unavailable}`)

afterAll(async () => {
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

describe('op audit table', () => {
  it('gives every entry a class, a verdict and a reason', () => {
    for (const [name, entry] of [...Object.entries(KERNEL_AUDIT), ...Object.entries(PROGRAM_AUDIT)]) {
      expect(['matmul', 'element-wise', 'reduction', 'data-movement'], name).toContain(entry.class)
      expect(entry.reason.length, name).toBeGreaterThan(20)
    }
  })
})

describe("tfjs-webgpu's ReduceProgram: the summation tree depends on the adapter only from 32768 elements", () => {
  const program = (inSize: number, type: 'sum' | 'max', maxComputeWorkgroupSizeX: number) =>
    new ReduceProgram({ windowSize: inSize, inSize, batchSize: 64, outSize: 1 }, type, maxComputeWorkgroupSizeX)
  // 256 is WebGPU's guaranteed minimum for maxComputeWorkgroupSizeX; 1024 is common on discrete GPUs.
  const limits = [256, 1024]

  it('gives the same workgroup and the same WGSL on every adapter below REDUCE_ADAPTER_DEPENDENT_SIZE', () => {
    for (const inSize of [10, 32, 4095, 4096, REDUCE_ADAPTER_DEPENDENT_SIZE - 1]) {
      for (const type of ['sum', 'max'] as const) {
        const [low, high] = limits.map((limit) => program(inSize, type, limit))
        expect(high!.workgroupSize, `${type} ${inSize}`).toEqual(low!.workgroupSize)
        expect(high!.getUserCode(), `${type} ${inSize}`).toBe(low!.getUserCode())
        expect(low!.getUserCode()).not.toMatch(/atomic/)
      }
    }
    // The preset's sizes (10 classes, batch 32) reduce in 64-wide workgroups.
    expect(program(32, 'sum', 256).workgroupSize).toEqual([64, 1, 1])
  })

  it('changes the tree with the adapter from REDUCE_ADAPTER_DEPENDENT_SIZE on (what a replacement would have to fix)', () => {
    const [low, high] = limits.map((limit) => program(REDUCE_ADAPTER_DEPENDENT_SIZE, 'sum', limit))
    expect(low!.workgroupSize).toEqual([256, 1, 1])
    expect(high!.workgroupSize).toEqual([512, 1, 1])
    expect(high!.getUserCode()).not.toBe(low!.getUserCode())
  })
})

async function twoStepPresetUnit() {
  const { spec, unit, runner } = await presetUnit()
  return { spec, unit, runner: runner() }
}

describe.skipIf(unavailable !== null)('op audit: what the MNIST preset unit dispatches on tfjs-webgpu (Node, Dawn)', () => {
  let recorded: KernelRecorder

  it('runs a 2-step preset unit with the deterministic matmul and records kernels and programs', async () => {
    if (isUnavailable(tfjs)) return
    const { spec, unit, runner } = await twoStepPresetUnit()
    const matmul = registerDeterministicKernels()
    const wasActive = matmul.counts.BatchMatMul.deterministic + matmul.counts._FusedMatMul.deterministic
    recorded = recordKernels(tfjs.backend)
    const t0 = performance.now()
    try {
      const out = await runner.run(spec, unit)
      expect(out.losses.every(Number.isFinite)).toBe(true)
    } finally {
      recorded.stop()
      // Leave the registry as found only if this test put the matmul in place.
      if (wasActive === 0) matmul.restore()
    }
    console.log(
      `preset unit (${(performance.now() - t0).toFixed(0)} ms) kernels: ${JSON.stringify(Object.fromEntries(recorded.kernels))}; ` +
        `programs: ${JSON.stringify([...recorded.programs].map(([n, p]) => `${n} x${p.count} [${[...p.workgroupSizes].join(',')}] ${[...p.shaderKeys].join(',')}`))}`,
    )
    expect(recorded.kernels.size).toBeGreaterThan(0)
  })

  it('dispatches only audited kernels (a tfjs upgrade or model change that adds one fails here)', () => {
    const unaudited = [...recorded.kernels.keys()].filter((k) => !(k in KERNEL_AUDIT))
    expect(unaudited).toEqual([])
    // The matmuls went to TabTrain's program, which the program table knows as a plain object.
    expect(recorded.kernels.get('_FusedMatMul')).toBeGreaterThan(0)
    expect(recorded.programs.has('Object')).toBe(true)
  })

  it('runs only audited WebGPU programs', () => {
    const unaudited = [...recorded.programs.keys()].filter((p) => !(p in PROGRAM_AUDIT))
    expect(unaudited).toEqual([])
    // Stock matmul programs (and their split-K atomics) never run.
    expect([...recorded.programs.keys()].some((p) => /MatMul/i.test(p))).toBe(false)
  })

  it('sums and maxes in the fixed-order programs, never in the stock ReduceProgram whose tree depends on the adapter', () => {
    expect(recorded.programs.has('ReduceProgram')).toBe(false)
    expect(recorded.reductions).toEqual([])
    const own = [...(recorded.programs.get('Object')?.shaderKeys ?? [])]
    expect(own.filter((k) => k.startsWith('floatReduce/')).sort()).toEqual(['floatReduce/v1/Max', 'floatReduce/v1/Sum'])
    void tf
  })
})

describe.skipIf(unavailable !== null)('exact-mode audit: every float32 computation of a preset unit is soft float or integer', () => {
  it('runs only exact kernels and pass-through kernels, and only exact or copying programs', async () => {
    if (isUnavailable(tfjs)) return
    const { spec, unit, runner } = await twoStepPresetUnit()
    const exact = registerExactKernels()
    const recorded = recordKernels(tfjs.backend)
    try {
      const out = await runner.run(spec, unit)
      expect(out.losses.every(Number.isFinite)).toBe(true)
    } finally {
      recorded.stop()
      exact.restore()
    }
    const allowedKernels = new Set<string>([...EXACT_KERNELS, ...EXACT_PASSTHROUGH_KERNELS])
    expect([...recorded.kernels.keys()].filter((k) => !allowedKernels.has(k))).toEqual([])
    // Float32 arithmetic all went to the exact programs: a stock call would be a float32 op on int32 only.
    const floatOps = ['BatchMatMul', '_FusedMatMul', 'Add', 'Multiply', 'RealDiv', 'Exp', 'Log', 'Sqrt', 'Sum'] as const
    for (const k of floatOps) expect(exact.counts[k].exact, k).toBeGreaterThan(0)
    for (const k of EXACT_KERNELS) expect(exact.counts[k].stock, k).toBe(0)
    const allowedPrograms = new Set<string>(EXACT_MODE_STOCK_PROGRAMS)
    const strays = [...recorded.programs].filter(([name, p]) => !allowedPrograms.has(name) && !(name === 'Object' && [...p.shaderKeys].every((k) => k.startsWith('exact'))))
    expect(strays.map(([name, p]) => `${name} ${[...p.shaderKeys].join(',')}`)).toEqual([])
    console.log(`exact-mode unit: kernels ${JSON.stringify(Object.fromEntries(recorded.kernels))}; programs ${JSON.stringify([...recorded.programs].map(([n, p]) => `${n} x${p.count} ${[...p.shaderKeys].join(',')}`))}`)
  })
})

describe.skipIf(unavailable !== null)('op audit: the convolutional preset (Conv2D, MaxPool) on the default bundle (Node, Dawn)', () => {
  it('dispatches only audited kernels and programs, and gives the same update hash on two runs', async () => {
    if (isUnavailable(tfjs)) return
    // Batch 8 keeps it short on SwiftShader; the convolution still takes Conv2DMMProgram (176 32x32 tiles, over the im2col threshold).
    const preset = await buildPreset('mnist-cnn', { kernelBundle: 'default', training: { innerSteps: 2, batchSize: 8 } })
    const spec = parseJobSpec(preset.spec)
    const unit: WorkUnit = { jobId: jobSpecHash(spec), round: 0, unit: 1, inputHash: spec.model.initialWeights }
    const matmul = registerDeterministicKernels()
    const recorded = recordKernels(tfjs.backend)
    const hashes: string[] = []
    try {
      // A fresh runner each time: the second run rebuilds the model, so nothing carries over but the kernels.
      for (let run = 0; run < 2; run++) hashes.push((await createUnitRunner(mapBlobSource(preset.blobs, 'cnn preset')).run(spec, unit)).outputHash)
    } finally {
      recorded.stop()
      matmul.restore()
    }
    console.log(
      `cnn preset unit kernels: ${JSON.stringify(Object.fromEntries(recorded.kernels))}; programs: ` +
        JSON.stringify([...recorded.programs].map(([n, p]) => `${n} x${p.count} [${[...p.workgroupSizes].join(',')}] ${[...p.shaderKeys].join(',')}`)),
    )
    expect([...recorded.kernels.keys()].filter((k) => !(k in KERNEL_AUDIT))).toEqual([])
    expect([...recorded.programs.keys()].filter((p) => !(p in PROGRAM_AUDIT))).toEqual([])
    for (const k of ['Conv2D', 'Conv2DBackpropFilter', 'MaxPool', 'MaxPoolGrad']) expect(recorded.kernels.get(k), k).toBeGreaterThan(0)
    expect(recorded.programs.has('ReduceProgram')).toBe(false)
    expect(hashes[1]).toBe(hashes[0])
  })
})

describe.skipIf(unavailable !== null)('exact-mode audit: the character model (one-hot window, two dense layers) needs no new kernel', () => {
  it('runs a unit of the Tiny Shakespeare preset on exact kernels and pass-through kernels only', async () => {
    if (isUnavailable(tfjs)) return
    const preset = await buildPreset('shakespeare-char', { kernelBundle: 'exact', training: { innerSteps: 1, batchSize: 8 } })
    const spec = parseJobSpec(preset.spec)
    const unit: WorkUnit = { jobId: jobSpecHash(spec), round: 0, unit: 1, inputHash: spec.model.initialWeights }
    const exact = registerExactKernels()
    const recorded = recordKernels(tfjs.backend)
    try {
      const out = await createUnitRunner(mapBlobSource(preset.blobs, 'char preset')).run(spec, unit)
      expect(out.losses.every(Number.isFinite)).toBe(true)
    } finally {
      recorded.stop()
      exact.restore()
    }
    const allowed = new Set<string>([...EXACT_KERNELS, ...EXACT_PASSTHROUGH_KERNELS])
    expect([...recorded.kernels.keys()].filter((k) => !allowed.has(k))).toEqual([])
    for (const k of EXACT_KERNELS) expect(exact.counts[k].stock, k).toBe(0)
  })
})
