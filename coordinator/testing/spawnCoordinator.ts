import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export const ROOT = resolve(import.meta.dirname, '../..')

export interface SpawnedCoordinator {
  url: string
  dataDir: string
  output: () => string
  /** SIGTERM (graceful) or SIGKILL to the whole process group (a crash: nothing gets to clean up). */
  kill(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
}

/**
 * Runs `coordinator/main.ts` as its own process, exactly as the README's run command does after the
 * build, and waits for the URL it prints. `dataDir` and `port` can be given to restart on the same store.
 */
export async function spawnCoordinator(options: { dataDir?: string; port?: number; env?: Record<string, string> } = {}): Promise<SpawnedCoordinator> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'tabtrain-coordinator-')))
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'coordinator/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(options.port ?? 0), TABTRAIN_ANVIL_PORT: '0', TABTRAIN_DATA_DIR: dataDir, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a simulated crash takes the local chain (anvil, its child) down
    // with it, as a container or machine failure would, instead of leaving anvil orphaned.
    detached: true,
  })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`coordinator did not start in 120 s:\n${output}`)), 120_000)
    const check = () => {
      const match = /Contribute: (http:\/\/127\.0\.0\.1:\d+)\//.exec(output)
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
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      if (signal === 'SIGKILL') process.kill(-child.pid!, 'SIGKILL')
      else child.kill(signal)
      await exited
    },
  }
}

export async function removeDataDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}
