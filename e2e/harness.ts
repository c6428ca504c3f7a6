import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium, type Browser } from 'playwright-core'

export const ROOT = resolve(import.meta.dirname, '..')
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

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`no Chromium at ${CHROMIUM_PATH}: apt-get install -y chromium`)
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS })
}

export interface SystemUnderTest {
  url: string
  dataDir: string
  output: () => string
  stop(): Promise<void>
}

/**
 * Starts the coordinator the way the README's run command does (built site, embedded store), on a free
 * port and a fresh data folder, and waits for the URL it prints.
 */
export async function startSystem(env: Record<string, string> = {}): Promise<SystemUnderTest> {
  if (!existsSync(join(ROOT, 'dist/web/contribute.html'))) throw new Error('the site is not built: run `vite build` first')
  const dataDir = await mkdtemp(join(tmpdir(), 'tabtrain-e2e-'))
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'coordinator/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', TABTRAIN_DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`coordinator did not start in 120 s:\n${output}`)), 120_000)
    const check = () => {
      const match = /Open (http:\/\/127\.0\.0\.1:\d+)\//.exec(output)
      if (match) {
        clearTimeout(timer)
        resolveUrl(match[1]!)
      }
    }
    child.stdout!.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`coordinator exited with ${code}:\n${output}`))
    })
  })
  return {
    url,
    dataDir,
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}
