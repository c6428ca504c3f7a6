import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { removeDataDir, ROOT, spawnCoordinator } from '../coordinator/testing/spawnCoordinator.ts'

export { ROOT }
export const ARTIFACTS = join(ROOT, 'e2e/artifacts')

/** Debian's Chromium; `npx playwright install` cannot download browsers on these machines. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/**
 * Flags that give headless Chromium a WebGPU adapter (SwiftShader's Vulkan when there is no GPU) and
 * keep it from dialling out on a closed network. Never add --disable-software-rasterizer: it removes
 * the SwiftShader adapter.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--enable-unsafe-webgpu',
]

/** `webgpu: false` leaves out --enable-unsafe-webgpu: headless Chromium then has no adapter, as many browsers. */
export async function launchChromium(options: { webgpu?: boolean } = {}): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`no Chromium at ${CHROMIUM_PATH}: apt-get install -y chromium`)
  const args = options.webgpu === false ? CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu') : CHROMIUM_ARGS
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args })
}

export interface SystemUnderTest {
  url: string
  output: () => string
  stop(): Promise<void>
}

/** Starts the coordinator as the README's run command does (built site, embedded store) on a free port. */
export async function startSystem(env: Record<string, string> = {}): Promise<SystemUnderTest> {
  if (!existsSync(join(ROOT, 'dist/web/contribute.html'))) throw new Error('the site is not built: run `vite build` first')
  const coordinator = await spawnCoordinator({ env })
  return {
    url: coordinator.url,
    output: coordinator.output,
    async stop() {
      await coordinator.kill()
      await removeDataDir(coordinator.dataDir)
    },
  }
}

/**
 * Visible controls a screen reader could not name: no aria-label, no <label>, no text of their own.
 * Each is returned as the start of its HTML so a failure says which.
 */
export async function unlabelledControls(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href]')]
      .filter((el) => el.offsetParent !== null || el.getClientRects().length > 0)
      .filter((el) => !(el.getAttribute('aria-label') || (el as HTMLInputElement).labels?.[0]?.textContent?.trim() || el.textContent?.trim()))
      .map((el) => el.outerHTML.slice(0, 80)),
  )
}

/** The ids focused by pressing Tab from the top of the page, until `lastId` or `max` presses. */
export async function tabOrder(page: Page, lastId: string, max = 60): Promise<string[]> {
  // Focus navigation starts where the last click or fill left it: start from a marker at the very top.
  await page.evaluate(() => {
    const start = document.getElementById('tab-start') ?? Object.assign(document.createElement('span'), { id: 'tab-start', tabIndex: -1 })
    document.body.prepend(start)
    start.focus()
  })
  const order: string[] = []
  for (let i = 0; i < max && !order.includes(lastId); i++) {
    await page.keyboard.press('Tab')
    order.push(await page.evaluate(() => document.activeElement?.id ?? ''))
  }
  return order
}

/** True when `ids` are all focused, and in this order, in `order`. */
export function inOrder(order: string[], ids: string[]): boolean {
  const positions = ids.map((id) => order.indexOf(id))
  return positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1]!))
}

/** Reads until `done` holds, every 250 ms, failing after `ms` with `what` and the last value read. */
export async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms
  let value = await read()
  while (!done(value)) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${ms} ms; last ${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`)
    await new Promise((r) => setTimeout(r, 250))
    value = await read()
  }
  return value
}
