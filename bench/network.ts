/**
 * `npm run bench` (`tsx bench/network.ts`): writes bench/results/network.md and network.json.
 *
 * Question: with real training, how many examples a second go through the network (coordinator + Node
 * contributors) against the same training in a plain single-process loop, how much of each contributor's
 * session is spent training, and what held-out accuracy the job reaches.
 *
 * Every party is its own process, as in production:
 * - the plain loop: the job's inner optimizer (Adam, lr 0.003) one step per batch of 32 on the preset's
 *   8,000 training digits, on the same tfjs backend, for the same wall time; evaluated on the 2,000 held-out
 *   digits every few hundred steps with its clock stopped (evaluation is the coordinator's job on the
 *   network, so it is not charged to the loop either).
 * - the coordinator: `startCoordinator` on an embedded PGlite store, chain off (coordinator/testing/inProcess.ts),
 *   running an asynchronous copy of the MNIST MLP preset: maxStaleness 2, int8 updates in blocks of 256, outer
 *   Nesterov lr 0.4 μ 0.5 (the presets'; BENCH_NETWORK_OUTER), H inner steps a unit (BENCH_NETWORK_INNER_STEPS), K = 4. Round
 *   closes (aggregation, held-out evaluation) are real.
 * - N contributors: each the real pull loop (src/worker/scheduler.ts: prefetch of the next lease and
 *   checkpoint, background upload) around the real unit runner (src/worker/unitRunner.ts → trainUnit), as
 *   createNodeContributor builds it, on the chosen backend.
 *
 * Examples / s = training examples in accepted units / session wall time (from the contributors' start,
 * model build and first downloads included). A contributor's "training" share = Σ trainUnit's train time of
 * its units / its session wall time, waits included; "computing" adds the rest of the executor's time
 * (checkpoint fetch when not prefetched, int8 encoding, hashing).
 *
 * Environment (all optional): BENCH_NETWORK_SECONDS (per row, 60), BENCH_NETWORK_CONTRIBUTORS ("1,2,4"),
 * BENCH_NETWORK_BACKEND (wasm | cpu | webgpu; wasm), BENCH_NETWORK_INNER_STEPS (H, 100),
 * BENCH_NETWORK_CHECKS (lowest | default; lowest: the smallest positive spot-check rate, no canaries, as
 * bench/throughput.ts), BENCH_NETWORK_EVAL_EVERY (plain-loop steps between evaluations, 200).
 * webgpu runs tfjs-webgpu on Dawn (the `webgpu` package; VK_ICD_FILENAMES picks the Vulkan driver, SwiftShader
 * where Chromium is installed and nothing is set) and stops with exit code 2 where no adapter exists;
 * bench/gpu.sh runs it on a real GPU.
 */
import { fork } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import {
  DEFAULT_VERIFICATION,
  decodeTensorList,
  examplesPerUnit,
  formatDeviceClass,
  jobSpecHash,
  seededU32Stream,
  type Hash,
  type JobProgress,
  type JobSpec,
  type VerificationPolicy,
} from '../src/protocol/index.ts'
import type { SchedulerEvent } from '../src/worker/scheduler.ts'
import { resultsDirectory } from './gpuPeak.ts'
import { CoordinatorProcess } from './lib/coordinatorProcess.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RESULTS = join(ROOT, 'bench/results')
const env = process.env
const positive = (name: string, fallback: number) => {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw} is not a positive number`)
  return value
}
const SECONDS = positive('BENCH_NETWORK_SECONDS', 60)
const COUNTS = (env.BENCH_NETWORK_CONTRIBUTORS || '1,2,4').split(',').map((s) => Number(s.trim())).filter((n) => n > 0)
const BACKEND = (env.BENCH_NETWORK_BACKEND || 'wasm') as Backend
const INNER_STEPS = positive('BENCH_NETWORK_INNER_STEPS', 100)
const CHECKS = env.BENCH_NETWORK_CHECKS === 'default' ? 'default' : 'lowest'
const EVAL_EVERY = positive('BENCH_NETWORK_EVAL_EVERY', 200)
type Backend = 'wasm' | 'cpu' | 'webgpu'
if (!['wasm', 'cpu', 'webgpu'].includes(BACKEND)) throw new Error(`BENCH_NETWORK_BACKEND=${BACKEND}: one of wasm, cpu, webgpu`)

/** Targets (issue 11): stated in the table, never asserted. */
const TARGET_RATIO = 0.9
const TARGET_TRAINING_FRACTION = 0.9

/** BENCH_NETWORK_OUTER: `nesterov,<lr>,<momentum>` or `average,<lr>`. */
function outerFromEnv(value: string): Partial<JobSpec['training']> {
  const [kind, lr, momentum] = value.split(',')
  if (kind === 'average') return { outerOptimizer: 'average', outerLearningRate: Number(lr ?? 1) }
  if (kind === 'nesterov') return { outerOptimizer: 'nesterov', outerLearningRate: Number(lr ?? 0.4), outerMomentum: Number(momentum ?? 0.8) }
  throw new Error(`BENCH_NETWORK_OUTER=${value}: nesterov,<lr>,<momentum> or average,<lr>`)
}

/** The job: an asynchronous copy of the MNIST MLP preset with DiLoCo's outer step and int8 updates. */
const TRAINING: Partial<JobSpec['training']> = {
  maxStaleness: 2,
  compression: { kind: 'int8', blockSize: 256 },
  ...outerFromEnv(env.BENCH_NETWORK_OUTER ?? 'nesterov,0.4,0.5'),
  innerSteps: INNER_STEPS,
  // Never finishes within a row: the row's wall time ends it.
  rounds: 100_000,
}
const LOWEST_CHECKS: VerificationPolicy = { ...DEFAULT_VERIFICATION, initialCheckRate: 1e-9, floorCheckRate: 1e-9, canaryRate: 0 }

// --- Backends ---------------------------------------------------------------------------------------

interface AdapterInfo {
  vendor: string
  architecture: string
  description: string
}

interface BackendInfo {
  backend: Backend
  /** The WebGPU adapter, for webgpu. */
  adapter?: AdapterInfo
}

/** Exit code of a process that could not get the backend asked for (no WebGPU adapter). */
const NO_BACKEND_EXIT = 2

async function useBackend(backend: Backend): Promise<BackendInfo> {
  if (backend === 'webgpu') {
    const { setupTfjsWebgpu } = await import('../src/kernels/testing/tfjsWebgpu.ts')
    const { isUnavailable } = await import('../src/kernels/device.ts')
    const setup = await setupTfjsWebgpu()
    if (isUnavailable(setup)) {
      console.error(`bench/network.ts: BENCH_NETWORK_BACKEND=webgpu but WebGPU is unavailable here: ${setup.unavailable}`)
      process.exit(NO_BACKEND_EXIT)
    }
    const { activateKernelBundle } = await import('../src/kernels/config.ts')
    activateKernelBundle()
    // The device's adapterInfo where Dawn has it; tfjs's copy (vendor and architecture only) otherwise.
    const info = ((setup.backend.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? setup.backend.adapterInfo) as unknown as Partial<GPUAdapterInfo> | undefined
    return { backend, adapter: { vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', description: info?.description ?? '' } }
  }
  if (backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm')
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs's ${backend} backend did not start`)
  await tf.ready()
  return { backend }
}

// --- The plain loop (its own process) ----------------------------------------------------------------

interface CurvePoint {
  examples: number
  accuracy: number
  loss: number
}

interface PlainResult {
  adapter?: AdapterInfo
  steps: number
  examples: number
  /** Training time only (evaluation excluded). */
  trainSeconds: number
  wallSeconds: number
  examplesPerSecond: number
  curve: CurvePoint[]
  cpuFraction: number
}

async function plainLoop(): Promise<PlainResult> {
  const { adapter } = await useBackend(BACKEND)
  const { buildMnistPreset } = await import('../coordinator/presets/mnist.ts')
  const { buildModel, setModelWeights } = await import('../src/training/model.ts')
  const { gatherBatch } = await import('../src/training/batches.ts')
  const { evaluateModel } = await import('../src/training/evaluate.ts')
  const preset = await buildMnistPreset({ paid: false })
  const spec = preset.spec
  const { batchSize, learningRate } = spec.training
  const model = await buildModel(spec)
  setModelWeights(model, decodeTensorList(preset.blobs.get(spec.model.initialWeights)!))
  const optimizer = spec.training.innerOptimizer === 'adam' ? tf.train.adam(learningRate) : tf.train.sgd(learningRate)
  // Batches drawn with replacement, as units draw theirs.
  const next = seededU32Stream(`tabtrain/bench/network/plain/${jobSpecHash(spec)}`)
  const indices = new Uint32Array(batchSize)
  const curve: CurvePoint[] = []
  const evaluate = async (examples: number) => {
    const e = await evaluateModel(model, spec, preset.heldOut)
    curve.push({ examples, accuracy: e.accuracy, loss: e.loss })
  }
  await evaluate(0)
  const cpu0 = process.cpuUsage()
  const wall0 = performance.now()
  let trainMs = 0
  let steps = 0
  while (trainMs < SECONDS * 1000) {
    const t0 = performance.now()
    for (let i = 0; i < EVAL_EVERY && trainMs + (performance.now() - t0) < SECONDS * 1000; i++) {
      for (let j = 0; j < batchSize; j++) indices[j] = Math.floor((next() * preset.train.count) / 0x1_0000_0000)
      const { x, y } = gatherBatch(preset.train, indices, spec.data.inputShape, spec.data.classes, spec.data.scale, spec.data.inputEncoding)
      optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar)
      tf.dispose([x, y])
      steps++
    }
    // Nothing is read back per step (the loop's best case); one small read waits for the queued steps (webgpu).
    await model.weights.at(-1)!.read().data()
    trainMs += performance.now() - t0
    await evaluate(steps * batchSize)
  }
  const cpu = process.cpuUsage(cpu0)
  const wallSeconds = (performance.now() - wall0) / 1000
  return {
    ...(adapter ? { adapter } : {}),
    steps,
    examples: steps * batchSize,
    trainSeconds: trainMs / 1000,
    wallSeconds,
    examplesPerSecond: (steps * batchSize) / (trainMs / 1000),
    curve,
    cpuFraction: (cpu.user + cpu.system) / 1e6 / wallSeconds,
  }
}

// --- A contributor (its own process) ---------------------------------------------------------------------

interface ContributorResult {
  sessionSeconds: number
  /** Units whose computation finished within the session, and of them the ones accepted / refused. */
  unitsComputed: number
  unitsAccepted: number
  unitsRefused: number
  refusals: Record<string, number>
  examplesAccepted: number
  /** Σ trainUnit train time (inner steps + the one read back) of units finished in the session, ms, and their examples. */
  trainMs: number
  examplesTrained: number
  /** Σ executor time (fetch + train + encode + hash) clipped to the session, ms, the unfinished unit's share included. */
  computeMs: number
  /** Of computeMs: fetching the checkpoint / shards inside the unit (not prefetched). */
  fetchMs: number
  /** Median gap between one unit's computation and the next one's start (the scheduler's own time). */
  idleMedianMs: number
  waits: number
  errors: string[]
  cpuFraction: number
}

async function contribute(): Promise<ContributorResult> {
  await useBackend(BACKEND)
  const { CoordinatorClient } = await import('../src/client/coordinatorClient.ts')
  const { memoryCached } = await import('../src/worker/blobSource.ts')
  const { Scheduler } = await import('../src/worker/scheduler.ts')
  const { createUnitRunner } = await import('../src/worker/unitRunner.ts')
  const { useCpuKernelsFor } = await import('../src/worker/cpuKernels.ts')
  const { KERNEL_BUNDLE, activateKernelBundle } = await import('../src/kernels/config.ts')
  const url = env.BENCH_NETWORK_URL!
  const jobId = env.BENCH_NETWORK_JOB as Hash
  const deviceClass = (bundle: string) =>
    formatDeviceClass({ backend: BACKEND, vendor: 'node', architecture: process.arch, engine: `node-${process.versions.node.split('.')[0]}`, kernelBundle: bundle })

  // As createNodeContributor (src/worker/nodeContributor.ts), with the backend a parameter; each executor
  // call is timed here so a unit cut off by the end of the session still counts up to that moment.
  const client = new CoordinatorClient(url)
  const runner = createUnitRunner(memoryCached({ get: (hash) => client.blob(hash) }))
  let running: number | null = null
  let computeMs = 0
  let trainMs = 0
  let examplesTrained = 0
  let fetchMs = 0
  let unitsComputed = 0
  let unitsAccepted = 0
  let unitsRefused = 0
  let examplesAccepted = 0
  let waits = 0
  const refusals: Record<string, number> = {}
  const idle: number[] = []
  const errors: string[] = []
  let closed = false
  const scheduler = new Scheduler({
    client,
    executor: {
      async runUnit(spec, unit) {
        if (BACKEND === 'webgpu') activateKernelBundle(spec.kernelBundle)
        else await useCpuKernelsFor(spec, BACKEND)
        const t0 = performance.now()
        running = t0
        try {
          const output = await runner.run(spec, unit)
          if (!closed) {
            computeMs += performance.now() - t0
            trainMs += output.timings.trainMs
            examplesTrained += output.examples
            fetchMs += output.timings.fetchMs
            unitsComputed++
          }
          return { ...output, deviceClass: deviceClass(spec.kernelBundle) }
        } finally {
          running = null
        }
      },
      prefetch: (spec, unit) => runner.prefetch(spec, unit),
    },
    signer: privateKeyToAccount(generatePrivateKey()),
    deviceClass: deviceClass(KERNEL_BUNDLE),
    jobId,
    onEvent(event: SchedulerEvent) {
      if (event.type === 'unit-accepted') {
        unitsAccepted++
        examplesAccepted += event.report.examples
        if (event.report.idleBeforeMs !== null) idle.push(event.report.idleBeforeMs)
      } else if (event.type === 'unit-refused') {
        unitsRefused++
        refusals[event.code] = (refusals[event.code] ?? 0) + 1
      } else if (event.type === 'waiting') waits++
      else if (event.type === 'error' || event.type === 'stopped') errors.push(event.type === 'error' ? event.message : event.reason)
    },
  })
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  scheduler.start()
  await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
  const end = performance.now()
  closed = true
  if (running !== null) computeMs += end - running
  // Hands a unit in flight back and lands the uploads on their way (units computed in the session).
  await scheduler.stop()
  const cpu = process.cpuUsage(cpu0)
  const sessionSeconds = (end - start) / 1000
  const sorted = [...idle].sort((a, b) => a - b)
  return {
    sessionSeconds,
    unitsComputed,
    unitsAccepted,
    unitsRefused,
    refusals,
    examplesAccepted,
    trainMs,
    examplesTrained,
    computeMs,
    fetchMs,
    idleMedianMs: sorted[Math.floor(sorted.length / 2)] ?? NaN,
    waits,
    errors: errors.slice(0, 5),
    cpuFraction: (cpu.user + cpu.system) / 1e6 / ((performance.now() - start) / 1000),
  }
}

/** Runs this file in `mode` in a child process and resolves with what it sends back. */
function child<T>(mode: string, extraEnv: Record<string, string> = {}): Promise<T> {
  const proc = fork(fileURLToPath(import.meta.url), [mode], { execArgv: ['--import', 'tsx'], env: { ...env, ...extraEnv }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    let result: T | undefined
    proc.on('message', (m: T) => (result = m))
    proc.once('exit', (code) => {
      if (code === NO_BACKEND_EXIT) process.exit(NO_BACKEND_EXIT)
      if (result !== undefined) resolve(result)
      else reject(new Error(`the ${mode} process exited (${code}) without a result`))
    })
  })
}

// --- The run ----------------------------------------------------------------------------------------

interface NetworkRow {
  contributors: number
  seconds: number
  examplesAccepted: number
  examplesPerSecond: number
  ratio: number
  /** Per contributor: training share and computing share of its session. */
  trainingFractions: number[]
  computingFractions: number[]
  /** Per contributor: examples / s of trainUnit's training time (the device's speed inside units, under whatever load). */
  unitTrainingSpeeds: number[]
  loadAverage: number
  unitsAccepted: number
  unitsRefused: number
  refusals: Record<string, number>
  roundsClosed: number
  /** Held-out accuracy of the last closed round's checkpoint, and the examples averaged into it. */
  accuracy: number | null
  accuracyExamples: number
  /** The plain loop's held-out accuracy after as many examples (interpolated between its evaluations). */
  plainAccuracyAtExamples: number | null
  /** The job's closed rounds: held-out accuracy and answers averaged, round by round (in the JSON). */
  history: { round: number; units: number; heldOutAccuracy: number; heldOutLoss: number }[]
  coordinatorCpuFraction: number
  contributorCpuFractions: number[]
  idleMedianMs: number[]
  errors: string[]
}

/** Held-out accuracy on `curve` after `examples`, linear between evaluations; null beyond its last one. */
function accuracyAt(curve: CurvePoint[], examples: number): number | null {
  for (let i = 1; i < curve.length; i++) {
    const a = curve[i - 1]!
    const b = curve[i]!
    if (examples <= b.examples) return a.accuracy + ((b.accuracy - a.accuracy) * (examples - a.examples)) / (b.examples - a.examples)
  }
  return null
}

async function network(server: CoordinatorProcess, n: number, reference: number): Promise<NetworkRow> {
  const load = loadavg()[0]!
  const { jobId, spec } = await server.createJob(`bench: network, ${n} contributors`, TRAINING, CHECKS === 'lowest' ? LOWEST_CHECKS : undefined)
  const perUnit = examplesPerUnit(spec.training)
  const cpu0 = await server.cpuSeconds()
  const wall0 = performance.now()
  const results = await Promise.all(
    Array.from({ length: n }, () => child<ContributorResult>('contribute', { BENCH_NETWORK_URL: server.url, BENCH_NETWORK_JOB: jobId })),
  )
  const coordinatorCpuFraction = ((await server.cpuSeconds()) - cpu0) / ((performance.now() - wall0) / 1000)
  const progress = (await (await fetch(`${server.url}/api/jobs/${jobId}/progress`)).json()) as JobProgress
  const last = progress.history.at(-1)
  const accuracyExamples = progress.history.reduce((sum, r) => sum + r.units * perUnit, 0)
  const seconds = Math.max(...results.map((r) => r.sessionSeconds))
  const examplesAccepted = results.reduce((sum, r) => sum + r.examplesAccepted, 0)
  const refusals: Record<string, number> = {}
  for (const r of results) for (const [code, count] of Object.entries(r.refusals)) refusals[code] = (refusals[code] ?? 0) + count
  const row: NetworkRow = {
    contributors: n,
    seconds,
    examplesAccepted,
    examplesPerSecond: examplesAccepted / seconds,
    ratio: examplesAccepted / seconds / reference,
    trainingFractions: results.map((r) => r.trainMs / 1000 / r.sessionSeconds),
    unitTrainingSpeeds: results.map((r) => r.examplesTrained / (r.trainMs / 1000)),
    loadAverage: load,
    computingFractions: results.map((r) => r.computeMs / 1000 / r.sessionSeconds),
    unitsAccepted: results.reduce((s, r) => s + r.unitsAccepted, 0),
    unitsRefused: results.reduce((s, r) => s + r.unitsRefused, 0),
    refusals,
    roundsClosed: progress.history.length,
    accuracy: last?.heldOutAccuracy ?? null,
    accuracyExamples,
    plainAccuracyAtExamples: null,
    history: progress.history.map((r) => ({ round: r.round, units: r.units, heldOutAccuracy: r.heldOutAccuracy, heldOutLoss: r.heldOutLoss })),
    coordinatorCpuFraction,
    contributorCpuFractions: results.map((r) => r.cpuFraction),
    idleMedianMs: results.map((r) => r.idleMedianMs),
    errors: results.flatMap((r) => r.errors),
  }
  return row
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`
const pct1 = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`)

function table(header: string[], rows: (string | number)[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

/**
 * Where the tables go: bench/results/network.* for cpu and wasm; a WebGPU run writes network-webgpu.* beside
 * the kernel tables of its adapter (bench/gpuPeak.ts: bench/results/gpu/<adapter>/ for a real GPU,
 * bench/results for SwiftShader), so it never overwrites the CPU tables. BENCH_NETWORK_RESULTS overrides the folder.
 */
function resultsFile(adapter: AdapterInfo | undefined): { dir: string; name: string } {
  const name = BACKEND === 'webgpu' ? 'network-webgpu' : 'network'
  if (env.BENCH_NETWORK_RESULTS) return { dir: env.BENCH_NETWORK_RESULTS, name }
  if (BACKEND !== 'webgpu' || !adapter) return { dir: RESULTS, name }
  return { dir: resultsDirectory(ROOT, { info: adapter } as unknown as GPUAdapter), name }
}

async function main() {
  const cores = cpus().length
  const machine = `${cores} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${loadavg()[0]!.toFixed(1)} at start`
  console.log(`network: plain loop on ${BACKEND} for ${SECONDS} s…`)
  const plainRun = async () => {
    const load = loadavg()[0]!
    const result = await child<PlainResult>('plain')
    console.log(`  plain loop: ${result.examplesPerSecond.toFixed(0)} examples/s, held-out ${pct1(result.curve.at(-1)!.accuracy)} after ${result.examples} examples`)
    return { ...result, loadAverage: load }
  }
  const plain = await plainRun()
  // The machine is shared and its load changes from minute to minute: the plain loop runs again after the
  // network rows and the ratio is taken against the mean of its two runs.
  let reference = plain.examplesPerSecond
  const rows: NetworkRow[] = []
  const adapter = plain.adapter
  const server = await CoordinatorProcess.start()
  try {
    for (const n of COUNTS) {
      console.log(`network: ${n} contributor(s) on ${BACKEND} for ${SECONDS} s…`)
      const row = await network(server, n, reference)
      rows.push(row)
      console.log(
        `  ${n}: ${row.examplesPerSecond.toFixed(0)} examples/s (${row.ratio.toFixed(2)}× the plain loop), training ${row.trainingFractions.map(pct).join(' ')}, ` +
          `${row.unitsAccepted} units accepted, ${row.unitsRefused} refused, held-out ${pct1(row.accuracy)} after ${row.accuracyExamples} examples` +
          (row.errors.length ? `; errors: ${row.errors.join(' | ')}` : ''),
      )
    }
  } finally {
    await server.stop()
  }
  console.log(`network: plain loop on ${BACKEND} again…`)
  const plainAfter = await plainRun()
  reference = (plain.examplesPerSecond + plainAfter.examplesPerSecond) / 2
  // Both plain runs train the same batches in the same order, so the longer one's curve covers the other's.
  const curve = plainAfter.examples > plain.examples ? plainAfter.curve : plain.curve
  for (const row of rows) {
    row.ratio = row.examplesPerSecond / reference
    row.plainAccuracyAtExamples = row.accuracyExamples > 0 ? accuracyAt(curve, row.accuracyExamples) : null
  }

  const adapterLine = adapter ? [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' / ') || 'adapter unknown' : ''
  const backendLabel = BACKEND === 'webgpu' ? `webgpu (tfjs-webgpu on Dawn, ${adapterLine}; VK_ICD_FILENAMES=${env.VK_ICD_FILENAMES ?? ''})` : `tfjs ${BACKEND}`
  const unitExamples = INNER_STEPS * 32
  const md = [
    '# Examples per second through the network, with real training',
    '',
    `Run ${new Date().toISOString()} on ${machine}. Reproduce with \`tsx bench/network.ts\` (part of \`npm run bench\`; environment variables in the file's header). This run: backend ${backendLabel}, ${SECONDS} s per row, H = ${INNER_STEPS}.`,
    '',
    `The job: an asynchronous copy of the MNIST MLP preset (784-64-10, Adam lr 0.003 inside units, batches of 32, H = ${INNER_STEPS} steps a unit = ${unitExamples} examples, K = 4), maxStaleness 2, int8 updates in blocks of 256, outer ${TRAINING.outerOptimizer} lr ${TRAINING.outerLearningRate}${TRAINING.outerOptimizer === 'nesterov' ? ` μ ${TRAINING.outerMomentum}` : ''}; ${CHECKS === 'lowest' ? 'spot checks at the smallest positive rate and no canaries (as bench/throughput.ts; bench/verification.md measures checks)' : "the preset's default checks (spot checks re-execute units on the coordinator, taking CPU from the contributors)"}. The coordinator (PGlite, chain off) and each contributor are separate processes: the real pull loop (src/worker/scheduler.ts, with prefetch of the next lease and checkpoint and background upload) around the real unit runner (trainUnit). The plain loop is the same inner optimizer and batch on the same backend, one process, one step per batch, evaluated with its clock stopped.`,
    '',
    `**This machine has ${cores} cores shared by the coordinator and every contributor** (and by whatever else ran on it: see the load average). One contributor has a core to itself only while the coordinator idles; ${cores} or more contributors compete with each other and with the coordinator for CPU, so their rows measure this machine's cores, not the network's scaling (bench/throughput.md shows the coordinator's scaling with contributors whose compute is a fixed delay).`,
    '',
    `Examples / s: examples in accepted units / session wall time (model build and first downloads included); × plain loop: against the mean of the plain loop's two runs (before and after the network rows, as the machine's load moves). training: Σ trainUnit's training time / the contributor's session, waits included; computing: the executor's whole time (adds checkpoint fetches not prefetched, int8 encoding, hashing). examples / s of training time: how fast the contributor's steps ran, to set against the plain loop's: examples / s ≈ training share × that speed, so a ratio below the training share is the backend running slower in that process at that time (CPU taken by the coordinator, other contributors or other load), not time lost to the network. **Targets: 1 contributor ≥ ${TARGET_RATIO}× the plain loop; training ≥ ${100 * TARGET_TRAINING_FRACTION}% of a contributor's session** (issue 11).`,
    '',
    table(
      ['run', 'load average at start', 'examples / s', '× plain loop', 'training (each contributor)', 'computing (each)', 'examples / s of training time (each)', 'units accepted', 'refused', 'rounds closed', 'held-out accuracy (after examples)', 'plain loop at as many examples', 'CPU: coordinator / each contributor'],
      [
        ...[plain, plainAfter].map((p, i) => [
          `plain loop (1 process), ${i === 0 ? 'before' : 'after'} the network rows`,
          p.loadAverage.toFixed(1),
          p.examplesPerSecond.toFixed(0),
          (p.examplesPerSecond / reference).toFixed(2),
          '–',
          '–',
          p.examplesPerSecond.toFixed(0),
          '–',
          '–',
          '–',
          `${pct1(p.curve.at(-1)!.accuracy)} (${p.examples})`,
          '–',
          `– / ${pct(p.cpuFraction)}`,
        ]),
        ...rows.map((r) => [
          `${r.contributors} contributor${r.contributors > 1 ? 's' : ''}`,
          r.loadAverage.toFixed(1),
          r.examplesPerSecond.toFixed(0),
          r.ratio.toFixed(2),
          r.trainingFractions.map(pct).join(', '),
          r.computingFractions.map(pct).join(', '),
          r.unitTrainingSpeeds.map((x) => x.toFixed(0)).join(', '),
          r.unitsAccepted,
          r.unitsRefused ? `${r.unitsRefused} (${Object.entries(r.refusals).map(([c, k]) => `${c} ${k}`).join(', ')})` : '0',
          r.roundsClosed,
          `${pct1(r.accuracy)} (${r.accuracyExamples})`,
          pct1(r.plainAccuracyAtExamples),
          `${pct(r.coordinatorCpuFraction)} / ${r.contributorCpuFractions.map(pct).join(', ')}`,
        ]),
      ],
    ),
    '',
    `CPU columns: CPU time / wall time of each process (100% = one core). Held-out accuracy: the last closed round's checkpoint on the 2,000 held-out digits, after the examples averaged into it (accepted units of closed rounds); the plain loop's after as many examples (its longer run), interpolated between its evaluations (every ${EVAL_EVERY} steps); – where the network trained on more examples than the plain loop did. The job's accuracy round by round is in the JSON (\`rows[].history\`).`,
    '',
    ...rows.filter((r) => r.errors.length).map((r) => `Errors reported by ${r.contributors}-contributor run: ${r.errors.join(' | ')}`),
    '',
  ].join('\n')
  const { dir, name } = resultsFile(adapter)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, `${name}.md`), md)
  await writeFile(
    join(dir, `${name}.json`),
    JSON.stringify({ date: new Date().toISOString(), machine, backend: BACKEND, adapter, seconds: SECONDS, innerSteps: INNER_STEPS, checks: CHECKS, training: TRAINING, plain, plainAfter, referenceExamplesPerSecond: reference, rows }, null, 2),
  )
  console.log(md)
}

const mode = process.argv[2]
if (mode === 'plain' || mode === 'contribute') {
  const result = mode === 'plain' ? await plainLoop() : await contribute()
  process.send!(result, () => process.exit(0))
} else {
  await main()
  process.exit(0)
}
