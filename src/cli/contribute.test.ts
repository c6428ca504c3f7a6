import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BARELY_CHECKED, TEST_DOMAIN, jobVariant, leased, signedLease, testJobBase } from '../../coordinator/testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../../coordinator/testing/inProcess.ts'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { parseJobSpec, type Hash, type TrainingConfig } from '../protocol/index.ts'
import { main } from './main.ts'
import { capturedIo } from './testing.ts'

/**
 * `tabtrain contribute` as a person runs it: the real command (bin/tabtrain.js) in a child process against
 * a coordinator in this process, on the cpu backend, with small jobs so each case takes seconds.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIN = join(ROOT, 'bin/tabtrain.js')

interface Run {
  child: ChildProcess
  /** stdout and stderr so far. */
  out(): string
  exited: Promise<number | null>
}

function tabtrain(args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  child.stdout!.on('data', (chunk: Buffer) => (text += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, out: () => text, exited }
}

/** Polls `check` until it returns something truthy (or `run` exits first, which fails with its output). */
async function until<T>(what: string, check: () => Promise<T | null | undefined | false>, run: Run | null, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let gone = false
  void run?.exited.then(() => (gone = true))
  for (;;) {
    const value = await check()
    if (value) return value
    if (gone) throw new Error(`tabtrain exited before ${what}:\n${run!.out()}`)
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${run?.out() ?? ''}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

const addressIn = (output: string) => (/address (0x[0-9a-fA-F]{40})/.exec(output)?.[1] as `0x${string}` | undefined) ?? null

describe('tabtrain contribute', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let dir: string
  let jobs = 0

  /** A volunteer job with the test base's small held-out set, barely checked (verification has its own suites). */
  const createJob = async (training: Partial<TrainingConfig>) => {
    const base = await testJobBase()
    const spec = parseJobSpec({ ...jobVariant(base.spec, `cli test job ${++jobs}`, { rounds: 100, leaseTtlSeconds: 60, ...training }), verification: BARELY_CHECKED })
    return (await coordinator.jobs.createJob(spec, base.blobs)) as Hash
  }
  const accepted = async (jobId: Hash, address: string) =>
    (await client.progress(jobId)).contributors.find((c) => c.address.toLowerCase() === address.toLowerCase())?.acceptedUnits ?? 0

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-cli-'))
  })

  afterAll(async () => {
    await coordinator?.dispose()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('creates a 0600 key file on first run, trains units accepted for its address, reuses the key, and stops on SIGINT with the lease handed back', { timeout: 120_000 }, async () => {
    const keyFile = join(dir, 'keys', 'contributor.key')
    const quick = await createJob({ innerSteps: 2, unitsPerRound: 2 })

    const first = tabtrain(['contribute', '--coordinator', coordinator.url, '--job', quick, '--key-file', keyFile, '--backend', 'cpu'])
    const address = await until('it names its address', async () => addressIn(first.out()), first)
    expect(first.out()).toContain(`Created a new key in ${keyFile} (mode 0600)`)
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600)
    expect((await stat(join(dir, 'keys'))).mode & 0o777).toBe(0o700)
    await until('units accepted for its address', async () => (await accepted(quick, address)) >= 2, first)
    first.child.kill('SIGINT')
    expect(await first.exited).toBe(0)
    expect(first.out()).toMatch(/Stopped after .*: \d+ units? answered \(\d+ accepted, 0 refused\)/)

    // Second run, same key file: the same address. On a job of one long unit a round, stopped mid-unit.
    const slow = await createJob({ innerSteps: 2_000, unitsPerRound: 1 })
    const second = tabtrain(['contribute', '--coordinator', coordinator.url, '--job', slow, '--key-file', keyFile, '--backend', 'cpu'])
    await until('the unit is leased', async () => (await client.unit(slow, 0, 0)).status === 'leased', second)
    expect(second.out()).toContain(`Key: ${keyFile} (address ${address})`)
    second.child.kill('SIGINT')
    expect(await second.exited).toBe(0)
    expect(second.out()).toContain('handed unit 0 of round 0 back to the coordinator')
    // Handed back, not left to run out: another address gets that very unit now.
    expect((await client.unit(slow, 0, 0)).status).toBe('open')
    const other = leased(await signedLease(client, privateKeyToAccount(generatePrivateKey()), slow))
    expect(other.unit).toMatchObject({ round: 0, unit: 0 })
    expect((await client.reputation(address)).leasesAbandoned).toBe(0)
  })

  it('picks the first active job when --job is not given, and says so', { timeout: 60_000 }, async () => {
    const run = tabtrain(['contribute', '--coordinator', coordinator.url, '--key-file', join(dir, 'pick.key'), '--backend', 'cpu'])
    const line = await until('it names the job', async () => /Job: .*\n\s+(0x[0-9a-f]{64})/.exec(run.out()), run)
    const firstActive = (await client.listJobs()).find((j) => j.status === 'active')!
    expect(line[1]).toBe(firstActive.id)
    expect(line[0]).toMatch(/the first of \d+ active jobs the coordinator lists/)
    run.child.kill('SIGTERM')
    expect(await run.exited).toBe(0)
  })

  it('refuses bad arguments with exit status 2 and a sentence naming them', { timeout: 30_000 }, async () => {
    // Through the real command once (its exit status); every other bad argument is in cli.test.ts.
    const run = tabtrain(['contribute', '--coordinator', 'ftp://example.org'])
    expect(await run.exited).toBe(2)
    expect(run.out()).toMatch(/--coordinator "ftp:\/\/example\.org" is not an http\(s\) URL/)
  })

  it('says what is wrong with an unreachable coordinator, an unknown job and a malformed key file (exit status 1)', { timeout: 60_000 }, async () => {
    // A port nobody listens on: bound, then closed.
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    await new Promise((resolve) => server.close(resolve))
    const malformed = join(dir, 'malformed.key')
    await writeFile(malformed, 'not a key\n', { mode: 0o600 })
    const unknownJob = `0x${'ab'.repeat(32)}`
    const key = join(dir, 'a.key')
    const cases: Array<[string[], string | RegExp]> = [
      [['--coordinator', `http://127.0.0.1:${port}`, '--key-file', key], new RegExp(`cannot reach the coordinator at http://127\\.0\\.0\\.1:${port}.*Check the address`)],
      [['--coordinator', coordinator.url, '--job', unknownJob, '--key-file', key], `has no job ${unknownJob}. Its active jobs: ${coordinator.presetJobId}`],
      [['--coordinator', coordinator.url, '--key-file', malformed], `the key file ${malformed} does not hold a private key`],
      [['--coordinator', coordinator.url, '--key-file', dir], `cannot use the key file ${dir}: it is a folder`],
    ]
    // In this process (main() is what bin/tabtrain.js exits with): a child each would cost seconds of start-up.
    for (const [args, message] of cases) {
      const io = capturedIo()
      expect(await main(['contribute', ...args], io), io.text()).toBe(1)
      if (typeof message === 'string') expect(io.text()).toContain(message)
      else expect(io.text()).toMatch(message)
    }
  })

  it('trains on WebGPU through Dawn with --backend webgpu and claims a webgpu device class (skipped without an adapter)', { timeout: 120_000 }, async (ctx) => {
    const job = await createJob({ innerSteps: 1, unitsPerRound: 2 })
    const run = tabtrain(['contribute', '--coordinator', coordinator.url, '--job', job, '--key-file', join(dir, 'gpu.key'), '--backend', 'webgpu'])
    const outcome = await Promise.race([
      run.exited.then((code) => ({ exited: code })),
      until('a unit accepted', async () => {
        const address = addressIn(run.out())
        return address && (await accepted(job, address)) >= 1 ? { address } : null
      }, null, 110_000),
    ])
    if ('exited' in outcome) {
      if (outcome.exited === 1 && /no WebGPU here/.test(run.out())) ctx.skip(`no WebGPU adapter: ${run.out()}`)
      throw new Error(`tabtrain exited (${outcome.exited}) before a unit was accepted:\n${run.out()}`)
    }
    run.child.kill('SIGINT')
    expect(await run.exited).toBe(0)
    expect(run.out()).toMatch(/Backend: webgpu \(Dawn [\d.]+\) on /)
    const unit = await client.unit(job, 0, 0)
    expect(unit.contributor?.toLowerCase()).toBe(outcome.address.toLowerCase())
    expect(unit.deviceClass).toMatch(/^webgpu\|[^|]+\/[^|]+\|node-\d+-dawn-[\d.]+\|/)
  })
})
