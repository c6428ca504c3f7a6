/**
 * Starts a local anvil chain from the `@foundry-rs/anvil-linux-amd64` npm package: the contract tests,
 * the gas benchmark and the coordinator's embedded local chain all use it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { defineChain, type Chain } from 'viem'
import { mnemonicToAccount } from 'viem/accounts'
import { keepGoodCopies, restoreStateFile } from './anvilState.ts'

/** The well-known development mnemonic anvil funds by default. Never hold real funds with it. */
export const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk'

export function anvilAccount(index: number) {
  return mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: index })
}

export interface AnvilOptions {
  /** 0 (the default) lets anvil pick a free port, so parallel test files never collide. */
  port?: number
  host?: string
  chainId?: number
  /**
   * Persists the chain state to this file (`--state`, dumped every second) and reloads it on start; a file a
   * crash cut short is replaced by the last whole copy first (anvilState.ts).
   */
  stateFile?: string
  /** Seconds between blocks; without it anvil mines one block per transaction. */
  blockTime?: number
  /** How long to wait for the RPC to answer, in milliseconds (default 15,000). */
  startTimeoutMs?: number
}

export interface AnvilInstance {
  rpcUrl: string
  port: number
  chainId: number
  process: ChildProcess
  stop(): Promise<void>
}

export class AnvilNotFoundError extends Error {
  override name = 'AnvilNotFoundError'
}

export class AnvilStartError extends Error {
  override name = 'AnvilStartError'
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(`${message}\n--- anvil output ---\n${output || '(none)'}`)
  }
}

export function anvilBinaryPath(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new AnvilNotFoundError(
      `the bundled anvil binary is for linux x64 only, this is ${process.platform} ${process.arch}; install Foundry's anvil for this platform`,
    )
  }
  let packageJson: string
  try {
    packageJson = createRequire(import.meta.url).resolve('@foundry-rs/anvil-linux-amd64/package.json')
  } catch {
    throw new AnvilNotFoundError('@foundry-rs/anvil-linux-amd64 is not installed; run npm install')
  }
  const binary = join(dirname(packageJson), 'bin', 'anvil')
  if (!existsSync(binary)) throw new AnvilNotFoundError(`anvil binary missing at ${binary}; reinstall @foundry-rs/anvil-linux-amd64`)
  return binary
}

/** A viem chain for an anvil instance; its id is whatever `--chain-id` was. */
export function anvilChain(instance: Pick<AnvilInstance, 'chainId' | 'rpcUrl'>): Chain {
  return defineChain({
    id: instance.chainId,
    name: 'Anvil',
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [instance.rpcUrl] } },
  })
}

const running = new Set<ChildProcess>()
let exitHookInstalled = false

function installExitHook() {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // Only 'exit': adding SIGINT/SIGTERM handlers would change how the host process itself shuts down.
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL')
  })
}

const OUTPUT_LIMIT = 16_384

async function rpcChainId(rpcUrl: string): Promise<number | null> {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(1_000),
    })
    const body = (await response.json()) as { result?: string }
    return typeof body.result === 'string' ? Number(BigInt(body.result)) : null
  } catch {
    return null
  }
}

export async function startAnvil(options: AnvilOptions = {}): Promise<AnvilInstance> {
  const host = options.host ?? '127.0.0.1'
  const chainId = options.chainId ?? 31337
  const args = ['--host', host, '--port', String(options.port ?? 0), '--chain-id', String(chainId), '--mnemonic', ANVIL_MNEMONIC]
  if (options.stateFile !== undefined) {
    await restoreStateFile(options.stateFile)
    args.push('--state', options.stateFile, '--state-interval', '1')
  }
  if (options.blockTime !== undefined) args.push('--block-time', String(options.blockTime))

  // Not --quiet: with port 0 the "Listening on" line is the only way to learn the port. The output is
  // drained continuously (a full pipe would stall anvil) and only its tail is kept, for error messages.
  const child = spawn(anvilBinaryPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
  running.add(child)
  installExitHook()

  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal }
      running.delete(child)
      resolve()
    })
  })
  let spawnError: Error | null = null
  child.once('error', (error) => {
    spawnError = error
  })

  const port = await new Promise<number>((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => fail(new AnvilStartError('anvil did not report its port in time', output)), options.startTimeoutMs ?? 15_000)
    const fail = (error: Error) => {
      clearTimeout(timer)
      child.stdout.off('data', onData)
      reject(error)
    }
    const onData = (chunk: Buffer) => {
      seen = (seen + chunk.toString('utf8')).slice(-4_096)
      const match = /Listening on \S+:(\d+)/.exec(seen)
      if (match?.[1] !== undefined) {
        clearTimeout(timer)
        child.stdout.off('data', onData)
        resolve(Number(match[1]))
      }
    }
    child.stdout.on('data', onData)
    child.once('exit', () => fail(new AnvilStartError(`anvil exited before listening (${JSON.stringify(exited)})`, output)))
    child.once('error', (error) => fail(new AnvilStartError(`cannot run anvil: ${error.message}`, output)))
  }).catch(async (error: unknown) => {
    child.kill('SIGKILL')
    await exitPromise
    throw error
  })

  const rpcHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host
  const rpcUrl = `http://${rpcHost}:${port}`
  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000)
  for (;;) {
    const answered = await rpcChainId(rpcUrl)
    if (answered === chainId) break
    if (answered !== null) {
      child.kill('SIGKILL')
      throw new AnvilStartError(`anvil answered chain id ${answered}, expected ${chainId}`, output)
    }
    if (exited !== null || spawnError !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      await exitPromise
      throw new AnvilStartError(exited !== null ? `anvil exited (${JSON.stringify(exited)})` : 'anvil did not answer eth_chainId in time', output)
    }
    await new Promise((r) => setTimeout(r, 20))
  }

  const copies = options.stateFile !== undefined ? keepGoodCopies(options.stateFile) : null
  void exitPromise.then(() => copies?.stop())
  let stopping: Promise<void> | null = null
  const stop = () => {
    stopping ??= (async () => {
      await copies?.stop()
      if (exited !== null) return
      // SIGINT is anvil's graceful shutdown, which also writes the final --state dump.
      child.kill('SIGINT')
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exitPromise
      clearTimeout(killer)
    })()
    return stopping
  }

  return { rpcUrl, port, chainId, process: child, stop }
}
