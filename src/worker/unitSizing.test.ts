import { describe, expect, it } from 'vitest'
import { checkBatchFits, chooseInnerSteps, DEFAULT_TARGET_UNIT_MS, innerStepsBounds, isSizable, modelFootprint, UnitSizer } from './unitSizing.ts'

describe('choosing H for a target unit time', () => {
  it('takes the job bounds from innerSteps and maxInnerSteps; without maxInnerSteps H is fixed', () => {
    expect(innerStepsBounds({ innerSteps: 10, maxInnerSteps: 200 })).toEqual({ min: 10, max: 200 })
    expect(innerStepsBounds({ innerSteps: 10 })).toEqual({ min: 10, max: 10 })
    expect(isSizable({ innerSteps: 10 })).toBe(false)
    expect(isSizable({ innerSteps: 10, maxInnerSteps: 10 })).toBe(false)
    expect(isSizable({ innerSteps: 10, maxInnerSteps: 11 })).toBe(true)
  })

  it('fills the target with steps after the fixed overhead, rounding down, within the bounds', () => {
    const bounds = { min: 10, max: 1000 }
    expect(chooseInnerSteps({ stepMs: 100, overheadMs: 1000 }, bounds, 30_000)).toBe(290)
    expect(chooseInnerSteps({ stepMs: 70, overheadMs: 0 }, bounds, 30_000)).toBe(428)
    // A slow device still runs the job's smallest unit; a fast one stops at the job's largest.
    expect(chooseInnerSteps({ stepMs: 10_000, overheadMs: 0 }, bounds, 30_000)).toBe(10)
    expect(chooseInnerSteps({ stepMs: 1, overheadMs: 0 }, bounds, 30_000)).toBe(1000)
    expect(chooseInnerSteps({ stepMs: 1, overheadMs: 60_000 }, bounds, 30_000)).toBe(10)
  })

  it('asks for the smallest H before it has measured anything', () => {
    expect(chooseInnerSteps(null, { min: 10, max: 1000 })).toBe(10)
    expect(chooseInnerSteps({ stepMs: 0, overheadMs: 0 }, { min: 10, max: 1000 })).toBe(10)
    expect(chooseInnerSteps({ stepMs: Number.NaN, overheadMs: 0 }, { min: 10, max: 1000 })).toBe(10)
  })

  it('believes a faster unit at once and moves part of the way after a slower one', () => {
    const sizer = new UnitSizer(DEFAULT_TARGET_UNIT_MS)
    const job = { innerSteps: 10, maxInnerSteps: 1000 }
    expect(sizer.innerStepsFor(job)).toBeNull()
    // The first unit compiles the shaders: 10 steps in 3 s, plus 500 ms of fetch and hash.
    sizer.observe({ innerSteps: 10, trainMs: 3000, computeMs: 3500 })
    expect(sizer.estimate).toEqual({ stepMs: 300, overheadMs: 500 })
    expect(sizer.innerStepsFor(job)).toBe(98)
    // Warm, a step takes 100 ms: the next unit fills the target.
    sizer.observe({ innerSteps: 98, trainMs: 9800, computeMs: 10_000 })
    expect(sizer.estimate).toEqual({ stepMs: 100, overheadMs: 200 })
    expect(sizer.innerStepsFor(job)).toBe(298)
    // A throttled unit (300 ms a step) moves the estimate half way only.
    sizer.observe({ innerSteps: 298, trainMs: 89_400, computeMs: 89_600 })
    expect(sizer.estimate).toEqual({ stepMs: 200, overheadMs: 200 })
    expect(sizer.innerStepsFor(job)).toBe(149)
    // A fixed-H job is never asked for another H.
    expect(sizer.innerStepsFor({ innerSteps: 10 })).toBeNull()
  })

  it('ignores measurements that say nothing', () => {
    const sizer = new UnitSizer()
    sizer.observe({ innerSteps: 0, trainMs: 100, computeMs: 100 })
    sizer.observe({ innerSteps: 10, trainMs: 0, computeMs: 100 })
    sizer.observe({ innerSteps: 10, trainMs: Number.NaN, computeMs: 100 })
    expect(sizer.estimate).toBeNull()
  })
})

describe('checking the batch against the adapter limits', () => {
  const limits = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 }

  it('finds the largest activation per example and the largest weight of a model', () => {
    const footprint = modelFootprint(
      [28, 28, 1],
      [
        { name: 'conv2d', outputShape: [null, 26, 26, 32] },
        { name: 'flatten', outputShape: [null, 21632] },
        { name: 'dense', outputShape: [[null, 10]] },
      ],
      [[3, 3, 1, 32], [32], [21632, 10], [10]],
    )
    expect(footprint).toEqual({ largestActivationPerExample: 21632, largestLayer: 'conv2d', largestWeight: 216320 })
    expect(modelFootprint([784], [{ name: 'dense', outputShape: [null, 128] }], [[784, 128]]).largestLayer).toBe('input')
  })

  it('passes a batch whose largest activation fits one binding', () => {
    const fit = checkBatchFits(32, { largestActivationPerExample: 784, largestLayer: 'input', largestWeight: 784 * 128 }, limits)
    expect(fit).toMatchObject({ fits: true, neededBytes: 784 * 128 * 4, limitBytes: 128 * 2 ** 20 })
    expect(fit.message).toBeUndefined()
  })

  it('says which layer does not fit and the largest batch that would', () => {
    const fit = checkBatchFits(4096, { largestActivationPerExample: 32 * 26 * 26, largestLayer: 'conv2d_1', largestWeight: 1000 }, limits)
    expect(fit.fits).toBe(false)
    expect(fit.maxBatch).toBe(1551)
    expect(fit.message).toBe(
      "this device cannot run this job's batch of 4096: its GPU binds at most 128.0 MiB per buffer and layer conv2d_1 needs 338.0 MiB for the batch (at most 1551 examples would fit)",
    )
  })

  it('says so when even the model does not fit, whatever the batch', () => {
    const fit = checkBatchFits(1, { largestActivationPerExample: 10, largestLayer: 'dense', largestWeight: 64 * 2 ** 20 }, { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 128 * 2 ** 20 })
    expect(fit).toMatchObject({ fits: false, maxBatch: 0 })
    expect(fit.message).toMatch(/model's largest weight needs 256\.0 MiB/)
  })
})
