import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser, Worker } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { ARTIFACTS, launchChromium, startSystem, until, type SystemUnderTest } from './harness.ts'

/**
 * A WebGPU device can be lost at any time (driver reset, GPU removed, the browser reclaiming it). The tab
 * must re-create it and redo the unit under the same lease, not sign garbage or stall. The device is
 * destroyed from outside, through Playwright's handle on the training Worker: the next command encoder
 * tfjs asks for, mid-unit, destroys its device first. No hook in the shipped code.
 */
describe('a tab whose GPU device is lost mid-unit re-creates it and redoes the unit', () => {
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

  it('redoes the unit on a new device and the coordinator accepts it', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 1500 } })
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`${system.url}/contribute.html`)
    await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
    expect(await page.evaluate(() => document.body.dataset.ready)).toBe('true')
    await expect.poll(() => page.textContent('#backend')).toBe('WebGPU')
    const log = () => page.$$eval('#log li', (items) => items.map((li) => li.textContent ?? ''))

    await page.click('#start')
    await page.waitForFunction(() => /Leased/.test(document.querySelector('#log li')?.textContent ?? ''), undefined, { timeout: 120_000 })
    // The training Worker (the module Worker the page started; vite names its bundle after worker.ts).
    const worker = await until(
      async () => page.workers().find((w) => /worker/.test(w.url())) ?? null,
      (w): w is Worker => w !== null,
      30_000,
      'the training Worker',
    )
    await worker!.evaluate(() => {
      const proto = GPUDevice.prototype
      const original = proto.createCommandEncoder
      const scope = self as unknown as { destroyedDevices?: number }
      scope.destroyedDevices = 0
      proto.createCommandEncoder = function (this: GPUDevice, descriptor?: GPUCommandEncoderDescriptor) {
        proto.createCommandEncoder = original
        scope.destroyedDevices! += 1
        this.destroy()
        return original.call(this, descriptor)
      }
    })
    const redone = await until(
      async () => (await log()).find((l) => /GPU device was lost during round \d+ unit \d+/.test(l)) ?? null,
      (line) => line !== null,
      300_000,
      'a unit redone after the device loss',
    )
    const [, round, unit] = /round (\d+) unit (\d+)/.exec(redone!)!
    expect(await worker!.evaluate(() => (self as unknown as { destroyedDevices?: number }).destroyedDevices)).toBe(1)
    // The coordinator accepted the redone unit under this tab's address, and the tab carries on training.
    const client = new CoordinatorClient(system.url)
    const jobId = (await client.listJobs()).find((j) => j.status === 'active')!.id
    const record = await client.unit(jobId, Number(round), Number(unit))
    // 'checking' while a check by another address is wanted; either way the answer was taken.
    expect(['accepted', 'checking']).toContain(record.status)
    const address = await page.textContent('#address')
    expect((await client.progress(jobId)).contributors.map((c) => c.address)).toContain(address)
    const done = Number(await page.textContent('#units-done'))
    await page.waitForFunction((n) => Number(document.getElementById('units-done')?.textContent) > n, done, { timeout: 300_000 })
    expect((await log()).filter((l) => /refused|retrying/.test(l))).toEqual([])
    await page.screenshot({ path: join(ARTIFACTS, 'device-loss.png'), fullPage: true })
    await page.click('#stop')
    expect(errors).toEqual([])
    await context.close()
  })
})
