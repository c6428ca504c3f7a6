/**
 * A coordinator in a process of its own for the benchmarks (bench/throughput.ts, bench/network.ts), so that
 * its CPU is measured apart from the simulated contributors': embedded PGlite (or `databaseUrl`), chain off,
 * serving jobs made from the MNIST MLP preset with the benchmark's training and verification settings.
 * This file is also the child's entry: forked with the argument `serve`.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ClaimDomainParams, Hash, JobSpec, VerificationPolicy } from '../../src/protocol/index.ts'

type CreateJob = { type: 'createJob'; id: number; name: string; training: Partial<JobSpec['training']>; verification?: VerificationPolicy }
type ToServer = CreateJob | { type: 'cpu'; id: number } | { type: 'stop'; id: number }
type FromServer = { type: 'ready'; url: string; domain: ClaimDomainParams; coordinatorId: string } | { type: 'reply'; id: number; value: unknown; error?: string }

export interface CreatedBenchJob {
  jobId: Hash
  spec: JobSpec
  /** The initial weights' bytes, for contributors that make up their updates. */
  initialWeights: number[]
}

async function serve(): Promise<void> {
  const { startTemporaryCoordinator } = await import('../../coordinator/testing/inProcess.ts')
  const { buildMnistPreset } = await import('../../coordinator/presets/mnist.ts')
  const coordinator = await startTemporaryCoordinator({
    databaseUrl: process.env.BENCH_DATABASE_URL || undefined,
    chain: { mode: 'off', chainId: 31337, verifyingContract: '0x00000000000000000000000000000000000000B1' },
  })
  const preset = await buildMnistPreset({ paid: false })
  const send = (message: FromServer) => process.send!(message)
  process.on('message', async (message: ToServer) => {
    try {
      if (message.type === 'createJob') {
        const spec: JobSpec = {
          ...preset.spec,
          name: message.name,
          training: { ...preset.spec.training, ...message.training },
          ...(message.verification ? { verification: message.verification } : {}),
        }
        const jobId = await coordinator.jobs.createJob(spec, preset.blobs.values())
        const value: CreatedBenchJob = { jobId, spec, initialWeights: Array.from(preset.blobs.get(spec.model.initialWeights)!) }
        send({ type: 'reply', id: message.id, value })
      } else if (message.type === 'cpu') {
        send({ type: 'reply', id: message.id, value: process.cpuUsage() })
      } else {
        // A round close may still be writing into the data folder: its removal is best effort.
        await coordinator.dispose().catch((error: unknown) => console.log(`  (cleanup: ${(error as Error).message})`))
        send({ type: 'reply', id: message.id, value: null })
        process.exit(0)
      }
    } catch (error) {
      send({ type: 'reply', id: message.id, value: null, error: (error as Error).stack ?? String(error) })
    }
  })
  const info = (await (await fetch(`${coordinator.url}/api/info`)).json()) as { coordinatorId: string }
  send({ type: 'ready', url: coordinator.url, domain: coordinator.jobs.domain, coordinatorId: info.coordinatorId })
}

export class CoordinatorProcess {
  private next = 0
  private readonly pending = new Map<number, (m: FromServer & { type: 'reply' }) => void>()
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly domain: ClaimDomainParams,
    readonly coordinatorId: string,
  ) {
    child.on('message', (m: FromServer) => {
      if (m.type === 'reply') this.pending.get(m.id)?.(m)
    })
  }

  /** `databaseUrl`: PostgreSQL instead of PGlite; `profileDir`: write a V8 CPU profile of the coordinator there. */
  static async start(options: { databaseUrl?: string; profileDir?: string } = {}): Promise<CoordinatorProcess> {
    const child = fork(fileURLToPath(import.meta.url), ['serve'], {
      execArgv: ['--import', 'tsx', ...(options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] : [])],
      env: { ...process.env, BENCH_DATABASE_URL: options.databaseUrl ?? '' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    const ready = await new Promise<FromServer & { type: 'ready' }>((resolve, reject) => {
      child.once('message', (m: FromServer) => (m.type === 'ready' ? resolve(m) : reject(new Error('unexpected message'))))
      child.once('exit', (code) => reject(new Error(`the coordinator process exited (${code})`)))
    })
    return new CoordinatorProcess(child, ready.url, ready.domain, ready.coordinatorId)
  }

  private call<T>(message: ToServer extends infer M ? (M extends ToServer ? Omit<M, 'id'> : never) : never): Promise<T> {
    const id = this.next++
    return new Promise((resolve, reject) => {
      this.pending.set(id, (m) => {
        this.pending.delete(id)
        if (m.error) reject(new Error(m.error))
        else resolve(m.value as T)
      })
      this.child.send({ ...message, id })
    })
  }

  /** A job of the MNIST MLP preset under `name`, with `training` overridden and, if given, its own checks. */
  createJob(name: string, training: Partial<JobSpec['training']>, verification?: VerificationPolicy): Promise<CreatedBenchJob> {
    return this.call<CreatedBenchJob>({ type: 'createJob', name, training, verification })
  }

  /** CPU seconds the coordinator's process has used so far (user + system). */
  async cpuSeconds(): Promise<number> {
    const { user, system } = await this.call<NodeJS.CpuUsage>({ type: 'cpu' })
    return (user + system) / 1e6
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    await this.call({ type: 'stop' })
    await exited
  }
}

if (process.argv[2] === 'serve') await serve()
