import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type BrowserContext, type Frame, type Page, type Request } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { ARTIFACTS, CHROMIUM_ARGS, CHROMIUM_PATH, launchChromium, startSystem, type SystemUnderTest } from './harness.ts'

/** The site that embeds the widget and is credited a share of its visitors' rewards. */
const REFERRER = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC'

/**
 * A host page on a SECOND origin (another site: `localhost` against the coordinator's 127.0.0.1), with the
 * widget's two lines and a stylesheet that tries to hide or blank it.
 */
function hostPage(coordinator: string, jobId: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A blog that hosts the widget</title>
<style>
  /* Hostile: everything of the host's own goes invisible, and the widget element is targeted by name. */
  body *:not(tabtrain-contributor) { display: none !important; color: transparent !important; }
  tabtrain-contributor { display: none !important; opacity: 0 !important; visibility: hidden !important; transform: scale(0) !important; }
  iframe { display: none !important; }
  body { font-family: serif; color: transparent; }
</style></head>
<body>
  <h1>My blog</h1><p>Some text the host wrote.</p>
  <script type="module" src="${coordinator}/widget.js"></script>
  <tabtrain-contributor job="${jobId}" max-duty="0.5" referrer="${REFERRER}"></tabtrain-contributor>
</body></html>`
}

async function startHost(html: () => string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/' || req.url?.startsWith('/?')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(html())
    } else {
      // The host's own favicon: answered, so the only console messages are the widget's.
      res.writeHead(204)
      res.end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://localhost:${(server.address() as AddressInfo).port}/` }
}

async function embedFrame(page: Page): Promise<Frame> {
  for (let i = 0; i < 200; i++) {
    const frame = page.frames().find((f) => f.url().includes('/embed.html'))
    if (frame) return frame
    await page.waitForTimeout(100)
  }
  throw new Error('the widget never framed embed.html')
}

const state = (frame: Frame) => frame.evaluate(() => document.body.dataset.state)

describe('the widget on another site', () => {
  let system: SystemUnderTest
  let browser: Browser
  let host: { server: Server; url: string }
  let jobId = ''

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    system = await startSystem()
    browser = await launchChromium()
    jobId = (await new CoordinatorClient(system.url).listJobs())[0]!.id
    host = await startHost(() => hostPage(system.url, jobId))
  })

  afterAll(async () => {
    await browser?.close()
    await new Promise((resolve) => host?.server.close(resolve))
    await system?.stop()
  })

  it('does nothing before consent, trains after it with the referrer recorded, pauses while hidden, and stops when asked', async () => {
    // An everyday window of a browser that lets embedded frames keep (partitioned) storage, as Chrome's
    // default profile does. Debian's Chromium blocks third-party cookies and storage by default; that case
    // has its own test below.
    const profile = await mkdtemp(join(tmpdir(), 'tabtrain-widget-profile-'))
    await mkdir(join(profile, 'Default'), { recursive: true })
    await writeFile(join(profile, 'Default', 'Preferences'), JSON.stringify({ profile: { cookie_controls_mode: 0, block_third_party_cookies: false } }))
    const context: BrowserContext = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 900, height: 700 },
    })
    const page = context.pages()[0] ?? (await context.newPage())
    const requests: Request[] = []
    const consoleErrors: string[] = []
    context.on('request', (r) => requests.push(r))
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${m.location().url}: ${m.text()}`)
    })
    page.on('pageerror', (e) => consoleErrors.push(e.message))
    const toCoordinator = (pattern: RegExp) => requests.filter((r) => r.url().startsWith(system.url) && pattern.test(new URL(r.url()).pathname))

    await page.goto(host.url)
    const frame = await embedFrame(page)
    await frame.waitForFunction(() => document.body.dataset.state === 'consent', undefined, { timeout: 60_000 })

    // The host's CSS hides its own text and targets the element, yet the consent shows, sized and opaque.
    const box = await page.locator('tabtrain-contributor').boundingBox()
    expect(box!.width).toBeGreaterThan(250)
    expect(box!.height).toBeGreaterThan(100)
    expect(await page.locator('h1').isVisible()).toBe(false)
    const consent = frame.locator('#consent-text')
    expect(await consent.isVisible()).toBe(true)
    expect(await consent.textContent()).toMatch(/Nothing runs, downloads or is stored before you click/)
    expect(await consent.textContent()).toContain('receives 10% of them')
    expect(await frame.evaluate(() => getComputedStyle(document.getElementById('consent-text')!).color)).not.toBe('rgba(0, 0, 0, 0)')
    await expect.poll(() => frame.locator('#device-note').textContent()).toMatch(/WebGPU is available/)
    // Every control has a name, and the keyboard reaches the consent button first from the host page.
    const unnamed = await frame.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('button, a[href]')]
        .filter((el) => el.getClientRects().length > 0 && !(el.getAttribute('aria-label') || el.textContent?.trim()))
        .map((el) => el.outerHTML.slice(0, 80)),
    )
    expect(unnamed).toEqual([])
    await page.keyboard.press('Tab')
    await expect.poll(() => frame.evaluate(() => document.activeElement?.id)).toBe('allow')
    await page.keyboard.press('Tab')
    expect(await frame.evaluate(() => document.activeElement?.id)).toBe('job-link')
    // Not working yet, so no indicator and no Stop button claim otherwise.
    expect(await frame.locator('#indicator').isVisible()).toBe(false)
    expect(await frame.locator('#stop').isVisible()).toBe(false)
    expect(box!.width).toBeLessThanOrEqual(560)
    await page.screenshot({ path: join(ARTIFACTS, 'widget-consent.png') })

    // Before the click: nothing fetched for training (no API call at all, no Worker), nothing stored.
    await page.waitForTimeout(3000)
    expect(toCoordinator(/^\/api\//).map((r) => r.url())).toEqual([])
    expect(toCoordinator(/worker/).map((r) => r.url())).toEqual([])
    const stored = await frame.evaluate(async () => ({
      localStorage: localStorage.length,
      indexedDb: (await indexedDB.databases()).map((d) => d.name),
    }))
    expect(stored).toEqual({ localStorage: 0, indexedDb: [] })
    // widget.js came from the coordinator cross-origin, answered with CORS.
    const script = requests.find((r) => r.url() === `${system.url}/widget.js`)
    expect((await script!.response())!.headers()['access-control-allow-origin']).toBe('*')

    await frame.click('#allow')
    await frame.waitForFunction(() => Number(document.getElementById('units-done')?.textContent) >= 1, undefined, { timeout: 240_000 })
    expect(await frame.locator('#backend').textContent()).toMatch(/^WebGPU/)
    expect(await frame.locator('#indicator').isVisible()).toBe(true)
    expect(await frame.locator('#stop').isVisible()).toBe(true)
    expect(await frame.evaluate(() => localStorage.length)).toBe(1)
    await page.screenshot({ path: join(ARTIFACTS, 'widget-training.png') })

    // The referrer is recorded with the units: its share shows in its earnings.
    const client = new CoordinatorClient(system.url)
    // A fresh address's first units may wait for their check before they count as payable.
    await expect.poll(async () => BigInt((await client.rewards(REFERRER)).earned), { timeout: 180_000, interval: 2000 }).toBeGreaterThan(0n)
    const address = (await client.progress(jobId)).contributors[0]!.address
    expect(BigInt((await client.rewards(address as `0x${string}`)).earned)).toBeGreaterThan(BigInt((await client.rewards(REFERRER)).earned))

    // Stop while a unit is out: the lease is handed back at once and no new one is asked for.
    await frame.waitForFunction(() => /^Training round/.test(document.getElementById('status-line')?.textContent ?? ''), undefined, { timeout: 120_000 })
    await frame.click('#stop')
    expect(await state(frame)).toBe('stopped')
    expect(await frame.locator('#stopped-text').isVisible()).toBe(true)
    await expect.poll(() => toCoordinator(/^\/api\/leases\/[^/]+\/release$/).length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1)
    const leasesAtStop = toCoordinator(/\/leases$/).length
    await page.waitForTimeout(5000)
    expect(toCoordinator(/\/leases$/).length).toBe(leasesAtStop)
    expect(await frame.locator('#indicator').isVisible()).toBe(false)
    await page.screenshot({ path: join(ARTIFACTS, 'widget-stopped.png') })

    // The consent is remembered on this site: a reload goes on without asking, and Stop still ends it.
    await page.reload()
    const again = await embedFrame(page)
    await again.waitForFunction(() => ['starting', 'running', 'paused'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 60_000 })
    expect(await again.locator('#consent').isVisible()).toBe(false)

    // A hidden tab pauses it: the session ends and no lease is asked for until the tab is shown again.
    const setHidden = (hidden: boolean) =>
      again.evaluate((h) => {
        Object.defineProperty(document, 'hidden', { value: h, configurable: true })
        Object.defineProperty(document, 'visibilityState', { value: h ? 'hidden' : 'visible', configurable: true })
        document.dispatchEvent(new Event('visibilitychange'))
      }, hidden)
    await setHidden(true)
    expect(await state(again)).toBe('paused')
    expect(await again.textContent('#status-line')).toMatch(/hidden/)
    const leasesWhenHidden = toCoordinator(/\/leases$/).length
    await page.waitForTimeout(3000)
    expect(toCoordinator(/\/leases$/).length).toBe(leasesWhenHidden)
    await setHidden(false)
    await again.waitForFunction(() => ['starting', 'running'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 30_000 })
    await again.click('#stop')
    expect(await state(again)).toBe('stopped')

    expect(consoleErrors).toEqual([])
    await context.close()
    await rm(profile, { recursive: true, force: true })
  })

  it('in a browser that gives embedded frames no storage, says the key and the consent last only for the page', async () => {
    const context = await browser.newContext({ viewport: { width: 700, height: 500 } })
    const page = await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (e) => pageErrors.push(e.message))
    await page.goto(host.url)
    const frame = await embedFrame(page)
    await frame.waitForFunction(() => document.body.dataset.state === 'consent', undefined, { timeout: 60_000 })
    expect(await frame.locator('#consent-text').textContent()).toMatch(/a key that lasts only while this page is open .* Your choice lasts while this page is open/)
    expect(await frame.locator('#allow').isVisible()).toBe(true)
    await page.screenshot({ path: join(ARTIFACTS, 'widget-consent-no-storage.png') })
    expect(pageErrors).toEqual([])
    await context.close()
  })

  it('says before consent, in a browser without WebGPU, that it would train on the CPU instead', async () => {
    const plain = await launchChromium({ webgpu: false })
    try {
      const page = await plain.newPage({ viewport: { width: 700, height: 500 } })
      await page.goto(host.url)
      const frame = await embedFrame(page)
      await frame.waitForFunction(() => document.body.dataset.state === 'consent', undefined, { timeout: 60_000 })
      await expect.poll(() => frame.locator('#device-note').textContent()).toMatch(/^No WebGPU in this browser: units run on the CPU instead \(WebAssembly\)/)
      expect(await frame.locator('#consent-text').textContent()).toContain("computes on this device's CPU, since this browser has no WebGPU")
      await page.screenshot({ path: join(ARTIFACTS, 'widget-consent-no-webgpu.png') })
    } finally {
      await plain.close()
    }
  })

  it('says so when a page, a job or a unit does not exist, and offers the way back', async () => {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 } })
    const pageErrors: string[] = []
    page.on('pageerror', (e) => pageErrors.push(e.message))

    const missing = await page.goto(`${system.url}/no/such/page`)
    expect(missing!.status()).toBe(404)
    expect(await page.textContent('h1')).toBe('There is no page here')
    expect(await page.textContent('#missing-path')).toBe('/no/such/page')
    expect(await page.getAttribute('a[href="/index.html"] >> nth=1', 'href')).toBe('/index.html')
    await page.screenshot({ path: join(ARTIFACTS, 'page-404.png') })

    const api = await page.request.get(`${system.url}/api/no-such-route`)
    expect(api.status()).toBe(404)
    expect(await api.json()).toMatchObject({ code: 'not_found' })

    const unknownJob = `0x${'0'.repeat(63)}1`
    await page.goto(`${system.url}/job.html?id=${unknownJob}`)
    await page.waitForFunction(() => document.body.dataset.problem !== undefined, undefined, { timeout: 30_000 })
    expect(await page.textContent('.page-error h2')).toBe('There is no such job')
    expect(await page.textContent('.page-error')).toContain(unknownJob)
    await page.screenshot({ path: join(ARTIFACTS, 'page-job-unknown.png') })

    await page.goto(`${system.url}/job.html?id=mnist`)
    await page.waitForFunction(() => document.body.dataset.problem === 'bad_parameter', undefined, { timeout: 30_000 })

    await page.goto(`${system.url}/verify.html?job=${unknownJob}&round=0&unit=0`)
    await page.waitForFunction(() => document.body.dataset.outputHash === 'error', undefined, { timeout: 120_000 })
    expect(await page.textContent('#verdict')).toContain('There is no such job')
    await page.screenshot({ path: join(ARTIFACTS, 'page-verify-unknown.png') })

    // The contribute page names a link's unknown job instead of silently training another.
    await page.goto(`${system.url}/contribute.html?job=${unknownJob}`)
    await page.waitForSelector('[data-testid="unknown-job"]', { timeout: 120_000 })
    expect(await page.textContent('[data-testid="unknown-job"]')).toContain(unknownJob)

    const icon = await page.request.get(`${system.url}/favicon.ico`)
    expect(icon.status()).toBe(200)
    expect(pageErrors).toEqual([])
    await page.close()
  })
})
