/**
 * Convergence benchmark: `npx tsx bench/convergence.ts` writes bench/results/convergence.md.
 *
 * Trains the MNIST preset (coordinator/presets/mnist.ts: 784-64-10 MLP, 10 inner Adam steps of 32 per
 * unit, units averaged each round by the coordinator's `applyAveragedUpdate`) three times in one process
 * on tfjs-webgpu over Dawn: with stock tfjs-webgpu kernels (matmul program pinned), with TabTrain's
 * deterministic matmul (KERNEL_BUNDLE) and with the exact-mode bundle (EXACT_KERNEL_BUNDLE). The modes
 * take turns round by round (src/training/convergence.ts), so a change in the machine's load weighs on
 * all three alike; each mode first runs one throwaway unit so that shader compilation is not timed.
 *
 * Knobs (environment): CONVERGENCE_ROUNDS (default 8), CONVERGENCE_UNITS (units per round, default 2),
 * CONVERGENCE_EVERY (evaluate every this many rounds, default 1), CONVERGENCE_HELD_OUT (default 2000).
 *
 * On a machine with a real GPU (Dawn on Vulkan) run it with VK_ICD_FILENAMES unset or pointing at the
 * GPU's ICD; here the adapter is SwiftShader, whose timings are CPU timings and say nothing about GPUs.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildMnistPreset, MNIST_HELD_OUT_COUNT, MNIST_TRAIN_COUNT } from '../coordinator/presets/mnist.ts'
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../src/kernels/config.ts'
import { isUnavailable } from '../src/kernels/device.ts'
import { setupTfjsWebgpu } from '../src/kernels/testing/tfjsWebgpu.ts'
import { KERNEL_MODES, trainModesInterleaved, type ConvergenceRun, type KernelMode } from '../src/training/convergence.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS = join(ROOT, 'bench/results')
const ROUNDS = Number(process.env.CONVERGENCE_ROUNDS ?? 8)
const UNITS = Number(process.env.CONVERGENCE_UNITS ?? 2)
const EVERY = Number(process.env.CONVERGENCE_EVERY ?? 1)
const HELD_OUT = Number(process.env.CONVERGENCE_HELD_OUT ?? MNIST_HELD_OUT_COUNT)

const pct = (x: number) => `${(100 * x).toFixed(2)}%`
const signedPoints = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}`
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** Held-out loss per round, one letter per mode ('*' where all modes fall on the same cell). */
function asciiChart(runs: ConvergenceRun[], height = 16, width = 64): string {
  const letters: Record<KernelMode, string> = { stock: 's', deterministic: 'd', exact: 'e' }
  const maxRound = Math.max(...runs.flatMap((r) => r.curve.map((p) => p.round)))
  const maxLoss = Math.max(...runs.flatMap((r) => r.curve.map((p) => p.loss)))
  const top = Math.ceil(maxLoss * 4) / 4
  const grid = Array.from({ length: height + 1 }, () => Array.from({ length: width + 1 }, () => ' '))
  const cells = new Map<string, Set<string>>()
  for (const run of runs) {
    for (let i = 0; i < run.curve.length; i++) {
      const p = run.curve[i]!
      const col = Math.round((p.round / Math.max(1, maxRound)) * width)
      const row = height - Math.round((p.loss / top) * height)
      const key = `${row},${col}`
      if (!cells.has(key)) cells.set(key, new Set())
      cells.get(key)!.add(letters[run.mode])
      // Dots along the segment to the next point, so the curve reads as a line.
      const q = run.curve[i + 1]
      if (q) {
        const col2 = Math.round((q.round / Math.max(1, maxRound)) * width)
        for (let c = col + 1; c < col2; c++) {
          const t = (c - col) / (col2 - col)
          const r = height - Math.round(((p.loss + t * (q.loss - p.loss)) / top) * height)
          if (grid[r]![c] === ' ') grid[r]![c] = '.'
        }
      }
    }
  }
  for (const [key, set] of cells) {
    const [row, col] = key.split(',').map(Number) as [number, number]
    grid[row]![col] = set.size === runs.length && runs.length > 1 ? '*' : [...set].join('').slice(0, 1)
  }
  const lines = grid.map((cells, i) => {
    const value = top * (1 - i / height)
    const label = i % 4 === 0 ? value.toFixed(2).padStart(5) : '     '
    return `${label} |${cells.join('')}`
  })
  lines.push(`      +${'-'.repeat(width + 1)}`)
  const ticks = Array.from({ length: width + 1 }, () => ' ')
  for (let r = 0; r <= maxRound; r++) {
    const col = Math.round((r / Math.max(1, maxRound)) * width)
    const s = String(r)
    for (let j = 0; j < s.length && col + j <= width; j++) ticks[col + j] = s[j]!
  }
  lines.push(`       ${ticks.join('')}  (round)`)
  return lines.join('\n')
}

/** What the numbers say, in words, from the numbers themselves. */
function notes(runs: ConvergenceRun[], stock: ConvergenceRun): string[] {
  const out: string[] = []
  for (const run of runs) {
    if (run.mode === 'stock') continue
    const worst = Math.max(...run.curve.map((p, i) => Math.abs(p.accuracy - stock.curve[i]!.accuracy)))
    const final = run.final.accuracy - stock.final.accuracy
    out.push(
      `${run.mode}: final held-out accuracy ${pct(run.final.accuracy)} vs stock's ${pct(stock.final.accuracy)} ` +
        `(${signedPoints(final)} points; within 1 point: ${Math.abs(final) <= 0.01 ? 'yes' : 'NO'}); at most ${(100 * worst).toFixed(2)} points from stock at any round; ` +
        `${(run.timings.totalMs / stock.timings.totalMs).toFixed(2)}x stock's time (units alone: median ${(run.timings.medianUnitMs / stock.timings.medianUnitMs).toFixed(2)}x).`,
    )
    if (run.finalCheckpoint === stock.finalCheckpoint) {
      out.push(
        `${run.mode}: its final checkpoint is bit for bit stock's. On this adapter the deterministic matmul sums in the same ` +
          'order as the stock tiled matmul that config.ts pins (program 3), so the runs are the same computation; it ' +
          'differs from stock where stock would choose another program (split-K with float atomics) or on other devices.',
      )
    } else {
      out.push(`${run.mode}: its checkpoints are other bits than stock's (its kernels round differently), and it converges alike.`)
    }
  }
  return out
}

async function main(): Promise<void> {
  const tfjs = await setupTfjsWebgpu()
  if (isUnavailable(tfjs)) throw new Error(tfjs.unavailable)
  const info = tfjs.backend.adapterInfo as unknown as { vendor?: string; architecture?: string }
  const adapterLine = `${info.vendor ?? '?'} / ${info.architecture ?? '?'}`
  console.log(`adapter: ${adapterLine}; ${ROUNDS} rounds x ${UNITS} units, held out ${HELD_OUT}, evaluated every ${EVERY} round(s)`)

  const preset = await buildMnistPreset({ paid: false })
  const t0 = performance.now()
  const byMode = await trainModesInterleaved(KERNEL_MODES, {
    preset,
    rounds: ROUNDS,
    unitsPerRound: UNITS,
    heldOutCount: HELD_OUT,
    evaluateEvery: EVERY,
    warmUp: true,
    onPoint: (p, mode) =>
      console.log(`${mode.padEnd(13)} round ${String(p.round).padStart(2)}: held-out loss ${p.loss.toFixed(4)}, accuracy ${pct(p.accuracy)} (${secs(p.elapsedMs)})`),
  })
  const wallMs = performance.now() - t0
  await tfjs.teardown()

  const runs = KERNEL_MODES.map((m) => byMode[m]!)
  const stock = byMode.stock!
  const bundleName: Record<KernelMode, string> = {
    stock: 'stock tfjs-webgpu 4.22 (no bundle; matmul program pinned to 3)',
    deterministic: `\`${KERNEL_BUNDLE}\``,
    exact: `\`${EXACT_KERNEL_BUNDLE}\``,
  }
  const maxDiff = (run: ConvergenceRun, key: 'accuracy' | 'loss') =>
    Math.max(...run.curve.map((p, i) => Math.abs(p[key] - stock.curve[i]![key])))

  const md: string[] = [
    '# Convergence: the MNIST preset trained with stock, deterministic and exact kernels',
    '',
    `Generated by \`npx tsx bench/convergence.ts\` on ${new Date().toISOString()}. Adapter: ${adapterLine}` +
      ' (tfjs-webgpu on Dawn in Node).',
    '',
    '**On SwiftShader (a CPU implementation of Vulkan) the times are CPU times and say nothing about GPUs;**',
    'the machine is shared and has 2 cores, so times move by up to 2x between runs. The modes take turns',
    'round by round, so a change in load weighs on all three alike, and each ran one throwaway unit first',
    '(shader compilation is not in the times).',
    '',
    `Job: the MNIST preset (784-64-10 MLP; ${MNIST_TRAIN_COUNT} training, ${MNIST_HELD_OUT_COUNT} held-out digits), ` +
      `${preset.spec.training.innerSteps} inner Adam steps of ${preset.spec.training.batchSize} (lr ${preset.spec.training.learningRate}) per unit, ` +
      `${ROUNDS} rounds of ${UNITS} units averaged with the coordinator's \`applyAveragedUpdate\` (the preset runs ` +
      `${preset.spec.training.rounds} rounds of ${preset.spec.training.unitsPerRound}; progress per round barely depends on the units per round). ` +
      `Every mode trains the same spec, so the same micro-batches: the kernels are the only difference. ` +
      `Held-out loss (mean softmax cross-entropy) and accuracy over ${HELD_OUT} examples, evaluated with stock kernels in every mode (as the coordinator evaluates checkpoints with its own backend).`,
    '',
    '## Summary',
    '',
    '| mode | kernels | final held-out accuracy | final held-out loss | accuracy vs stock (points) | max |accuracy diff| over rounds (points) | max |loss diff| over rounds | time (train + eval) | time / stock | median unit | unit / stock | final checkpoint = stock\'s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...runs.map((run) =>
      [
        run.mode,
        bundleName[run.mode],
        pct(run.final.accuracy),
        run.final.loss.toFixed(4),
        signedPoints(run.final.accuracy - stock.final.accuracy),
        (100 * maxDiff(run, 'accuracy')).toFixed(2),
        maxDiff(run, 'loss').toExponential(2),
        secs(run.timings.totalMs),
        (run.timings.totalMs / stock.timings.totalMs).toFixed(2),
        `${run.timings.medianUnitMs.toFixed(0)} ms`,
        (run.timings.medianUnitMs / stock.timings.medianUnitMs).toFixed(2),
        run.finalCheckpoint === stock.finalCheckpoint ? 'yes' : 'no (other bits)',
      ].join(' | '),
    ).map((row) => `| ${row} |`),
    '',
    `Wall time for the three modes: ${secs(wallMs)}. Time = the mode's own units + averaging + evaluations; ` +
      `evaluation alone: ${runs.map((r) => `${r.mode} ${secs(r.timings.evaluateMs)}`).join(', ')}.`,
    '',
    '## Notes',
    '',
    ...notes(runs, stock).map((n) => `- ${n}`),
    '',
    '## Side by side',
    '',
    '| round | accuracy stock | accuracy deterministic | accuracy exact | loss stock | loss deterministic | loss exact |',
    '|---|---|---|---|---|---|---|',
    ...stock.curve.map((p, i) => {
      const at = (m: KernelMode) => byMode[m]!.curve[i]!
      return `| ${p.round} | ${pct(at('stock').accuracy)} | ${pct(at('deterministic').accuracy)} | ${pct(at('exact').accuracy)} | ${at('stock').loss.toFixed(4)} | ${at('deterministic').loss.toFixed(4)} | ${at('exact').loss.toFixed(4)} |`
    }),
    '',
    '## Held-out loss per round',
    '',
    `s = stock, d = deterministic, e = exact, * = all three on the same character cell.`,
    '',
    '```',
    asciiChart(runs),
    '```',
    '',
  ]
  for (const run of runs) {
    md.push(
      `## ${run.mode}`,
      '',
      '| round | held-out accuracy | held-out loss | mean training loss of the round\'s units | accuracy vs stock (points) | time so far |',
      '|---|---|---|---|---|---|',
      ...run.curve.map((p, i) => {
        const s = stock.curve[i]!
        return `| ${p.round} | ${pct(p.accuracy)} | ${p.loss.toFixed(4)} | ${Number.isNaN(p.trainLoss) ? '-' : p.trainLoss.toFixed(4)} | ${signedPoints(p.accuracy - s.accuracy)} | ${secs(p.elapsedMs)} |`
      }),
      '',
    )
  }
  await mkdir(RESULTS, { recursive: true })
  await writeFile(join(RESULTS, 'convergence.md'), md.join('\n'))
  console.log(md.slice(0, 20).join('\n'))
  console.log(`wrote bench/results/convergence.md (${secs(wallMs)})`)
}

await main()
