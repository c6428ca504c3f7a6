import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { JobProgress } from '../src/protocol/index.ts'
import { ARTIFACTS, launchChromium, startSystem, type SystemUnderTest, unlabelledControls, tabOrder, inOrder } from './harness.ts'

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
    // The tabs go on training: what they count is compared with what the coordinator holds after reading them.
    const acceptedSince = (await client.progress(jobId)).acceptedUnits
    expect(unitsDone[0]! + unitsDone[1]!).toBeLessThanOrEqual(acceptedSince)
    expect(await pages[0]!.locator('#timings tbody td').first().textContent()).toMatch(/^\d+ · \d+$/)
    await pages[0]!.screenshot({ path: join(ARTIFACTS, 'contribute.png'), fullPage: true })

    for (const page of pages) await page.click('#stop')
    expect(consoleErrors).toEqual([])
  })

  it('shows the adapter and speed, picks jobs, pauses and stops by handing the unit back, and keeps its numbers across a reload', async () => {
    const client = new CoordinatorClient(system.url)
    const jobs = await client.listJobs()
    const preset = jobs.find((j) => j.status === 'active')!
    const exact = jobs.find((j) => j.id !== preset.id)
    const context = await browser.newContext({ viewport: { width: 1100, height: 1600 } })
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text())
    })
    const open = async (query = '') => {
      await page.goto(`${system.url}/contribute.html${query}`)
      await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 }).catch(async (error: unknown) => {
        // Say how far the page got: the device, the wallet, the balances, its activity log.
        const state = await page.evaluate(() => ['backend', 'address', 'eth-balance', 'faucet-status', 'claim-status', 'log'].map((id) => `${id}: ${document.getElementById(id)?.textContent?.slice(0, 300)}`))
        throw new Error(`${(error as Error).message}\n${state.join('\n')}\n${system.output().slice(-2000)}`)
      })
      expect(await page.evaluate(() => document.body.dataset.ready)).toBe('true')
    }
    const log = () => page.$$eval('#log li', (items) => items.map((li) => li.textContent ?? ''))
    const handedBack = async () => {
      const line = (await log()).find((l) => /Handed round \d+ unit \d+ back/.test(l))
      const [, round, unit] = /Handed round (\d+) unit (\d+) back/.exec(line ?? '') ?? []
      return line ? { round: Number(round), unit: Number(unit) } : null
    }
    const setHidden = (hidden: boolean) =>
      page.evaluate((h) => {
        Object.defineProperty(document, 'visibilityState', { value: h ? 'hidden' : 'visible', configurable: true })
        document.dispatchEvent(new Event('visibilitychange'))
      }, hidden)

    // The job picker lists every job; ?job= preselects one (the exact-mode job was reachable only from its job page).
    if (exact) {
      await open(`?job=${exact.id}`)
      expect(await page.inputValue('#job-picker')).toBe(exact.id)
      expect(await page.locator('#job-picker option').count()).toBe(jobs.length)
      expect(await page.getAttribute('#job-name a', 'href')).toBe(`./job.html?id=${exact.id}`)
    }
    await open()
    expect(await page.inputValue('#job-picker')).toBe(preset.id)

    // The capability panel: SwiftShader's adapter, the backend in use.
    expect(await page.textContent('#backend')).toBe('WebGPU')
    expect(await page.textContent('#gpu-vendor')).toBe('google')
    expect(await page.textContent('#gpu-architecture')).toBe('swiftshader')
    // Amounts read as people read them: no 18-digit fractions.
    await expect.poll(() => page.getAttribute('#eth-balance', 'data-amount'), { timeout: 30_000 }).toMatch(/^[1-9]\d*$/)
    expect(await page.textContent('#eth-balance')).toMatch(/^[\d,]+(\.\d{1,4})? ETH$/)

    // Every control has a label, and Tab walks them in the order the page reads (once the faucet's
    // transactions are done, so that the stake buttons are enabled).
    await expect.poll(() => page.isEnabled('#withdraw'), { timeout: 60_000 }).toBe(true)
    expect(await unlabelledControls(page)).toEqual([])
    const order = await tabOrder(page, 'withdraw', 40)
    const ids = ['job-picker', 'start', 'duty', 'pause-hidden', 'pause-battery', 'pause-janky', 'stake-amount', 'stake', 'unstake', 'withdraw']
    expect(inOrder(order, ids), `Tab order ${order.join(' ')}`).toBe(true)

    // A unit is in flight for seconds right after Start (and after a pause): the Worker compiles its shaders.
    const leasedOnTop = () => page.waitForFunction(() => /Leased/.test(document.querySelector('#log li')?.textContent ?? ''), undefined, { timeout: 120_000 })

    // Hidden tab: the page pauses, says why, and the unit in flight is open to others at once.
    await page.click('#start')
    await leasedOnTop()
    await setHidden(true)
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('paused')
    expect(await page.textContent('#pause-reason')).toMatch(/tab is hidden/)
    const paused = await handedBack()
    expect(paused).not.toBeNull()
    // A primary's unit is open again. The tab may instead have drawn a check of an earlier round's unit
    // (asynchronous rounds check answers after their round): that unit stays under check, its check leasable again.
    expect(['open', 'checking']).toContain((await client.unit(preset.id, paused!.round, paused!.unit)).status)

    // Back in view it resumes; Stop in the middle of a unit is idle at once, the unit handed back.
    await setHidden(false)
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('running')
    await leasedOnTop()
    const stoppedAt = Date.now()
    await page.click('#stop')
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('idle')
    expect(Date.now() - stoppedAt).toBeLessThan(10_000)
    expect((await log())[0]).toMatch(/Handed round \d+ unit \d+ back/)

    // Training again: the measured speed, then the duty cycle at 50 %: the tab rests as long as it computed.
    await page.click('#start')
    await page.waitForFunction(() => Number(document.getElementById('units-done')?.textContent) >= 1, undefined, { timeout: 300_000 })
    expect(await page.textContent('#examples-per-second')).toMatch(/^[\d,.]+ examples\/s$/)
    await page.locator('#duty').fill('50')
    expect(await page.textContent('#duty-value')).toBe('50 %')
    await expect.poll(async () => (await log()).some((l) => /Resting \d+\.\d s \(duty cycle\)/.test(l)), { timeout: 300_000 }).toBe(true)
    await page.locator('#duty').fill('100')
    await page.click('#stop')
    await expect.poll(() => page.textContent('#status'), { timeout: 10_000 }).toBe('idle')

    // The live numbers come from this browser's history: a reload keeps them.
    const done = await page.textContent('#units-done')
    expect(Number(done)).toBeGreaterThanOrEqual(1)
    await page.screenshot({ path: join(ARTIFACTS, 'contribute-controls.png'), fullPage: true })
    await open()
    expect(await page.textContent('#units-done')).toBe(done)
    expect(errors).toEqual([])
    await context.close()
  })
})
