import { afterAll, describe, expect, it } from 'vitest'
import { isUnavailable } from './device.ts'
import { digestsByBundle, formatResults, runKernelSuite, type KernelCaseResult } from './kernelSuite.ts'
import { PINNED_KERNEL_DIGESTS } from './kernelSuiteDigests.ts'
import { setupTfjsWebgpu } from './testing/tfjsWebgpu.ts'

const tfjs = await setupTfjsWebgpu()
const unavailable = isUnavailable(tfjs) ? tfjs.unavailable : null
if (unavailable) console.warn(`kernel suite skipped: ${unavailable}`)

afterAll(async () => {
  if (!isUnavailable(tfjs)) await tfjs.teardown()
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
