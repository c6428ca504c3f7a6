import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export const ROOT = resolve(import.meta.dirname, '../..')

export interface SpawnedCoordinator {
  url: string
  dataDir: string
  /** The process id (also its process group's: a SIGKILL takes its local chain with it). */
  pid: number
  output: () => string
  /** SIGTERM (graceful) or SIGKILL to the whole process group (a crash: nothing gets to clean up). */
  kill(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
}

export interface SpawnOptions {
  /** The data folder (embedded store, blobs, local chain): give the previous one to restart on the same store. */
  dataDir?: string
  /** 0 (the default) picks a free port; give the previous one to restart where contributors look for it. */
  port?: number
  /** Added to the environment: DATABASE_URL, TABTRAIN_CHAIN and the rest of configFromEnv's settings. */
  env?: Record<string, string>
}

/** A coordinator process that has loaded its modules and waits to be started (prepareCoordinator). */
export interface PreparedCoordinator {
  dataDir: string
  /** Runs coordinator/main.ts in the waiting process and waits for the URL it prints. */
  start(): Promise<SpawnedCoordinator>
  /** Ends the waiting process without starting it. */
  discard(): Promise<void>
}

interface Launched {
  child: ChildProcess
  dataDir: string
  output: () => string
  /** Resolves with the first match of `pattern` in the output from `from` on; rejects if the process exits first. */
  waitFor(pattern: RegExp, what: string, from?: number): Promise<RegExpExecArray>
}

async function launch(entry: string, options: SpawnOptions, stdin: 'ignore' | 'pipe'): Promise<Launched> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'tabtrain-coordinator-')))
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(options.port ?? 0), TABTRAIN_ANVIL_PORT: '0', TABTRAIN_DATA_DIR: dataDir, ...options.env },
    stdio: [stdin, 'pipe', 'pipe'],
    // Its own process group, so that a simulated crash takes the local chain (anvil, its child) down
    // with it, as a container or machine failure would, instead of leaving anvil orphaned.
    detached: true,
  })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const waitFor = (pattern: RegExp, what: string, from = 0) =>
    new Promise<RegExpExecArray>((resolveMatch, reject) => {
      const timer = setTimeout(() => done(new Error(`coordinator did not ${what} in 120 s:\n${output}`)), 120_000)
      const check = () => {
        const match = pattern.exec(output.slice(from))
        if (match) done(null, match)
      }
      const exited = (code: number | null) => done(new Error(`coordinator exited with ${code} before it could ${what}:\n${output}`))
      const done = (error: Error | null, match?: RegExpExecArray) => {
        clearTimeout(timer)
        child.stdout!.off('data', check)
        child.off('exit', exited)
        if (error) reject(error)
        else resolveMatch(match!)
      }
      child.stdout!.on('data', check)
      child.once('exit', exited)
      check()
    })
  return { child, dataDir, output: () => output, waitFor }
}

function spawned(launched: Launched, url: string): SpawnedCoordinator {
  const { child } = launched
  return {
    url,
    dataDir: launched.dataDir,
    pid: child.pid!,
    output: launched.output,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      if (signal === 'SIGKILL') process.kill(-child.pid!, 'SIGKILL')
      else child.kill(signal)
      await exited
    },
  }
}

const CONTRIBUTE_LINE = /Contribute: (http:\/\/127\.0\.0\.1:\d+)\//

/**
 * Runs `coordinator/main.ts` as its own process, exactly as the README's run command does after the
 * build, and waits for the URL it prints. `dataDir` and `port` can be given to restart on the same store.
 */
export async function spawnCoordinator(options: SpawnOptions = {}): Promise<SpawnedCoordinator> {
  const launched = await launch('coordinator/main.ts', options, 'ignore')
  const [, url] = await launched.waitFor(CONTRIBUTE_LINE, 'print its URL')
  return spawned(launched, url!)
}

/**
 * Starts a coordinator process that loads its modules and then waits (coordinator/testing/warmStart.ts) until
 * `start()` runs coordinator/main.ts in it, with the settings given here. It holds no store and no port
 * meanwhile, so it can be prepared while the coordinator it will replace still runs: a test restarting a
 * coordinator many times then spends its restarts on the coordinator's recovery, not on loading modules.
 */
export async function prepareCoordinator(options: SpawnOptions = {}): Promise<PreparedCoordinator> {
  const launched = await launch('coordinator/testing/warmStart.ts', options, 'pipe')
  const ready = launched.waitFor(/\[warm\] modules loaded\n/, 'load its modules')
  // Not awaited here: a caller may prepare now and start later; start() waits for it.
  ready.catch(() => {})
  return {
    dataDir: launched.dataDir,
    async start() {
      await ready
      const from = launched.output().length
      launched.child.stdin!.end('start\n')
      const [, url] = await launched.waitFor(CONTRIBUTE_LINE, 'print its URL', from)
      return spawned(launched, url!)
    },
    async discard() {
      await spawned(launched, '').kill('SIGKILL')
    },
  }
}

export async function removeDataDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}
