import * as tf from '@tensorflow/tfjs'
import '@tensorflow/tfjs-backend-wasm'
import { beforeAll, describe, expect, it } from 'vitest'
import { EXACT_KERNEL_BUNDLE } from '../kernels/config.ts'
import { presetUnit } from '../kernels/testing/presetUnit.ts'
import { decodeTensorList, formatDeviceClass, type JobSpec, type TensorList } from './index.ts'
import {
  checkRate,
  compareAnswers,
  comparisonRule,
  DEFAULT_VERIFICATION,
  stakeNeeded,
  verificationSchema,
  type VerificationPolicy,
} from './verification.ts'

interface Answer {
  hash: string
  update: TensorList
}

const classOf = (backend: string, kernelBundle: string) => formatDeviceClass({ backend, vendor: 'cpu', architecture: backend, engine: 'node', kernelBundle })

const scaled = (list: TensorList, k: number): TensorList => ({ shapes: list.shapes, values: list.values.map((v) => v.map((x) => x * k)) })

/**
 * One real unit of the MNIST preset (its full spec: 10 Adam steps of 32) computed on tfjs's cpu backend and
 * on its wasm backend, two device classes whose answers differ in their last bits; and another unit of the
 * same round on cpu.
 */
let spec: JobSpec
let cpu: Answer
let wasm: Answer
let otherUnit: Answer
let cpuClass: string
let wasmClass: string

beforeAll(async () => {
  await tf.setBackend('cpu')
  await tf.ready()
  const preset = await presetUnit({ innerSteps: 10 })
  spec = preset.spec
  const run = async (unit: number) => {
    const out = await preset.runner().run(spec, { ...preset.unit, unit })
    return { hash: out.outputHash, update: decodeTensorList(out.updateBytes) }
  }
  cpu = await run(preset.unit.unit)
  otherUnit = await run(preset.unit.unit + 1)
  expect(await tf.setBackend('wasm')).toBe(true)
  await tf.ready()
  wasm = await run(preset.unit.unit)
  cpuClass = classOf('cpu', spec.kernelBundle)
  wasmClass = classOf('wasm', spec.kernelBundle)
})

const compare = (a: Answer & { deviceClass: string }, b: Answer & { deviceClass: string }, kernelBundle = spec.kernelBundle) =>
  compareAnswers({
    kernelBundle,
    tolerance: DEFAULT_VERIFICATION.crossClassTolerance,
    a: { hash: a.hash, deviceClass: a.deviceClass, update: () => a.update },
    b: { hash: b.hash, deviceClass: b.deviceClass, update: () => b.update },
  })

describe('compareAnswers on a real preset unit', () => {
  it('accepts the same unit computed on cpu and on wasm (different bits) under the default tolerance', () => {
    expect(cpu.hash).not.toBe(wasm.hash)
    expect(comparisonRule(spec.kernelBundle, cpuClass, wasmClass)).toBe('tolerance')
    const verdict = compare({ ...cpu, deviceClass: cpuClass }, { ...wasm, deviceClass: wasmClass })
    expect(verdict.agree).toBe(true)
    expect(verdict.distance).toBeGreaterThan(0)
    expect(verdict.distance).toBeLessThanOrEqual(DEFAULT_VERIFICATION.crossClassTolerance)
  })

  it('rejects the honest update ×100, a zero update and another unit’s update, from another class', () => {
    const lies: Answer[] = [
      { hash: '0x01', update: scaled(wasm.update, 100) },
      { hash: '0x02', update: scaled(wasm.update, 0) },
      otherUnit,
    ]
    for (const lie of lies) {
      const verdict = compare({ ...cpu, deviceClass: cpuClass }, { ...lie, deviceClass: wasmClass })
      expect(verdict.agree).toBe(false)
      expect(verdict.distance).toBeGreaterThan(DEFAULT_VERIFICATION.crossClassTolerance)
      if (!verdict.agree) expect(verdict.why).toMatch(/exceeds the tolerance/)
    }
  })

  it('requires equal hashes within one device class, however close the updates are', () => {
    expect(comparisonRule(spec.kernelBundle, cpuClass, cpuClass)).toBe('exact')
    const verdict = compare({ ...cpu, deviceClass: cpuClass }, { ...wasm, deviceClass: cpuClass })
    expect(verdict.agree).toBe(false)
    expect(verdict.distance).toBeLessThanOrEqual(DEFAULT_VERIFICATION.crossClassTolerance)
    if (!verdict.agree) expect(verdict.why).toMatch(/same bits are required/)
    expect(compare({ ...cpu, deviceClass: cpuClass }, { ...cpu, deviceClass: cpuClass })).toEqual({ agree: true, distance: 0 })
  })

  it('in exact mode requires equal hashes across device classes too', () => {
    const exactCpu = classOf('cpu', EXACT_KERNEL_BUNDLE)
    const exactWebgpu = formatDeviceClass({ backend: 'webgpu', vendor: 'google', architecture: 'swiftshader', engine: 'node', kernelBundle: EXACT_KERNEL_BUNDLE })
    expect(comparisonRule(EXACT_KERNEL_BUNDLE, exactCpu, exactWebgpu)).toBe('exact')
    const differ = compare({ ...cpu, deviceClass: exactCpu }, { ...wasm, deviceClass: exactWebgpu }, EXACT_KERNEL_BUNDLE)
    expect(differ.agree).toBe(false)
    expect(differ.distance).toBeLessThanOrEqual(DEFAULT_VERIFICATION.crossClassTolerance)
    const same = compare({ ...cpu, deviceClass: exactCpu }, { ...cpu, deviceClass: exactWebgpu }, EXACT_KERNEL_BUNDLE)
    expect(same).toEqual({ agree: true, distance: 0 })
  })
})

describe('DEFAULT_VERIFICATION', () => {
  it('is a valid policy', () => {
    expect(verificationSchema.parse(DEFAULT_VERIFICATION)).toEqual(DEFAULT_VERIFICATION)
  })
})

describe('checkRate', () => {
  const staked = (consecutiveClean: number, policy: VerificationPolicy = DEFAULT_VERIFICATION) =>
    checkRate(policy, { consecutiveClean, staked: true, checksFailed: 0 })

  it('starts at the initial rate and halves every halvingChecks clean checks', () => {
    const p = DEFAULT_VERIFICATION
    expect(staked(0)).toBe(p.initialCheckRate)
    expect(staked(p.halvingChecks)).toBeCloseTo(p.initialCheckRate / 2, 12)
    expect(staked(2 * p.halvingChecks)).toBeCloseTo(p.initialCheckRate / 4, 12)
    const policy: VerificationPolicy = { ...p, initialCheckRate: 0.5, floorCheckRate: 0.001, halvingChecks: 4 }
    for (let k = 0; k <= 6; k++) expect(staked(4 * k, policy)).toBeCloseTo(0.5 / 2 ** k, 12)
  })

  it('never falls below the floor, and reaches it', () => {
    const p = DEFAULT_VERIFICATION
    let previous = Number.POSITIVE_INFINITY
    for (let n = 0; n <= 200; n++) {
      const rate = staked(n)
      expect(rate).toBeGreaterThanOrEqual(p.floorCheckRate)
      expect(rate).toBeLessThanOrEqual(previous)
      previous = rate
    }
    expect(staked(200)).toBe(p.floorCheckRate)
    expect(staked(1e9)).toBe(p.floorCheckRate)
  })

  it('keeps unstaked addresses at the initial rate whatever their record', () => {
    for (const consecutiveClean of [0, 1, 3, 10, 1000]) {
      expect(checkRate(DEFAULT_VERIFICATION, { consecutiveClean, staked: false, checksFailed: 0 })).toBe(DEFAULT_VERIFICATION.initialCheckRate)
    }
  })
})

describe('the stake a paid job needs', () => {
  const TOKEN = 10n ** 18n

  it('is the policy minimum (40 tokens) when the price is 1 token: cheating at the floor would pay below 38', () => {
    expect(stakeNeeded(DEFAULT_VERIFICATION, TOKEN, 5000)).toBe(40n * TOKEN)
  })

  it('grows with the price: 19 paid lies at the floor must cost more than they earn', () => {
    expect(stakeNeeded(DEFAULT_VERIFICATION, 2n * TOKEN, 5000)).toBe(76n * TOKEN)
    expect(stakeNeeded(DEFAULT_VERIFICATION, 2n * TOKEN, 10_000)).toBe(40n * TOKEN)
    expect(stakeNeeded({ ...DEFAULT_VERIFICATION, floorCheckRate: 1 / 10 }, 5n * TOKEN, 5000)).toBe(90n * TOKEN)
  })

  it('falls back to the minimum when no slash share is known', () => {
    expect(stakeNeeded(DEFAULT_VERIFICATION, 100n * TOKEN, 0)).toBe(40n * TOKEN)
  })
})
