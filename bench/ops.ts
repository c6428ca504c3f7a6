/**
 * Op benchmark: `npx tsx bench/ops.ts` writes bench/results/ops.md and ops.json (bench/results/gpu/<adapter>/
 * on a real GPU, see bench/gpu.sh).
 *
 * Every op a preset unit runs, in the preset's shapes, through tfjs on its WebGPU backend under each kernel
 * bundle, side by side in one run: stock tfjs-webgpu, the default bundle (deterministic matmul, stock
 * element-wise ops and reductions) and exact mode (integer-limb matmul, soft-float element-wise ops and
 * fixed-order reductions). Then whole preset units under each. Median of BENCH_REPS (default 15) after
 * warm-up; each timing includes the read-back (`await data()`), which is how a unit ends too.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { activateKernelBundle, configureTfjsWebgpu, deactivateKernelBundles, EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../src/kernels/config.ts'
import { acquireNodeGpu, isUnavailable } from '../src/kernels/device.ts'
import { seededFloats } from '../src/kernels/reference.ts'
import { presetUnit } from '../src/kernels/testing/presetUnit.ts'
import { adapterLine, isCpuAdapter, resultsDirectory } from './gpuPeak.ts'
import { medianMs } from './timing.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const REPS = Number(process.env.BENCH_REPS ?? 15)
const WARMUP = 3
const UNIT_REPS = Number(process.env.BENCH_UNIT_REPS ?? 3)

type Mode = 'stock' | 'deterministic' | 'exact'
const MODES: Mode[] = ['stock', 'deterministic', 'exact']

function useMode(mode: Mode): void {
  if (mode === 'stock') {
    deactivateKernelBundles()
    configureTfjsWebgpu()
  } else activateKernelBundle(mode === 'exact' ? EXACT_KERNEL_BUNDLE : KERNEL_BUNDLE)
}

const median = (fn: () => Promise<void>, reps = REPS, warmup = WARMUP) => medianMs(fn, reps, warmup)

interface OpCase {
  name: string
  /** Where the preset runs it. */
  where: string
  run(): tf.Tensor
}

/**
 * Positive values for Log and Sqrt (Adam's second moment, softmax sums), both signs elsewhere. Uploaded
 * first: inside a unit every operand is already on the GPU, while a fresh tensor's values sit on the CPU,
 * where tfjs-webgpu computes small ops in JavaScript instead (its CPU hand-off), which is not what a unit
 * does.
 */
function tensor(shape: number[], seed: number, positive = false): tf.Tensor {
  const values = seededFloats(shape.reduce((p, d) => p * d, 1), seed)
  const t = tf.tensor(positive ? values.map((v) => Math.abs(v) + 1e-3) : values, shape)
  ;(tf.backend() as unknown as { uploadToGPU(dataId: object): void }).uploadToGPU(t.dataId)
  return t
}

function opCases(): OpCase[] {
  const w = tensor([784, 64], 1)
  const g = tensor([784, 64], 2)
  const v = tensor([784, 64], 3, true)
  const logits = tensor([32, 10], 4)
  const positive = tensor([32, 10], 5, true)
  const hidden = tensor([32, 64], 6)
  const x = tensor([32, 784], 7)
  const bias = tensor([64], 8)
  return [
    { name: 'Add [784x64]', where: 'Adam, on the first kernel', run: () => tf.add(w, g) },
    { name: 'Multiply [784x64]', where: 'Adam moments', run: () => tf.mul(w, g) },
    { name: 'Multiply [784x64] by a scalar', where: 'Adam learning rate', run: () => tf.mul(w, tf.scalar(0.9)) },
    { name: 'Square [784x64]', where: 'Adam second moment', run: () => tf.square(g) },
    { name: 'Sqrt [784x64]', where: 'Adam denominator', run: () => tf.sqrt(v) },
    { name: 'RealDiv [784x64]', where: 'Adam step', run: () => tf.div(g, v) },
    { name: 'Exp [32x10]', where: 'softmax', run: () => tf.exp(logits) },
    { name: 'Log [32x10]', where: 'log-sum-exp', run: () => tf.log(positive) },
    { name: 'Max [32x10] over classes', where: 'log-sum-exp', run: () => tf.max(logits, 1, true) },
    { name: 'Sum [32x10] over classes', where: 'log-sum-exp', run: () => tf.sum(logits, 1, true) },
    { name: 'Sum [32x64] over the batch', where: 'bias gradient', run: () => tf.sum(hidden, 0) },
    { name: 'Relu [32x64]', where: 'hidden activation gradient', run: () => tf.relu(hidden) },
    { name: 'MatMul [32x784]@[784x64] + bias, relu', where: 'forward, first layer', run: () => tf.fused.matMul({ a: x, b: w, bias, activation: 'relu' }) },
  ]
}

interface OpRow {
  name: string
  where: string
  ms: Record<Mode, number>
  deterministicOverStock: number
  exactOverStock: number
}

interface UnitRow {
  innerSteps: number
  ms: Record<Mode, number>
  hashes: Record<Mode, string>
  deterministicOverStock: number
  exactOverStock: number
}

async function presetUnits(innerSteps: number): Promise<UnitRow> {
  const job = await presetUnit({ innerSteps })
  const ms = {} as Record<Mode, number>
  const hashes = {} as Record<Mode, string>
  for (const mode of MODES) {
    useMode(mode)
    const runner = job.runner()
    ms[mode] = await median(
      async () => {
        hashes[mode] = (await runner.run(job.spec, job.unit)).outputHash
      },
      UNIT_REPS,
      1,
    )
    console.log(`unit of ${innerSteps} steps, ${mode}: ${ms[mode].toFixed(1)} ms`)
  }
  return { innerSteps, ms, hashes, deterministicOverStock: ms.deterministic / ms.stock, exactOverStock: ms.exact / ms.stock }
}

async function main(): Promise<void> {
  const node = await acquireNodeGpu()
  if (isUnavailable(node)) throw new Error(node.unavailable)
  const { gpu, adapter } = node
  const adapterText = adapterLine(adapter)
  console.log(`adapter: ${adapterText}`)
  ;(globalThis as { navigator?: unknown }).navigator = { gpu }
  await import('@tensorflow/tfjs-backend-webgpu')
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs webgpu backend did not initialise')
  await tf.ready()

  const rows: OpRow[] = []
  for (const c of opCases()) {
    const ms = {} as Record<Mode, number>
    for (const mode of MODES) {
      useMode(mode)
      ms[mode] = await median(async () => {
        const out = c.run()
        await out.data()
        out.dispose()
      })
    }
    rows.push({ name: c.name, where: c.where, ms, deterministicOverStock: ms.deterministic / ms.stock, exactOverStock: ms.exact / ms.stock })
    console.log(`${c.name}: ${MODES.map((m) => `${m} ${ms[m].toFixed(2)} ms`).join(', ')}`)
  }
  const units = [await presetUnits(2), await presetUnits(8)]

  const f = (x: number) => x.toFixed(2)
  const md = [
    '# Op benchmark: stock tfjs-webgpu vs the default bundle vs exact mode, per preset op',
    '',
    `Generated by \`npx tsx bench/ops.ts\` on ${new Date().toISOString()}. Adapter: ${adapterText}.`,
    `Median of ${REPS} after ${WARMUP} warm-up runs (units: median of ${UNIT_REPS} after one). Times in ms, each with the read-back.`,
    '',
    isCpuAdapter(adapter)
      ? '**This adapter is SwiftShader, a CPU implementation of Vulkan: read the ratios, not the times.** On a real GPU run `bench/gpu.sh`.'
      : '**Real GPU.**',
    '',
    'Modes: *stock* is tfjs-webgpu 4.22 as shipped; *default* is the default kernel bundle (deterministic matmul, fixed-order',
    'Sum and Max in f32; element-wise ops are stock, each output from its own inputs); *exact* is exact mode (integer-limb',
    'matmul; soft-float element-wise ops and fixed-order reductions: the same bits on every implementation). The default',
    'column differs from stock only for the matmul and the reductions; on element-wise ops it measures noise (the machine is shared).',
    '',
    '| op | where in the preset | stock | default | exact | default/stock | exact/stock |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.where} | ${f(r.ms.stock)} | ${f(r.ms.deterministic)} | ${f(r.ms.exact)} | ${f(r.deterministicOverStock)} | ${f(r.exactOverStock)} |`),
    '',
    '## Whole preset units (MNIST 784-64-10, batch 32, Adam)',
    '',
    '| inner steps | stock | default | exact | default/stock | exact/stock |',
    '|---|---|---|---|---|---|',
    ...units.map((u) => `| ${u.innerSteps} | ${f(u.ms.stock)} | ${f(u.ms.deterministic)} | ${f(u.ms.exact)} | ${f(u.deterministicOverStock)} | ${f(u.exactOverStock)} |`),
    '',
    'Unit output hashes (each mode computes different bits; each is the same run to run):',
    '',
    ...units.flatMap((u) => MODES.map((m) => `- ${u.innerSteps} steps, ${m}: \`${u.hashes[m]}\``)),
    '',
  ].join('\n')
  const dir = resultsDirectory(ROOT, adapter)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'ops.md'), md)
  await writeFile(join(dir, 'ops.json'), JSON.stringify({ adapter: adapterText, reps: REPS, rows, units }, null, 2))
  console.log(`wrote ${join(dir, 'ops.md')}`)
  deactivateKernelBundles()
  await node.release()
  tf.removeBackend('webgpu')
}

await main()
