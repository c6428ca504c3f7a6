import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { digestsByBundle, formatResults, type KernelCaseResult } from '../src/kernels/kernelSuite.ts'
import { PINNED_KERNEL_DIGESTS } from '../src/kernels/kernelSuiteDigests.ts'
import { ARTIFACTS, launchChromium, startSystem, type SystemUnderTest } from './harness.ts'

/** Opens the Kernel self-test page and waits until it has published its results or its error. */
async function openKernelPage(page: Page, url: string): Promise<{ results?: KernelCaseResult[]; error?: string }> {
  await page.goto(`${url}/kernels.html`)
  await page.waitForFunction(() => document.body.dataset.done === '1' || document.body.dataset.error !== undefined, undefined, {
    timeout: 240_000,
  })
  const { results, error } = await page.evaluate(() => ({ results: document.body.dataset.results, error: document.body.dataset.error }))
  return error !== undefined ? { error } : { results: JSON.parse(results!) as KernelCaseResult[] }
}

/**
 * The kernel suite in headless Chromium: the same cases, bounds and pinned digests as the Node test on
 * Dawn (src/kernels/kernelSuite.test.ts). Both run SwiftShader here, so equal digests mean the browser's
 * WebGPU stack and Dawn in Node compute every kernel to the same bits.
 */
describe('Kernel self-test page in headless Chromium', () => {
  let system: SystemUnderTest
  let browser: Browser

  beforeAll(async () => {
    system = await startSystem()
    browser = await launchChromium()
  })

  afterAll(async () => {
    await browser?.close()
    await system?.stop()
  })

  // No skip without an adapter: the e2e harness's Chromium always has SwiftShader's WebGPU (harness.ts), so
  // a missing adapter here is a regression to report, not a machine to skip.
  it('passes every case within its bound, repeatably, with the digests pinned for Node', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } })
    const started = performance.now()
    const { results, error } = await openKernelPage(page, system.url)
    expect(error).toBeUndefined()
    console.log(`kernel suite in Chromium (${((performance.now() - started) / 1000).toFixed(1)} s):\n${formatResults(results!)}`)
    await page.screenshot({ path: join(ARTIFACTS, 'kernels.png'), fullPage: true })
    expect(results!.length).toBeGreaterThan(0)
    // JSON turns an infinite error into null: that counts as out of bound too.
    const failed = results!.filter((r) => !r.passed).map((r) => `${r.bundle} ${r.name}: ${r.maxError} / ${r.bound} ${r.unit}, repeatable ${r.repeatable}`)
    expect(failed).toEqual([])
    expect(digestsByBundle(results!), 'Chromium and the digests pinned on Dawn in Node differ').toEqual(PINNED_KERNEL_DIGESTS)
    expect(await page.textContent('#passed')).toBe(`${results!.length} / ${results!.length}`)
    await page.close()
  })

  it('says clearly that it cannot run where the browser has no WebGPU adapter', async () => {
    const noGpu = await launchChromium({ webgpu: false })
    try {
      const page = await noGpu.newPage()
      const { results, error } = await openKernelPage(page, system.url)
      expect(results).toBeUndefined()
      expect(error).toMatch(/no WebGPU|no adapter/)
      expect(await page.textContent('#status')).toContain('Could not run the kernel self-test')
    } finally {
      await noGpu.close()
    }
  })
})
