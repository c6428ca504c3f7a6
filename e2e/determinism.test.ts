import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { Hash } from '../src/protocol/index.ts'
import { activateKernelBundle } from '../src/kernels/config.ts'
import { isUnavailable } from '../src/kernels/device.ts'
import { setupTfjsWebgpu, type TfjsWebgpu } from '../src/kernels/testing/tfjsWebgpu.ts'
import { memoryCached } from '../src/worker/blobSource.ts'
import { createUnitRunner } from '../src/worker/unitRunner.ts'
import { ARTIFACTS, launchChromium, startSystem, type SystemUnderTest } from './harness.ts'

/** Runs a unit on the verify page and returns the update hash it shows. */
async function hashInChromium(page: Page, url: string): Promise<string> {
  await page.goto(url)
  await page.waitForFunction(() => document.body.dataset.outputHash !== undefined || document.body.dataset.ready === 'error', undefined, {
    timeout: 180_000,
  })
  const hash = await page.evaluate(() => document.body.dataset.outputHash)
  expect(hash, await page.textContent('#verdict') ?? '').toMatch(/^0x[0-9a-f]{64}$/)
  return hash!
}

/**
 * The same unit gives the same bits: twice in one Chromium tab's Worker, in a second tab, and in Node on
 * Dawn, each on its WebGPU adapter with the kernel bundle in place (SwiftShader here, in both: the same
 * device class but two different WebGPU implementations around it).
 */
describe('one unit, one hash: Chromium and Node on WebGPU', () => {
  let system: SystemUnderTest
  let browser: Browser
  let client: CoordinatorClient
  let node: TfjsWebgpu | null = null
  let nodeUnavailable = ''

  beforeAll(async () => {
    system = await startSystem()
    browser = await launchChromium()
    client = new CoordinatorClient(system.url)
    const setup = await setupTfjsWebgpu()
    if (isUnavailable(setup)) nodeUnavailable = setup.unavailable
    else {
      node = setup
    }
  })

  afterAll(async () => {
    await node?.teardown()
    await browser?.close()
    await system?.stop()
  })

  // Each preset job names its kernel bundle: the default (deterministic matmul) and exact mode.
  for (const [index, mode] of [[0, 'default kernels'], [1, 'exact mode']] as const) {
    it(`gives the same update hash run to run, tab to tab, and in Node (${mode})`, async () => {
      const job = (await client.listJobs())[index]!
      const jobId = job.id as Hash
      const url = `${system.url}/verify.html?job=${jobId}&round=0&unit=3&run=1`
      const page = await browser.newPage({ viewport: { width: 1000, height: 800 } })
      const first = await hashInChromium(page, url)
      const again = await hashInChromium(page, url)
      expect(again).toBe(first)
      expect(await page.textContent('#backend')).toBe('WebGPU')
      const { spec } = await client.job(jobId)
      expect(await page.textContent('#device-class')).toContain(spec.kernelBundle)
      await page.screenshot({ path: join(ARTIFACTS, `verify-${index}.png`), fullPage: true })
      const other = await browser.newPage()
      expect(await hashInChromium(other, url)).toBe(first)
      await Promise.all([page.close(), other.close()])

      if (!node) {
        console.log(`Node side skipped: ${nodeUnavailable}`)
        return
      }
      const record = await client.unit(jobId, 0, 3)
      activateKernelBundle(spec.kernelBundle)
      const runner = createUnitRunner(memoryCached({ get: (hash) => client.blob(hash) }))
      const inNode = await runner.run(spec, record.unit)
      expect(inNode.outputHash).toBe(first)
      console.log(`${mode} (${spec.kernelBundle}): unit hash ${first} in Chromium and in Node`)
    })
  }
})
