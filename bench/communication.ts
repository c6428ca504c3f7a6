/**
 * Communication benchmark: `npx tsx bench/communication.ts` writes bench/results/communication.md, the same
 * figures as communication.json, and the accuracy curves as communication.svg.
 *
 * Question: how many bytes does a contributor send per training example, against per-step float32
 * gradient sync, and what held-out accuracy does the job reach after the same number of examples?
 *
 * Runs, all on the MNIST MLP preset's data and model (coordinator/presets/mnist.ts: 784-64-10, Adam lr
 * 0.003, batches of 32, 8,000 training and 2,000 held-out digits), each seeing the same number of
 * training examples (rounds × contributors × H × batch):
 *
 * - plain loop: one process, one Adam step per batch. This is what per-step data-parallel training
 *   computes; its traffic is one float32 gradient per step: 4 bytes × parameters / batch size per
 *   example, counted for one worker sending its gradient each step.
 * - DiLoCo simulation in one process: P simulated contributors each run a unit of H inner Adam steps from
 *   the round's checkpoint through `trainUnit` (the code path of a tab and of a verifier; each unit's
 *   micro-batches derived from the job id, round and unit as on the network), and the round's updates
 *   go through `outerStep` (src/training/outerOptimizer.ts) with the outer Nesterov optimizer. Variants by
 *   what travels (src/protocol/updateCodec.ts): float32 tensor bytes; int8 with one scale per block;
 *   top-k of the update plus the contributor's error-feedback residual (ErrorFeedback, kept per
 *   contributor across rounds), values int8, indices as varint gaps; this run averages with lr 1 (see
 *   TOPK_OUTER). One more float32 run with the `average` outer optimizer shows what outer momentum adds.
 *
 * Bytes are what each contributor uploads (the exact encoded bytes, headers included) divided by the
 * examples it trained on. Downloads are listed beside them: per-step sync receives the averaged gradient
 * every step, a contributor one float32 checkpoint per unit.
 *
 * Knobs (environment): COMM_BACKEND (tfjs backend, default wasm; cpu is about 6x slower),
 * COMM_CONTRIBUTORS (P, default 4), COMM_INNER_STEPS (H, default 100), COMM_ROUNDS (default 10),
 * COMM_HELD_OUT (held-out examples evaluated, default 2000), COMM_OUTER_LR / COMM_OUTER_MOMENTUM (outer
 * Nesterov, default TUNED_OUTER_BENCH below), COMM_INT8_BLOCK (default 256), COMM_TOPK_DENSITY (default
 * 0.05; 0.01 reached 94.2% held out against 0.05's 95.15%), COMM_TOPK_BLOCK (default 256),
 * COMM_TOPK_OUTER (average or nesterov, default average), COMM_RUNS (comma-separated subset of
 * diloco-float32, diloco-int8, diloco-topk, average-float32; the plain loop always runs).
 * About 3 minutes on the 2-core build machine with the defaults (164 s measured while it was shared).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { buildMnistPreset, MNIST_HELD_OUT_COUNT, MNIST_TRAIN_COUNT } from '../coordinator/presets/mnist.ts'
import type { LabelledSet } from '../src/data/idx.ts'
import {
  decodeTensorList,
  jobSpecHash,
  parseJobSpec,
  seededU32Stream,
  type JobSpec,
  type TensorList,
  type TrainingConfig,
} from '../src/protocol/index.ts'
import { decodeUpdate, encodeUpdate, ErrorFeedback } from '../src/protocol/updateCodec.ts'
import type { WeightedUpdate } from '../src/training/aggregate.ts'
import { gatherBatch } from '../src/training/batches.ts'
import { evaluateModel } from '../src/training/evaluate.ts'
import { buildModel, setModelWeights } from '../src/training/model.ts'
import { outerStep } from '../src/training/outerOptimizer.ts'
import { trainUnit } from '../src/training/trainUnit.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS = join(ROOT, 'bench/results')

/**
 * Outer Nesterov for this benchmark's job (P = 4, H = 100, 10 rounds). From a grid on the same job
 * (final held-out accuracy / loss): (0.4, 0.8) 96.1% / 0.187; (0.7, 0.7) 95.5% / 0.206; (0.5, 0.9)
 * 96.0% / 0.268; DiLoCo's (0.7, 0.9) 96.5% / 0.339, its loss rising from round 5 on (overshoot).
 */
const TUNED_OUTER_BENCH = { outerLearningRate: 0.4, outerMomentum: 0.8 }

const env = (name: string, fallback: number) => {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}=${raw} is not a positive number`)
  return value
}
const BACKEND = process.env.COMM_BACKEND || 'wasm'
const P = env('COMM_CONTRIBUTORS', 4)
const H = env('COMM_INNER_STEPS', 100)
const ROUNDS = env('COMM_ROUNDS', 10)
const HELD_OUT = env('COMM_HELD_OUT', MNIST_HELD_OUT_COUNT)
const OUTER_LR = env('COMM_OUTER_LR', TUNED_OUTER_BENCH.outerLearningRate)
const OUTER_MOMENTUM = Number(process.env.COMM_OUTER_MOMENTUM || TUNED_OUTER_BENCH.outerMomentum)
const INT8_BLOCK = env('COMM_INT8_BLOCK', 256)
const TOPK_DENSITY = env('COMM_TOPK_DENSITY', 0.05)
const TOPK_BLOCK = env('COMM_TOPK_BLOCK', 256)
/**
 * The top-k run's outer optimizer. `average` by default, as in SparseLoCo: the error-feedback residual
 * already carries what earlier rounds did not send, and outer momentum on top of it overshoots (measured:
 * with Nesterov 0.7/0.9 and 5% density, held-out loss rose from 0.25 to 0.45 over rounds 4-10).
 */
const TOPK_OUTER = process.env.COMM_TOPK_OUTER === 'nesterov' ? 'nesterov' : 'average'

interface Preset {
  spec: JobSpec
  blobs: Map<string, Uint8Array>
  train: LabelledSet
  heldOut: LabelledSet
}

interface Point {
  /** Training examples seen so far (all contributors together). */
  examples: number
  accuracy: number
  loss: number
}

/** What a contributor does to its update before sending it; `decoded` is what the coordinator averages. */
interface Codec {
  send(update: TensorList, contributor: number): { bytes: number; decoded: TensorList }
}

type RunName = 'plain' | 'diloco-float32' | 'diloco-int8' | 'diloco-topk' | 'average-float32'

interface RunResult {
  name: RunName
  label: string
  curve: Point[]
  examples: number
  /** Bytes one worker uploads per training example. */
  upPerExample: number
  /** Bytes one worker downloads per training example. */
  downPerExample: number
  seconds: number
}

const RUN_LABELS: Record<RunName, string> = {
  plain: 'plain loop (per-step float32 gradient sync)',
  'diloco-float32': 'DiLoCo, outer Nesterov, float32 updates',
  'diloco-int8': `DiLoCo, outer Nesterov, int8 updates (blocks of ${INT8_BLOCK})`,
  'diloco-topk': `DiLoCo, outer ${TOPK_OUTER === 'nesterov' ? 'Nesterov' : 'average (lr 1)'}, top-${(100 * TOPK_DENSITY).toFixed(TOPK_DENSITY < 0.01 ? 1 : 0)}% + error feedback, int8 values`,
  'average-float32': 'DiLoCo, outer average (lr 1), float32 updates',
}
const RUN_NAMES = Object.keys(RUN_LABELS) as RunName[]
const SELECTED = new Set<RunName>((process.env.COMM_RUNS ? process.env.COMM_RUNS.split(',') : RUN_NAMES).map((s) => s.trim() as RunName))
for (const name of SELECTED) if (!RUN_NAMES.includes(name)) throw new Error(`COMM_RUNS: no run "${name}"; runs are ${RUN_NAMES.join(', ')}`)
SELECTED.add('plain') // the reference every ratio is taken against

const parameterCount = (list: TensorList) => list.values.reduce((n, v) => n + v.length, 0)

function limitHeldOut(set: LabelledSet): LabelledSet {
  return { ...set, count: Math.min(set.count, HELD_OUT) }
}

/** One Adam step per batch of 32 examples drawn with replacement (as units draw theirs), evaluated every P·H steps. */
async function plainLoop(preset: Preset, steps: number, evaluateEvery: number): Promise<Point[]> {
  const { spec } = preset
  const { batchSize, learningRate, innerOptimizer } = spec.training
  const model = await buildModel(spec)
  setModelWeights(model, decodeTensorList(preset.blobs.get(spec.model.initialWeights)!))
  const heldOut = limitHeldOut(preset.heldOut)
  const optimizer = innerOptimizer === 'adam' ? tf.train.adam(learningRate) : tf.train.sgd(learningRate)
  const next = seededU32Stream(`tabtrain/bench/communication/plain/${jobSpecHash(spec)}`)
  const curve: Point[] = []
  const evaluate = async (examples: number) => {
    const e = await evaluateModel(model, spec, heldOut)
    curve.push({ examples, accuracy: e.accuracy, loss: e.loss })
  }
  try {
    await evaluate(0)
    const indices = new Uint32Array(batchSize)
    for (let step = 1; step <= steps; step++) {
      for (let i = 0; i < batchSize; i++) indices[i] = Math.floor((next() * preset.train.count) / 0x1_0000_0000)
      const { x, y } = gatherBatch(preset.train, indices, spec.data.inputShape, spec.data.classes, spec.data.scale, spec.data.inputEncoding)
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar, false)
      tf.dispose(loss ? [x, y, loss] : [x, y])
      if (step % evaluateEvery === 0 || step === steps) await evaluate(step * batchSize)
    }
    return curve
  } finally {
    optimizer.dispose()
    model.dispose()
  }
}

/** R rounds of P units of H steps from the round's checkpoint, averaged by `outerStep`. */
async function dilocoRun(
  preset: Preset,
  outer: Pick<TrainingConfig, 'outerOptimizer' | 'outerLearningRate' | 'outerMomentum'>,
  codec: Codec,
  onRound: (round: number, point: Point) => void,
): Promise<{ curve: Point[]; bytesSent: number; examples: number }> {
  const spec = parseJobSpec({ ...preset.spec, training: { ...preset.spec.training, innerSteps: H, unitsPerRound: P, rounds: ROUNDS, ...outer } })
  const jobId = jobSpecHash(spec)
  const model = await buildModel(spec)
  const heldOut = limitHeldOut(preset.heldOut)
  let checkpoint = decodeTensorList(preset.blobs.get(spec.model.initialWeights)!)
  let momentum: TensorList | null = null
  let bytesSent = 0
  let examples = 0
  const curve: Point[] = []
  const evaluate = async () => {
    setModelWeights(model, checkpoint)
    const e = await evaluateModel(model, spec, heldOut)
    const point = { examples, accuracy: e.accuracy, loss: e.loss }
    curve.push(point)
    return point
  }
  try {
    await evaluate()
    for (let round = 0; round < ROUNDS; round++) {
      const updates: WeightedUpdate[] = []
      for (let unit = 0; unit < P; unit++) {
        // The input hash only names the checkpoint on the network; trainUnit trains from `checkpoint` itself.
        const out = await trainUnit({ spec, unit: { jobId, round, unit, inputHash: jobId }, model, checkpoint, train: preset.train })
        if (!out.losses.every(Number.isFinite)) throw new Error(`round ${round} unit ${unit}: non-finite training loss`)
        const sent = codec.send(decodeTensorList(out.updateBytes), unit)
        bytesSent += sent.bytes
        examples += out.examples
        updates.push({ update: sent.decoded, examples: out.examples })
      }
      const step = outerStep({ checkpoint, momentum, updates, training: spec.training })
      checkpoint = step.next
      momentum = step.momentum
      onRound(round + 1, await evaluate())
    }
    return { curve, bytesSent, examples }
  } finally {
    model.dispose()
  }
}

function codecOf(name: RunName, shapes: number[][]): Codec {
  if (name === 'diloco-int8') {
    const compression = { kind: 'int8', blockSize: INT8_BLOCK } as const
    return {
      send(update) {
        const bytes = encodeUpdate(compression, update)
        return { bytes: bytes.byteLength, decoded: decodeUpdate(compression, bytes, shapes) }
      },
    }
  }
  if (name === 'diloco-topk') {
    // Each contributor keeps its own residual across rounds (what it has not sent yet).
    const feedback = Array.from({ length: P }, () => new ErrorFeedback(shapes))
    return {
      send(update, contributor) {
        const { bytes, sent } = feedback[contributor]!.step(update, { density: TOPK_DENSITY, blockSize: TOPK_BLOCK })
        return { bytes: bytes.byteLength, decoded: sent }
      },
    }
  }
  return {
    send(update) {
      // The float32 wire bytes are the canonical tensor bytes trainUnit hashed: 4 bytes a value plus the shape header.
      return { bytes: encodeUpdate(undefined, update).byteLength, decoded: update }
    },
  }
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`
const signedPoints = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}`
/** Two decimals below 1000, so that 99.96× does not print as a "100×" that misses the target. */
const ratioText = (x: number) => (x >= 1000 ? x.toFixed(0) : x.toFixed(2))
const bytesText = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

const COLORS: Record<RunName, string> = {
  plain: '#222222',
  'diloco-float32': '#1f77b4',
  'diloco-int8': '#2ca02c',
  'diloco-topk': '#d62728',
  'average-float32': '#9467bd',
}

/** Accuracy against examples seen, one polyline per run; the initial checkpoint (chance) is below the frame. */
function svgChart(runs: RunResult[]): string {
  const width = 760
  const height = 440
  const left = 64
  const right = 250
  const top = 30
  const bottom = 56
  const plotW = width - left - right
  const plotH = height - top - bottom
  const maxX = Math.max(...runs.flatMap((r) => r.curve.map((p) => p.examples)))
  // The frame shows where the runs end up: points from the first quarter that fall below it (chance at round 0,
  // a slow start) are drawn on its bottom edge.
  const later = runs.flatMap((r) => r.curve.filter((p) => p.examples >= maxX / 4).map((p) => p.accuracy))
  const yMin = Math.max(0, Math.floor((Math.min(...later) * 100) / 5) * 5 - 5) / 100
  const yMax = 1
  const x = (v: number) => left + (v / maxX) * plotW
  const y = (v: number) => top + (1 - (Math.max(yMin, v) - yMin) / (yMax - yMin)) * plotH
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="18" font-size="14" font-weight="bold">Held-out accuracy against training examples seen (MNIST MLP)</text>`,
  ]
  const yStep = yMax - yMin <= 0.2 ? 0.01 : 0.05
  for (let v = yMin; v <= yMax + 1e-9; v += yStep) {
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`)
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${(100 * v).toFixed(0)}%</text>`)
  }
  const step = 10 ** Math.floor(Math.log10(maxX / 4))
  const tick = [1, 2, 5, 10].map((m) => m * step).find((t) => maxX / t <= 8)!
  for (let v = 0; v <= maxX; v += tick) {
    out.push(`<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${top}" y2="${top + plotH}" stroke="#eee"/>`)
    out.push(`<text x="${x(v).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${v >= 1000 ? `${v / 1000}k` : v}</text>`)
  }
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#444"/>`)
  out.push(`<text x="${left + plotW / 2}" y="${height - 22}" text-anchor="middle">training examples seen (all contributors)</text>`)
  out.push(`<text x="16" y="${top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${top + plotH / 2})">held-out accuracy</text>`)
  out.push(`<text x="${left}" y="${height - 6}" fill="#666" font-size="11">Points below ${(100 * yMin).toFixed(0)}% (round 0: ${pct(runs[0]!.curve[0]!.accuracy)}) are drawn on the bottom edge.</text>`)
  runs.forEach((run, i) => {
    const points = run.curve.map((p) => `${x(p.examples).toFixed(1)},${y(p.accuracy).toFixed(1)}`).join(' ')
    const dash = run.name === 'plain' ? '' : ' stroke-dasharray="6 3"'
    out.push(`<polyline fill="none" stroke="${COLORS[run.name]}" stroke-width="2"${dash} points="${points}"/>`)
    for (const p of run.curve) out.push(`<circle cx="${x(p.examples).toFixed(1)}" cy="${y(p.accuracy).toFixed(1)}" r="2.5" fill="${COLORS[run.name]}"/>`)
    const ly = top + 14 + i * 34
    out.push(`<line x1="${left + plotW + 12}" x2="${left + plotW + 36}" y1="${ly}" y2="${ly}" stroke="${COLORS[run.name]}" stroke-width="2"${dash}/>`)
    const words = run.label.split(' ')
    const cut = Math.ceil(words.length / 2)
    out.push(`<text x="${left + plotW + 42}" y="${ly + 4}">${escapeXml(words.slice(0, cut).join(' '))}</text>`)
    out.push(`<text x="${left + plotW + 42}" y="${ly + 18}">${escapeXml(words.slice(cut).join(' '))}</text>`)
  })
  out.push('</svg>')
  return out.join('\n')
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

async function main(): Promise<void> {
  if (BACKEND === 'wasm') await import('@tensorflow/tfjs-backend-wasm')
  if (!(await tf.setBackend(BACKEND))) throw new Error(`tfjs backend ${BACKEND} is not available`)
  await tf.ready()

  const preset = await buildMnistPreset({ paid: false })
  const { batchSize, learningRate } = preset.spec.training
  const initial = decodeTensorList(preset.blobs.get(preset.spec.model.initialWeights)!)
  const shapes = initial.shapes.map((s) => [...s])
  const params = parameterCount(initial)
  const steps = ROUNDS * P * H
  const examples = steps * batchSize
  const checkpointBytes = encodeUpdate(undefined, initial).byteLength
  console.log(
    `backend ${tf.getBackend()}; ${params} parameters; ${examples} training examples per run (${ROUNDS} rounds x ${P} contributors x ${H} steps x ${batchSize}); ` +
      `outer Nesterov lr ${OUTER_LR}, momentum ${OUTER_MOMENTUM}; held out ${Math.min(HELD_OUT, preset.heldOut.count)}`,
  )

  const runs: RunResult[] = []
  const t0 = performance.now()
  for (const name of RUN_NAMES.filter((n) => SELECTED.has(n))) {
    const tr = performance.now()
    if (name === 'plain') {
      const curve = await plainLoop(preset, steps, P * H)
      const perStep = (4 * params) / batchSize
      runs.push({ name, label: RUN_LABELS[name], curve, examples, upPerExample: perStep, downPerExample: perStep, seconds: (performance.now() - tr) / 1000 })
    } else {
      const outer =
        name === 'average-float32' || (name === 'diloco-topk' && TOPK_OUTER === 'average')
          ? ({ outerOptimizer: 'average', outerLearningRate: 1 } as const)
          : ({ outerOptimizer: 'nesterov', outerLearningRate: OUTER_LR, outerMomentum: OUTER_MOMENTUM } as const)
      const run = await dilocoRun(preset, outer, codecOf(name, shapes), (round, p) => {
        if (round % 5 === 0 || round === ROUNDS) console.log(`  ${name} round ${round}: ${p.examples} examples, held-out accuracy ${pct(p.accuracy)}`)
      })
      runs.push({
        name,
        label: RUN_LABELS[name],
        curve: run.curve,
        examples: run.examples,
        upPerExample: run.bytesSent / run.examples,
        downPerExample: checkpointBytes / (H * batchSize),
        seconds: (performance.now() - tr) / 1000,
      })
    }
    const last = runs.at(-1)!
    console.log(`${name}: final held-out accuracy ${pct(last.curve.at(-1)!.accuracy)}, ${bytesText(last.upPerExample)} bytes sent per example (${last.seconds.toFixed(0)} s)`)
  }
  const wallSeconds = (performance.now() - t0) / 1000

  const plain = runs.find((r) => r.name === 'plain')!
  const plainFinal = plain.curve.at(-1)!.accuracy
  // The plain loop's accuracy moves between nearby evaluations; its spread over the last three says how much.
  const lastThree = plain.curve.slice(-3).map((p) => p.accuracy)
  const plainSpread = Math.max(...lastThree) - Math.min(...lastThree)
  const rows = runs.map((run) => {
    const final = run.curve.at(-1)!
    return {
      name: run.name,
      label: run.label,
      examples: run.examples,
      upBytesPerExample: run.upPerExample,
      downBytesPerExample: run.downPerExample,
      fewerBytesThanPerStepSync: plain.upPerExample / run.upPerExample,
      finalAccuracy: final.accuracy,
      finalLoss: final.loss,
      accuracyVsPlain: final.accuracy - plainFinal,
      meetsTraffic: run.name === 'plain' ? null : plain.upPerExample / run.upPerExample >= 100,
      meetsAccuracy: run.name === 'plain' ? null : final.accuracy >= plainFinal - 0.01,
      seconds: run.seconds,
    }
  })

  const config = {
    backend: tf.getBackend(),
    parameters: params,
    batchSize,
    innerOptimizer: preset.spec.training.innerOptimizer,
    innerLearningRate: learningRate,
    contributors: P,
    innerSteps: H,
    rounds: ROUNDS,
    examplesPerRun: examples,
    heldOut: Math.min(HELD_OUT, preset.heldOut.count),
    outer: { optimizer: 'nesterov', learningRate: OUTER_LR, momentum: OUTER_MOMENTUM },
    int8BlockSize: INT8_BLOCK,
    topK: { density: TOPK_DENSITY, blockSize: TOPK_BLOCK, outerOptimizer: TOPK_OUTER },
  }
  const md: string[] = [
    '# Communication: bytes sent per training example, and accuracy after the same examples',
    '',
    `Generated by \`npx tsx bench/communication.ts\` on ${new Date().toISOString()} (tfjs ${config.backend} backend in Node; ${wallSeconds.toFixed(0)} s for all runs).`,
    '',
    `Job: the MNIST MLP preset's model and data (784-64-10, ${params} parameters; ${MNIST_TRAIN_COUNT} training and ${config.heldOut} held-out digits), ` +
      `inner optimizer Adam (lr ${learningRate}) on batches of ${batchSize}. Every run sees ${examples} training examples ` +
      `(${(examples / MNIST_TRAIN_COUNT).toFixed(0)} passes over the training split): the plain loop as ${steps} steps, ` +
      `the DiLoCo runs as ${ROUNDS} rounds of ${P} contributors × ${H} inner steps, each unit trained by \`trainUnit\` from the round's ` +
      `checkpoint and the round closed by \`outerStep\` (Nesterov: outer lr ${OUTER_LR}, momentum ${OUTER_MOMENTUM}` +
      `${TOPK_OUTER === 'average' ? '; the top-k run averages with lr 1 instead, as SparseLoCo does: its error feedback already carries momentum-like memory, and Nesterov on top of it overshot' : ''}).`,
    '',
    `Bytes are one worker's uploads per training example it trained on. Per-step float32 gradient sync sends 4 bytes × ${params} parameters every ` +
      `step of ${batchSize} examples = ${bytesText(plain.upPerExample)} bytes per example; a DiLoCo contributor sends one update (its exact encoded bytes, ` +
      `header included) per unit of ${H * batchSize} examples. Downloads: per-step sync receives the averaged gradient every step, ` +
      `a contributor one float32 checkpoint (${checkpointBytes} bytes) per unit.`,
    '',
    '| run | bytes sent per example | fewer bytes than per-step float32 sync | bytes received per example | held-out accuracy | vs plain loop (points) | held-out loss | targets (≥ 100× fewer bytes; within 1 point) | time |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.label} | ${bytesText(r.upBytesPerExample)} | ${r.name === 'plain' ? '1× (reference)' : `${ratioText(r.fewerBytesThanPerStepSync)}×`} | ${bytesText(r.downBytesPerExample)} | ` +
        `${pct(r.finalAccuracy)} | ${r.name === 'plain' ? '-' : signedPoints(r.accuracyVsPlain)} | ${r.finalLoss.toFixed(4)} | ` +
        `${r.name === 'plain' ? '-' : `${r.meetsTraffic ? 'yes' : 'NO'}; ${r.meetsAccuracy ? 'yes' : 'NO'}`} | ${r.seconds.toFixed(0)} s |`,
    ),
    '',
    `The plain loop's held-out accuracy moves by ${(100 * plainSpread).toFixed(2)} points across its last three evaluations, so differences of that size are noise. ` +
      'A float32 update per unit is H times less traffic than a gradient per step (minus its shape header); int8 divides that by about 4 again, ' +
      'and top-k with error feedback sends about 2 bytes per selected value (int8 value plus a varint index gap).',
    '',
    'Top-k with error feedback is a benchmark variant only, not a job option: the residual a contributor carries makes the bytes it sends depend on ' +
      'its earlier units, which a checker re-executing one unit cannot reproduce (src/protocol/updateCodec.ts).',
    '',
    '![Held-out accuracy against examples seen](communication.svg)',
    '',
    '## Accuracy against examples seen',
    '',
    `| examples | ${runs.map((r) => r.name).join(' | ')} |`,
    `|---|${runs.map(() => '---').join('|')}|`,
    ...plain.curve.map((p, i) => `| ${p.examples} | ${runs.map((r) => (r.curve[i] ? pct(r.curve[i]!.accuracy) : '-')).join(' | ')} |`),
    '',
  ]

  await mkdir(RESULTS, { recursive: true })
  await writeFile(join(RESULTS, 'communication.md'), md.join('\n'))
  await writeFile(join(RESULTS, 'communication.svg'), svgChart(runs))
  await writeFile(join(RESULTS, 'communication.json'), JSON.stringify({ generatedAt: new Date().toISOString(), wallSeconds, config, rows, curves: Object.fromEntries(runs.map((r) => [r.name, r.curve])) }, null, 2))
  console.log(md.slice(8, 8 + rows.length + 2).join('\n'))
  console.log('wrote bench/results/communication.md, communication.json, communication.svg')
}

await main()
