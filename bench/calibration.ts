/**
 * Calibration of the cross-class tolerance: `npx tsx bench/calibration.ts` writes
 * bench/results/calibration.md and bench/results/calibration.json.
 *
 * The verifier compares two answers for one unit computed in different device classes with
 * `relativeL2(a, b) = ‖a − b‖ / max(‖a‖, ‖b‖)` (src/protocol/verification.ts) against
 * `DEFAULT_VERIFICATION.crossClassTolerance`. This measures both sides of that threshold on the MNIST preset
 * (coordinator/presets/mnist.ts, volunteer variant, its real spec: 10 inner Adam steps of 32 examples):
 *
 * 1. Real checkpoints: a plain training loop (on the wasm backend, the fastest here), each round averaging
 *    the spec's K = 4 unit updates with the coordinator's `applyAveragedUpdate`; the checkpoints after the
 *    rounds in CALIBRATION_CHECKPOINTS are kept (and evaluated on the held-out split).
 * 2. Honest distances: S units (CALIBRATION_UNITS) of each kept checkpoint, computed through the real unit
 *    runner on the cpu backend and on the wasm backend (@tensorflow/tfjs-backend-wasm in Node), and the first
 *    W of them (CALIBRATION_WEBGPU_UNITS) on WebGPU (tfjs-webgpu on Dawn's SwiftShader adapter, TabTrain's
 *    default kernel bundle in place: about 1 s a unit here); relative L2 per pair of backends. One unit per
 *    backend is also computed twice with a fresh runner (same class: the hashes must be equal).
 * 3. Liar distances: what a dishonest contributor might submit for the same unit, against the honest cpu
 *    answer: the honest update ×100, a zero update, uniform noise of the honest update's norm, the update of
 *    another unit of the same round (a copy of someone else's work), the unit computed from the previous
 *    round's checkpoint (stale), the honest update with 10% of every tensor's values replaced by noise of
 *    that tensor's RMS, and two lazy ones: only the first H/2 inner steps, and H − 1 steps.
 *
 * Knobs (environment): CALIBRATION_CHECKPOINTS (default `0,5,20,39`: the preset has 40 rounds, so 39 is
 * the last round's checkpoint), CALIBRATION_UNITS (default 32), CALIBRATION_WEBGPU_UNITS (default 8),
 * CALIBRATION_LIAR_UNITS (default 8: liars' distances vary little), CALIBRATION_WEBGPU=0 to skip WebGPU.
 * Needs VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (or a GPU's ICD) for WebGPU.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import '@tensorflow/tfjs-backend-wasm'
import { buildMnistPreset } from '../coordinator/presets/mnist.ts'
import { activateKernelBundle, KERNEL_BUNDLE } from '../src/kernels/config.ts'
import { isUnavailable } from '../src/kernels/device.ts'
import { setupTfjsWebgpu } from '../src/kernels/testing/tfjsWebgpu.ts'
import {
  decodeTensorList,
  hashTensorList,
  jobSpecHash,
  parseJobSpec,
  seededU32Stream,
  type Hash,
  type JobSpec,
  type TensorList,
} from '../src/protocol/index.ts'
import { DEFAULT_VERIFICATION, relativeL2 } from '../src/protocol/verification.ts'
import { applyAveragedUpdate, type WeightedUpdate } from '../src/training/aggregate.ts'
import { evaluateModel } from '../src/training/evaluate.ts'
import { buildModel, setModelWeights } from '../src/training/model.ts'
import { trainUnit } from '../src/training/trainUnit.ts'
import { mapBlobSource } from '../src/worker/blobSource.ts'
import { createUnitRunner, type UnitRunner } from '../src/worker/unitRunner.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS = join(ROOT, 'bench/results')
const CHECKPOINTS = (process.env.CALIBRATION_CHECKPOINTS ?? '0,5,20,39')
  .split(',')
  .map((s) => Number(s.trim()))
  .sort((a, b) => a - b)
const SAMPLE = Number(process.env.CALIBRATION_UNITS ?? 32)
const WEBGPU_SAMPLE = Math.min(SAMPLE, Number(process.env.CALIBRATION_WEBGPU_UNITS ?? 8))
const LIAR_SAMPLE = Math.min(SAMPLE, Number(process.env.CALIBRATION_LIAR_UNITS ?? 8))
const WITH_WEBGPU = process.env.CALIBRATION_WEBGPU !== '0'

type Backend = 'cpu' | 'wasm' | 'webgpu'
type Answer = { hash: Hash; update: TensorList }

const started = performance.now()
const phaseMs: Record<string, number> = {}
const log = (s: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${s}`)

function norm(list: TensorList): number {
  let s = 0
  for (const v of list.values) for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!
  return Math.sqrt(s)
}

function mapValues(list: TensorList, f: (v: Float32Array, t: number) => Float32Array): TensorList {
  return { shapes: list.shapes.map((s) => [...s]), values: list.values.map((v, t) => f(v, t)) }
}

/** Uniform in [0, 1) from a seeded u32 stream. */
function uniform(next: () => number): number {
  return next() / 0x1_0000_0000
}

const liars = {
  /** The honest update scaled by 100. */
  times100: (honest: TensorList) => mapValues(honest, (v) => v.map((x) => x * 100)),
  /** Nothing trained. */
  zero: (honest: TensorList) => mapValues(honest, (v) => new Float32Array(v.length)),
  /** Uniform noise scaled to the honest update's norm. */
  noise: (honest: TensorList, label: string) => {
    const next = seededU32Stream(label)
    const raw = mapValues(honest, (v) => v.map(() => 2 * uniform(next) - 1))
    const k = norm(honest) / norm(raw)
    return mapValues(raw, (v) => v.map((x) => x * k))
  },
  /** 10% of every tensor's values (chosen at random) replaced by uniform noise of that tensor's RMS. */
  perturbed10: (honest: TensorList, label: string) => {
    const next = seededU32Stream(label)
    return mapValues(honest, (v) => {
      let s = 0
      for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!
      const amplitude = Math.sqrt(3) * Math.sqrt(s / Math.max(1, v.length))
      const out = Float32Array.from(v)
      for (let i = 0; i < out.length; i++) if (uniform(next) < 0.1) out[i] = (2 * uniform(next) - 1) * amplitude
      return out
    })
  },
}

type LiarName = 'times100' | 'zero' | 'noise' | 'otherUnit' | 'staleCheckpoint' | 'perturbed10' | 'halfSteps' | 'oneStepShort'
const LIAR_LABELS: Record<LiarName, string> = {
  times100: 'honest ×100',
  zero: 'zero update',
  noise: 'uniform noise, same norm',
  otherUnit: 'another unit of the same round (copy)',
  staleCheckpoint: "previous round's checkpoint (stale)",
  perturbed10: '10% of values replaced by noise',
  halfSteps: 'first H/2 inner steps only (lazy)',
  oneStepShort: 'H − 1 inner steps (lazy)',
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  // Nearest rank: with fewer than 100 samples the p99 is the maximum.
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

function stats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b)
  return { n: sorted.length, min: sorted[0] ?? NaN, median: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] ?? NaN }
}

const fmt = (x: number) => (Number.isFinite(x) ? (x === 0 ? '0' : x.toExponential(2)) : String(x))

async function main() {
  // Building the preset builds a tfjs model (its topology): a backend must be in place first.
  await tf.setBackend('cpu')
  await tf.ready()
  const preset = await buildMnistPreset({ paid: false })
  const spec = preset.spec
  const jobId = jobSpecHash(spec)
  const K = spec.training.unitsPerRound
  const H = spec.training.innerSteps
  const blobs = new Map(preset.blobs)
  const source = mapBlobSource(blobs, 'calibration')
  const lastRound = CHECKPOINTS[CHECKPOINTS.length - 1]!
  if (!(lastRound < spec.training.rounds)) throw new Error(`checkpoint ${lastRound} is beyond the preset's ${spec.training.rounds} rounds`)

  // 1. Checkpoints, trained on the wasm backend (the fastest here; any honest class would do).
  let t = performance.now()
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start')
  await tf.ready()
  const loopRunner = createUnitRunner(source)
  const checkpointHash = new Map<number, Hash>()
  let checkpoint = spec.model.initialWeights
  for (let r = 0; r <= lastRound; r++) {
    checkpointHash.set(r, checkpoint)
    if (r === lastRound) break
    const updates: WeightedUpdate[] = []
    for (let i = 0; i < K; i++) {
      const out = await loopRunner.run(spec, { jobId, round: r, unit: i, inputHash: checkpoint })
      updates.push({ update: decodeTensorList(out.updateBytes), examples: out.examples })
    }
    const next = hashTensorList(applyAveragedUpdate(decodeTensorList(blobs.get(checkpoint)!), updates, spec.training.outerLearningRate))
    blobs.set(next.hash, next.bytes)
    checkpoint = next.hash
  }
  const evalModel = await buildModel(spec)
  const checkpointInfo: { round: number; hash: Hash; heldOutAccuracy: number; heldOutLoss: number }[] = []
  for (const r of CHECKPOINTS) {
    setModelWeights(evalModel, decodeTensorList(blobs.get(checkpointHash.get(r)!)!))
    const e = await evaluateModel(evalModel, spec, preset.heldOut)
    checkpointInfo.push({ round: r, hash: checkpointHash.get(r)!, heldOutAccuracy: e.accuracy, heldOutLoss: e.loss })
    log(`checkpoint ${r}: held-out accuracy ${(100 * e.accuracy).toFixed(1)}%, loss ${e.loss.toFixed(3)}`)
  }
  phaseMs.checkpoints = performance.now() - t

  const sample = CHECKPOINTS.flatMap((round) => Array.from({ length: SAMPLE }, (_, unit) => ({ round, unit })))
  const key = (round: number, unit: number) => `${round}/${unit}`
  const webgpuSample = sample.filter((s) => s.unit < WEBGPU_SAMPLE)
  const runAll = async (runner: UnitRunner, units: typeof sample): Promise<Map<string, Answer>> => {
    const out = new Map<string, Answer>()
    for (const { round, unit } of units) {
      const o = await runner.run(spec, { jobId, round, unit, inputHash: checkpointHash.get(round)! })
      out.set(key(round, unit), { hash: o.outputHash, update: decodeTensorList(o.updateBytes) })
    }
    return out
  }
  const answers: Partial<Record<Backend, Map<string, Answer>>> = {}
  const repeats: { backend: Backend; unit: string; sameHash: boolean }[] = []
  const repeatCheck = async (backend: Backend) => {
    const { round, unit } = sample[0]!
    const o = await createUnitRunner(source).run(spec, { jobId, round, unit, inputHash: checkpointHash.get(round)! })
    repeats.push({ backend, unit: key(round, unit), sameHash: o.outputHash === answers[backend]!.get(key(round, unit))!.hash })
  }

  evalModel.dispose()

  // 2a. Honest answers and liars on cpu.
  t = performance.now()
  await tf.setBackend('cpu')
  await tf.ready()
  const cpuRunner = createUnitRunner(source)
  answers.cpu = await runAll(cpuRunner, sample)
  await repeatCheck('cpu')
  phaseMs.cpuUnits = performance.now() - t
  log(`cpu: ${sample.length} units`)

  t = performance.now()
  const liarDistances: Record<LiarName, { round: number; unit: number; distance: number }[]> = {
    times100: [],
    zero: [],
    noise: [],
    otherUnit: [],
    staleCheckpoint: [],
    perturbed10: [],
    halfSteps: [],
    oneStepShort: [],
  }
  const lazyModel = await buildModel(spec)
  const lazy = async (steps: number, round: number, unit: number) => {
    const lazySpec: JobSpec = parseJobSpec({ ...spec, training: { ...spec.training, innerSteps: steps } })
    // The unit's own batches (indices are a prefix-stable stream), fewer of them: same job id as the honest unit.
    const r = await trainUnit({
      spec: lazySpec,
      unit: { jobId, round, unit, inputHash: checkpointHash.get(round)! },
      model: lazyModel,
      checkpoint: decodeTensorList(blobs.get(checkpointHash.get(round)!)!),
      train: preset.train,
    })
    return decodeTensorList(r.updateBytes)
  }
  for (const { round, unit } of sample.filter((s) => s.unit < LIAR_SAMPLE)) {
    const honest = answers.cpu.get(key(round, unit))!.update
    const push = (name: LiarName, lie: TensorList) => liarDistances[name].push({ round, unit, distance: relativeL2(honest, lie) })
    push('times100', liars.times100(honest))
    push('zero', liars.zero(honest))
    push('noise', liars.noise(honest, `calibration/noise/${round}/${unit}`))
    push('perturbed10', liars.perturbed10(honest, `calibration/perturbed/${round}/${unit}`))
    push('otherUnit', answers.cpu.get(key(round, (unit + 1) % SAMPLE))!.update)
    if (round > 0) {
      const o = await cpuRunner.run(spec, { jobId, round, unit, inputHash: checkpointHash.get(round - 1)! })
      push('staleCheckpoint', decodeTensorList(o.updateBytes))
    }
    push('halfSteps', await lazy(Math.floor(H / 2), round, unit))
    push('oneStepShort', await lazy(H - 1, round, unit))
  }
  lazyModel.dispose()
  phaseMs.liars = performance.now() - t
  log('liars done')

  // 2b. wasm.
  t = performance.now()
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start')
  await tf.ready()
  answers.wasm = await runAll(createUnitRunner(source), sample)
  await repeatCheck('wasm')
  phaseMs.wasmUnits = performance.now() - t
  log(`wasm: ${sample.length} units`)

  // 2c. WebGPU on Dawn, default kernel bundle.
  let webgpuNote = ''
  if (WITH_WEBGPU) {
    t = performance.now()
    const gpu = await setupTfjsWebgpu()
    if (isUnavailable(gpu)) {
      webgpuNote = `WebGPU skipped: ${gpu.unavailable}`
      log(webgpuNote)
    } else {
      activateKernelBundle(KERNEL_BUNDLE)
      const info = gpu.backend.adapterInfo as unknown as { vendor?: string; architecture?: string }
      const adapterInfo = `${info.vendor || '?'}/${info.architecture || '?'}`
      answers.webgpu = await runAll(createUnitRunner(source), webgpuSample)
      await repeatCheck('webgpu')
      await gpu.teardown()
      webgpuNote = `WebGPU adapter ${adapterInfo}, kernel bundle ${KERNEL_BUNDLE}`
      phaseMs.webgpuUnits = performance.now() - t
      log(`webgpu: ${webgpuSample.length} units`)
    }
  } else {
    webgpuNote = 'WebGPU skipped (CALIBRATION_WEBGPU=0)'
  }

  // 3. Distances.
  const backends = (['cpu', 'wasm', 'webgpu'] as const).filter((b) => answers[b])
  const pairs: { pair: string; all: ReturnType<typeof stats>; byCheckpoint: Record<number, ReturnType<typeof stats>>; sameHash: number }[] = []
  for (let i = 0; i < backends.length; i++) {
    for (let j = i + 1; j < backends.length; j++) {
      const a = answers[backends[i]!]!
      const b = answers[backends[j]!]!
      const rows = sample.filter(({ round, unit }) => a.has(key(round, unit)) && b.has(key(round, unit))).map(({ round, unit }) => {
        const x = a.get(key(round, unit))!
        const y = b.get(key(round, unit))!
        return { round, distance: relativeL2(x.update, y.update), sameHash: x.hash === y.hash }
      })
      const byCheckpoint: Record<number, ReturnType<typeof stats>> = {}
      for (const r of CHECKPOINTS) byCheckpoint[r] = stats(rows.filter((row) => row.round === r).map((row) => row.distance))
      pairs.push({ pair: `${backends[i]} vs ${backends[j]}`, all: stats(rows.map((r) => r.distance)), byCheckpoint, sameHash: rows.filter((r) => r.sameHash).length })
    }
  }
  const liarStats = (Object.keys(liarDistances) as LiarName[]).map((name) => {
    const rows = liarDistances[name]
    const byCheckpoint: Record<number, ReturnType<typeof stats> | null> = {}
    for (const r of CHECKPOINTS) {
      const d = rows.filter((row) => row.round === r).map((row) => row.distance)
      byCheckpoint[r] = d.length ? stats(d) : null
    }
    return { liar: name, label: LIAR_LABELS[name], all: stats(rows.map((r) => r.distance)), byCheckpoint }
  })
  const updateNorms = CHECKPOINTS.map((r) => stats(sample.filter((s) => s.round === r).map((s) => norm(answers.cpu!.get(key(s.round, s.unit))!.update))))

  const honestMax = Math.max(...pairs.map((p) => p.all.max))
  const honestP99 = Math.max(...pairs.map((p) => p.all.p99))
  // The lazy liars save a fraction of the work rather than forging it; reported apart.
  const closest = (names: LiarName[]) => liarStats.filter((l) => names.includes(l.liar)).reduce((a, b) => (b.all.min < a.all.min ? b : a))
  const closestLiar = closest(['times100', 'zero', 'noise', 'otherUnit', 'staleCheckpoint', 'perturbed10', 'halfSteps'])
  const liarMin = closestLiar.all.min
  const lazyLiar = closest(['oneStepShort'])
  const tolerance = DEFAULT_VERIFICATION.crossClassTolerance
  const totalMs = performance.now() - started

  const json = {
    preset: { jobId, innerSteps: H, batchSize: spec.training.batchSize, unitsPerRound: K, kernelBundle: spec.kernelBundle },
    checkpoints: checkpointInfo,
    unitsPerCheckpoint: { cpuAndWasm: SAMPLE, webgpu: WEBGPU_SAMPLE, liars: LIAR_SAMPLE },
    webgpu: webgpuNote,
    honestPairs: pairs,
    sameClassRepeats: repeats,
    liars: liarStats,
    summary: {
      honestMax,
      honestP99,
      liarMin,
      closestLiar: closestLiar.liar,
      oneStepShortMin: lazyLiar.all.min,
      crossClassTolerance: tolerance,
      marginOverHonestMax: tolerance / honestMax,
      marginOverHonestP99: tolerance / honestP99,
      marginUnderLiarMin: liarMin / tolerance,
      marginUnderOneStepShort: lazyLiar.all.min / tolerance,
    },
    timings: { totalMs, ...phaseMs },
    node: process.version,
  }

  const cps = CHECKPOINTS
  const md: string[] = []
  md.push('# Calibration of the cross-class tolerance')
  md.push('')
  md.push('`npx tsx bench/calibration.ts` (with `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json`). Relative L2 = ‖a − b‖ / max(‖a‖, ‖b‖) over the whole update Δ.')
  md.push('')
  md.push(
    `MNIST preset (volunteer variant), its real spec: H = ${H} Adam steps of ${spec.training.batchSize} per unit. Checkpoints from a plain loop (on the wasm backend) averaging K = ${K} units a round (\`applyAveragedUpdate\`); ${SAMPLE} units per checkpoint on cpu and wasm, the first ${WEBGPU_SAMPLE} of them on WebGPU. ${webgpuNote}.`,
  )
  md.push('')
  md.push('| checkpoint (rounds done) | held-out accuracy | held-out loss | ‖Δ‖ median (cpu) |')
  md.push('| ---: | ---: | ---: | ---: |')
  checkpointInfo.forEach((c, i) => md.push(`| ${c.round} | ${(100 * c.heldOutAccuracy).toFixed(1)}% | ${c.heldOutLoss.toFixed(3)} | ${fmt(updateNorms[i]!.median)} |`))
  md.push('')
  md.push('## Honest answers, different backends')
  md.push('')
  md.push(`| pair | units | max | p99 | median | ${cps.map((r) => `max @${r}`).join(' | ')} | equal hashes |`)
  md.push(`| --- | ---: | ---: | ---: | ---: | ${cps.map(() => '---:').join(' | ')} | ---: |`)
  for (const p of pairs) {
    md.push(`| ${p.pair} | ${p.all.n} | ${fmt(p.all.max)} | ${fmt(p.all.p99)} | ${fmt(p.all.median)} | ${cps.map((r) => fmt(p.byCheckpoint[r]!.max)).join(' | ')} | ${p.sameHash}/${p.all.n} |`)
  }
  md.push('')
  md.push(`Same backend, fresh runner, same unit: ${repeats.map((r) => `${r.backend} ${r.sameHash ? 'same hash' : 'DIFFERENT hash'}`).join(', ')}.`)
  md.push('')
  md.push('p99 is nearest-rank: with fewer than 100 samples per pair it equals the max.')
  md.push('')
  md.push(`## Liars, against the honest cpu answer (${LIAR_SAMPLE} units per checkpoint)`)
  md.push('')
  md.push(`| liar | min | median | ${cps.map((r) => `min @${r}`).join(' | ')} |`)
  md.push(`| --- | ---: | ---: | ${cps.map(() => '---:').join(' | ')} |`)
  for (const l of liarStats) {
    md.push(`| ${l.label} | ${fmt(l.all.min)} | ${fmt(l.all.median)} | ${cps.map((r) => (l.byCheckpoint[r] ? fmt(l.byCheckpoint[r]!.min) : 'n/a')).join(' | ')} |`)
  }
  md.push('')
  md.push('## Tolerance')
  md.push('')
  md.push(
    `Honest cross-backend distances: max ${fmt(honestMax)}, p99 ${fmt(honestP99)}. Smallest liar distance ${fmt(liarMin)} (${closestLiar.label}); ${LIAR_LABELS.oneStepShort}: ${fmt(lazyLiar.all.min)}. ` +
      `\`DEFAULT_VERIFICATION.crossClassTolerance\` = ${tolerance}: ${(tolerance / honestMax).toFixed(1)}× the honest maximum (${(tolerance / honestP99).toFixed(0)}× its p99), ` +
      `${(liarMin / tolerance).toFixed(1)}× below the closest liar, ${(lazyLiar.all.min / tolerance).toFixed(1)}× below the one-step-short liar.`,
  )
  md.push('')
  md.push(
    `Runtime: ${(totalMs / 1000).toFixed(0)} s in all (checkpoint loop ${(phaseMs.checkpoints! / 1000).toFixed(0)} s, cpu units ${(phaseMs.cpuUnits! / 1000).toFixed(0)} s, liars ${(phaseMs.liars! / 1000).toFixed(0)} s, wasm ${(phaseMs.wasmUnits! / 1000).toFixed(0)} s` +
      (phaseMs.webgpuUnits !== undefined ? `, WebGPU on SwiftShader ${(phaseMs.webgpuUnits / 1000).toFixed(0)} s` : '') +
      `), Node ${process.version}.`,
  )
  md.push('')

  await mkdir(RESULTS, { recursive: true })
  await writeFile(join(RESULTS, 'calibration.json'), `${JSON.stringify(json, null, 2)}\n`)
  await writeFile(join(RESULTS, 'calibration.md'), md.join('\n'))
  console.log(md.join('\n'))
}

await main()
