import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { JobProgress } from '../src/protocol/index.ts'
import { ARTIFACTS, launchChromium, startSystem, type SystemUnderTest } from './harness.ts'

/**
 * The whole loop as a user meets it: the running system, two contribute tabs in real Chromium on real
 * WebGPU (SwiftShader here), each pressing Start, training the preset MNIST job until rounds close and
 * held-out accuracy passes 80%.
 */
describe('two browser tabs train the preset job on WebGPU', () => {
  let system: SystemUnderTest
  let browser: Browser

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    system = await startSystem()
    browser = await launchChromium()
  })

  afterAll(async () => {
    await browser?.close()
    await system?.stop()
  })

  it('closes at least 5 rounds and reaches 80% held-out accuracy', async () => {
    // Separate browser contexts: separate IndexedDB, so two burner wallets, two contributors.
    const pages: Page[] = []
    const consoleErrors: string[] = []
    for (let i = 0; i < 2; i++) {
      const context = await browser.newContext({ viewport: { width: 1100, height: 1500 } })
      const page = await context.newPage()
      page.on('pageerror', (e) => consoleErrors.push(`tab ${i}: ${e.message}`))
      await page.goto(`${system.url}/contribute.html`)
      await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
      expect(await page.evaluate(() => document.body.dataset.ready)).toBe('true')
      pages.push(page)
    }
    for (const page of pages) {
      // A real adapter, not the wasm fallback: SwiftShader reports vendor google / swiftshader.
      await expect.poll(() => page.textContent('#backend')).toBe('WebGPU')
      expect(await page.textContent('#adapter')).toMatch(/Adapter: \S+ \/ \S+/)
      expect(await page.textContent('#device-class')).toMatch(/^webgpu\|/)
      await page.click('#start')
    }
    const addresses = await Promise.all(pages.map((p) => p.textContent('#address')))
    expect(addresses[0]).toMatch(/^0x[0-9a-fA-F]{40}$/)
    expect(addresses[0]).not.toBe(addresses[1])

    const client = new CoordinatorClient(system.url)
    const jobId = (await client.listJobs())[0]!.id
    let progress: JobProgress = await client.progress(jobId)
    const deadline = Date.now() + 12 * 60_000
    while (Date.now() < deadline) {
      progress = await client.progress(jobId)
      const last = progress.history.at(-1)
      if (progress.history.length >= 5 && last && last.heldOutAccuracy >= 0.8) break
      await new Promise((r) => setTimeout(r, 2000))
    }
    const last = progress.history.at(-1)
    expect(progress.history.length).toBeGreaterThanOrEqual(5)
    expect(last!.heldOutAccuracy).toBeGreaterThanOrEqual(0.8)

    // Both tabs did accepted work, credited to their own wallets.
    expect(progress.contributors.map((c) => c.address).sort()).toEqual([...addresses].sort())
    // Every accepted unit was signed on the WebGPU device class.
    // The page shows what the coordinator recorded: its round counter and accuracy follow the job.
    const shownAccuracy = await pages[0]!.textContent('#accuracy')
    expect(shownAccuracy).toMatch(/^\d+\.\d%$/)
    const unitsDone = await Promise.all(pages.map(async (p) => Number(await p.textContent('#units-done'))))
    expect(unitsDone.every((n) => n > 0)).toBe(true)
    expect(unitsDone[0]! + unitsDone[1]!).toBeLessThanOrEqual(progress.acceptedUnits)
    expect(await pages[0]!.locator('#timings tbody td').first().textContent()).toMatch(/^\d+ · \d+$/)
    await pages[0]!.screenshot({ path: join(ARTIFACTS, 'contribute.png'), fullPage: true })

    for (const page of pages) await page.click('#stop')
    expect(consoleErrors).toEqual([])
  })
})
