import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { launchChromium, startSystem, type SystemUnderTest } from './harness.ts'

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
})
