import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { launchChromium, startSystem, type SystemUnderTest } from './harness.ts'

/** Runs a unit on the verify page and returns the update hash and the device class it ran as. */
async function verifyInPage(page: Page, url: string): Promise<{ hash: string; deviceClass: string }> {
  await page.goto(url)
  await page.waitForFunction(() => document.body.dataset.outputHash !== undefined || document.body.dataset.ready === 'error', undefined, {
    timeout: 180_000,
  })
  const hash = await page.evaluate(() => document.body.dataset.outputHash)
  expect(hash, (await page.textContent('#verdict')) ?? '').toMatch(/^0x[0-9a-f]{64}$/)
  return { hash: hash!, deviceClass: (await page.textContent('#device-class')) ?? '' }
}

/** A browser without a WebGPU adapter still contributes, on the wasm backend, and says why. */
describe('contribute page without WebGPU', () => {
  let system: SystemUnderTest
  let browser: Browser

  beforeAll(async () => {
    system = await startSystem()
    browser = await launchChromium({ webgpu: false })
  })

  afterAll(async () => {
    await browser?.close()
    await system?.stop()
  })

  it('falls back to wasm, reports it, and gets a unit accepted', async () => {
    const page = await browser.newPage()
    await page.goto(`${system.url}/contribute.html`)
    await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
    expect(await page.textContent('#backend')).toBe('wasm')
    expect(await page.textContent('#adapter')).toMatch(/^No WebGPU: .+\. Training on wasm\.$/)
    expect(await page.textContent('#device-class')).toMatch(/^wasm\|cpu\/wasm\|chromium-\d+\|/)
    await page.click('#start')
    await page.waitForFunction(() => Number(document.getElementById('units-done')?.textContent) >= 2, undefined, { timeout: 120_000 })
    await page.click('#stop')
    const client = new CoordinatorClient(system.url)
    const progress = await client.progress((await client.listJobs())[0]!.id)
    expect(progress.acceptedUnits).toBeGreaterThanOrEqual(2)
    expect(progress.contributors).toHaveLength(1)
    expect(progress.contributors[0]!.address).toBe(await page.textContent('#address'))
  })

  it('computes an exact-mode unit without WebGPU, on the CPU, to the bits a WebGPU tab computes', async () => {
    const client = new CoordinatorClient(system.url)
    const exactJob = (await client.listJobs()).find((j) => j.name.endsWith('exact mode'))!
    const url = `${system.url}/verify.html?job=${exactJob.id}&round=0&unit=2&run=1`
    const withoutGpu = await verifyInPage(await browser.newPage(), url)
    expect(withoutGpu.deviceClass).toMatch(/^cpu\|cpu\/cpu\|chromium-\d+\|tabtrain-exact-/)
    const gpuBrowser = await launchChromium()
    try {
      const withGpu = await verifyInPage(await gpuBrowser.newPage(), url)
      expect(withGpu.deviceClass).toMatch(/^webgpu\|/)
      expect(withoutGpu.hash).toBe(withGpu.hash)
    } finally {
      await gpuBrowser.close()
    }
  })
})
