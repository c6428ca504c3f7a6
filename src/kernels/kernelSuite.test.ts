import { afterAll, describe, expect, it } from 'vitest'
import { isUnavailable } from './device.ts'
import {
  CASES,
  caseInputs,
  caseMaxError,
  digestsByBundle,
  F32_MIN_NORMAL,
  formatResults,
  knownRoles,
  runKernelSuite,
  toleranceOf,
  ulp32,
  type KernelCase,
  type KernelCaseResult,
} from './kernelSuite.ts'
import { PINNED_KERNEL_DIGESTS } from './kernelSuiteDigests.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`kernel suite skipped: ${unavailable}`)

afterAll(async () => {
  if (!isUnavailable(tfjs)) await tfjs.teardown()
})

/** The CPU reference of a case rounded to float32: what a perfect kernel would return. */
function roundedReference(kernelCase: KernelCase, inputs: Float32Array[]): Float32Array[] {
  return kernelCase.reference(inputs).map((output) => Float32Array.from(output.value))
}

function caseNamed(name: string): KernelCase {
  const found = CASES.find((c) => c.name.startsWith(name))
  if (!found) throw new Error(`no kernel case starts with "${name}"`)
  return found
}

/** The measuring side of the suite needs no GPU: it must accept a perfect kernel and catch a wrong one. */
describe('kernel suite error measure (no GPU)', () => {
  it('measures ULPs of float32 at the reference magnitude', () => {
    expect(ulp32(1)).toBe(2 ** -23)
    expect(ulp32(1.9999)).toBe(2 ** -23)
    expect(ulp32(0.75)).toBe(2 ** -24)
    expect(ulp32(-1024)).toBe(2 ** -13)
    expect(ulp32(1e-40)).toBe(2 ** -149)
    expect(ulp32(F32_MIN_NORMAL)).toBe(2 ** -149)
  })

  it('accepts every case\'s float64 reference rounded to float32, under every bundle\'s bound', () => {
    for (const kernelCase of CASES) {
      const inputs = caseInputs(kernelCase)
      for (const role of knownRoles()) {
        const tolerance = toleranceOf(kernelCase.name, role)
        const error = caseMaxError(kernelCase, tolerance, inputs, roundedReference(kernelCase, inputs))
        expect(error, `${role} ${kernelCase.name}`).toBeLessThanOrEqual(tolerance.bound)
      }
    }
  })

  it('catches one wrong element: a correctly rounded op one ULP off, a sign flip, a NaN, a flushed normal', () => {
    const add = caseNamed('add same shape')
    const inputs = caseInputs(add)
    const tolerance = toleranceOf(add.name, 'default')
    const oneUlpOff = roundedReference(add, inputs)
    const i = 200
    oneUlpOff[0]![i] = oneUlpOff[0]![i]! + ulp32(oneUlpOff[0]![i]!)
    expect(caseMaxError(add, tolerance, inputs, oneUlpOff)).toBeGreaterThan(tolerance.bound)

    const relu = caseNamed('relu')
    const reluInputs = caseInputs(relu)
    const signFlipped = roundedReference(relu, reluInputs)
    const positive = signFlipped[0]!.findIndex((x) => x > 1e-3)
    signFlipped[0]![positive] = -signFlipped[0]![positive]!
    expect(caseMaxError(relu, toleranceOf(relu.name, 'default'), reluInputs, signFlipped)).toBeGreaterThan(0)

    const exp = caseNamed('exp')
    const expInputs = caseInputs(exp)
    const withNaN = roundedReference(exp, expInputs)
    withNaN[0]![300] = NaN
    expect(caseMaxError(exp, toleranceOf(exp.name, 'default'), expInputs, withNaN)).toBe(Infinity)

    const mul = caseNamed('multiply same shape')
    const mulInputs = caseInputs(mul)
    const flushed = roundedReference(mul, mulInputs)
    const smallNormal = flushed[0]!.findIndex((x) => Math.abs(x) > F32_MIN_NORMAL && Math.abs(x) < 1e-3)
    flushed[0]![smallNormal] = 0
    expect(caseMaxError(mul, toleranceOf(mul.name, 'default'), mulInputs, flushed)).toBeGreaterThan(tolerance.bound)
  })

  it('names a bound for every case', () => {
    for (const kernelCase of CASES) for (const role of knownRoles()) expect(() => toleranceOf(kernelCase.name, role)).not.toThrow()
  })
})

/**
 * The kernel self-test on Dawn in Node: the same suite the Kernel self-test page (web/kernels.html) runs
 * in a browser, and e2e/kernels.test.ts in headless Chromium, against the same pinned digests.
 */
describe.skipIf(unavailable !== null)('kernel suite on tfjs-webgpu (Node, Dawn)', () => {
  let results: KernelCaseResult[] = []

  it('runs every case under every bundle within its stated bound, with the same bits twice', { timeout: 120_000 }, async () => {
    const started = performance.now()
    results = await runKernelSuite()
    console.log(`kernel suite (${((performance.now() - started) / 1000).toFixed(1)} s):\n${formatResults(results)}`)
    if (process.env.PRINT_DIGESTS) {
      console.log(`PINNED_KERNEL_DIGESTS = ${JSON.stringify(digestsByBundle(results), null, 2)}`)
    }
    expect(results.length).toBeGreaterThan(0)
    const outOfBound = results.filter((r) => !r.withinBound).map((r) => `${r.bundle} ${r.name}: ${r.maxError} > ${r.bound} ${r.unit}`)
    expect(outOfBound).toEqual([])
    const unrepeatable = results.filter((r) => !r.repeatable).map((r) => `${r.bundle} ${r.name}`)
    expect(unrepeatable).toEqual([])
  })

  it('gives the pinned digests (kernelSuiteDigests.ts)', () => {
    expect(results.length, 'the suite did not run').toBeGreaterThan(0)
    expect(digestsByBundle(results), 're-pin deliberately with PRINT_DIGESTS=1 if a kernel change is meant to move bits').toEqual(
      PINNED_KERNEL_DIGESTS,
    )
  })
})
