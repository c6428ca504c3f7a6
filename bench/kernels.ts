/**
 * Kernel benchmark: `npx tsx bench/kernels.ts` writes bench/results/kernels.md and kernels.json.
 *
 * For each preset shape, side by side in one run on one adapter: stock tfjs-webgpu `tf.matMul`, the
 * deterministic matmul (src/kernels/matmulDeterministic.ts) and the exact
 * integer-limb matmul (src/kernels/matmulExact.ts). Median of BENCH_REPS (default 20) after warm-up.
 *
 * On a machine with a real GPU (Dawn on Vulkan): `bench/gpu.sh` points the Vulkan loader at the GPU's driver
 * and runs this; results then go to bench/results/gpu/<adapter>/ with GFLOP/s as a fraction of the device's
 * FP32 peak (gpuPeak.ts). Here, without a GPU, the adapter is SwiftShader: its timings
 * are CPU timings and say nothing about GPUs.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { matmulExactReference, matmulF64, prepareA, prepareB } from '../src/kernels/exactReference.ts'
import { acquireNodeGpu, isUnavailable } from '../src/kernels/device.ts'
import { matmulProgram, matmulUniformValues, type MatMulDims } from '../src/kernels/matmulDeterministic.ts'
import { readBuffer, runProgram, storageBuffer, uniformBuffer } from '../src/kernels/program.ts'
import { ExactMatmul, hasDot4 } from '../src/kernels/matmulExact.ts'
import { fp32Peak, isCpuAdapter, resultsDirectory } from './gpuPeak.ts'
import { medianMs } from './timing.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const REPS = Number(process.env.BENCH_REPS ?? 20)
const WARMUP = 5

const SHAPES: Array<{ name: string; m: number; k: number; n: number }> = [
  { name: 'MLP layer 1 forward [32x784]@[784x64]', m: 32, k: 784, n: 64 },
  { name: 'MLP head forward [32x64]@[64x10]', m: 32, k: 64, n: 10 },
  { name: 'MLP layer 1 weight gradient [784x32]@[32x64]', m: 784, k: 32, n: 64 },
  { name: 'odd sizes [5x13]@[13x7]', m: 5, k: 13, n: 7 },
]

function uniform(n: number, seed: number): Float32Array {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 31 - 1
  })
}

const median = (fn: () => Promise<void>) => medianMs(fn, REPS, WARMUP)

interface Row {
  shape: string
  m: number
  k: number
  n: number
  stockMs: number
  deterministicMs: number
  deterministicKernelMs: number
  exactMs: number
  exactBlockedMs: number
  exactKernelMs: number
  cpuPrepMs: number
  exactOverStock: number
  deterministicOverStock: number
  gflops: { stock: number; deterministic: number; exact: number }
  exactMatchesModel: boolean
  exactMaxAbsDiffVsStock: number
  /** max over outputs of |C - C64| / (|A| @ |B|), C64 the float64 product of the same float32 inputs. */
  relErr: { stock: number; exact: number; exact2Limbs: number }
}

function maxRelErr(c: Float32Array, c64: Float64Array, scale: Float64Array): number {
  let worst = 0
  for (let i = 0; i < c.length; i++) {
    const s = scale[i]!
    if (s > 0) worst = Math.max(worst, Math.abs(c[i]! - c64[i]!) / s)
  }
  return worst
}

async function main(): Promise<void> {
  // Holds Dawn's GPU instance to the end: Dawn aborts the process if it is collected while devices live.
  const node = await acquireNodeGpu()
  if (isUnavailable(node)) throw new Error(node.unavailable)
  const { gpu, adapter, device } = node
  const dot4 = hasDot4(gpu.wgslLanguageFeatures)
  const adapterLine = `${adapter.info.vendor} / ${adapter.info.architecture} / ${adapter.info.description || 'n/a'}` +
    ` (fallback adapter: ${String((adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? adapter.info.isFallbackAdapter)})`
  console.log(`adapter: ${adapterLine}; dot4I8Packed: ${dot4}`)

  ;(globalThis as { navigator?: unknown }).navigator = { gpu }
  await import('@tensorflow/tfjs-backend-webgpu')
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs webgpu backend did not initialise')
  await tf.ready()

  const exact = new ExactMatmul(device, { dot4 })
  const exactBlocked = new ExactMatmul(device, { dot4, block: 2 })
  const rows: Row[] = []
  for (const { name, m, k, n } of SHAPES) {
    const a = uniform(m * k, m * 7919 + k)
    const b = uniform(k * n, k * 104729 + n)
    const flop = 2 * m * k * n

    // (1) stock tfjs-webgpu: inputs resident on the GPU, time matMul + read back.
    const ta = tf.tensor2d(a, [m, k])
    const tb = tf.tensor2d(b, [k, n])
    let stockOut: Float32Array = new Float32Array(0)
    const stockMs = await median(async () => {
      const c = tf.matMul(ta, tb)
      stockOut = (await c.data()) as Float32Array
      c.dispose()
    })
    ta.dispose()
    tb.dispose()

    // (2) deterministic kernel: operands resident, time dispatch (+ read back).
    const dims: MatMulDims = { batch: 1, batchA: 1, batchB: 1, m, n, k }
    const prog = matmulProgram({ transposeA: false, transposeB: false, bias: false, activation: 'linear' }, dims)
    const detBuffers = [
      storageBuffer(device, m * n * 4),
      storageBuffer(device, a),
      storageBuffer(device, b),
      uniformBuffer(device, Int32Array.from(matmulUniformValues(dims))),
    ]
    const deterministicKernelMs = await median(() => runProgram(device, prog, detBuffers))
    const deterministicMs = await median(async () => {
      await runProgram(device, prog, detBuffers)
      await readBuffer(device, detBuffers[0]!, m * n * 4)
    })
    for (const buffer of detBuffers) buffer.destroy()

    // (3) exact kernel: float32 inputs resident; every submit runs the GPU preprocessing and the matmul.
    // The TypeScript preprocessing is timed on its own, for comparison.
    const cpuPrepMs = await median(async () => {
      prepareA(a, m, k, exact.scheme.limbs)
      prepareB(b, k, n, exact.scheme.limbs)
    })
    const job = exact.upload(a, b, m, k, n)
    const exactKernelMs = await median(async () => {
      job.submit()
      await device.queue.onSubmittedWorkDone()
    })
    let exactOut: Float32Array = new Float32Array(0)
    const exactMs = await median(async () => {
      job.submit()
      exactOut = await job.read()
    })
    job.destroy()
    const job2 = exactBlocked.upload(a, b, m, k, n)
    let blockedOut: Float32Array = new Float32Array(0)
    const exactBlockedMs = await median(async () => {
      job2.submit()
      blockedOut = await job2.read()
    })
    job2.destroy()

    const model = matmulExactReference(a, b, m, k, n, exact.scheme)
    const exactMatchesModel = Buffer.from(model.buffer).equals(Buffer.from(exactOut.buffer)) &&
      Buffer.from(model.buffer).equals(Buffer.from(blockedOut.buffer))
    let exactMaxAbsDiffVsStock = 0
    for (let i = 0; i < m * n; i++) {
      exactMaxAbsDiffVsStock = Math.max(exactMaxAbsDiffVsStock, Math.abs(exactOut[i]! - stockOut[i]!))
    }
    const c64 = matmulF64(a, b, m, k, n)
    const scale = matmulF64(a.map(Math.abs), b.map(Math.abs), m, k, n)
    const relErr = {
      stock: maxRelErr(stockOut, c64, scale),
      exact: maxRelErr(exactOut, c64, scale),
      exact2Limbs: maxRelErr(matmulExactReference(a, b, m, k, n, { limbs: 2, minPairOrder: 0 }), c64, scale),
    }
    const gf = (ms: number): number => flop / (ms * 1e6)
    const row: Row = {
      shape: name,
      m,
      k,
      n,
      stockMs,
      deterministicMs,
      deterministicKernelMs,
      exactMs,
      exactBlockedMs,
      exactKernelMs,
      cpuPrepMs,
      exactOverStock: exactMs / stockMs,
      deterministicOverStock: deterministicMs / stockMs,
      gflops: { stock: gf(stockMs), deterministic: gf(deterministicMs), exact: gf(exactMs) },
      exactMatchesModel,
      exactMaxAbsDiffVsStock,
      relErr,
    }
    rows.push(row)
    console.log(JSON.stringify(row))
  }

  const peak = fp32Peak(`${adapter.info.description} ${adapter.info.device ?? ''}`)
  const cpu = isCpuAdapter(adapter)
  const RESULTS = resultsDirectory(ROOT, adapter)
  tf.engine().reset()
  await node.release()
  delete (globalThis as { navigator?: unknown }).navigator

  const f = (x: number | null, digits = 2): string => (x === null ? '—' : x.toFixed(digits))
  const md = [
    '# Kernel benchmark: matmul, stock tfjs-webgpu vs deterministic vs exact',
    '',
    `Generated by \`npx tsx bench/kernels.ts\` on ${new Date().toISOString()}. Adapter: ${adapterLine};`,
    `dot4I8Packed: ${dot4}. Median of ${REPS} after ${WARMUP} warm-up runs. Exact scheme: ${exact.bundleId}.`,
    '',
    cpu
      ? '**This adapter is SwiftShader (a CPU implementation of Vulkan): its timings are CPU timings and say nothing about GPUs.** On a real GPU run `bench/gpu.sh`.'
      : `**Real GPU.** FP32 peak: ${peak ? `${peak.gflops} GFLOP/s (${peak.source})` : 'unknown: set TABTRAIN_FP32_PEAK_GFLOPS'}.`,
    '',
    'Times in ms, operands resident on the GPU, each including the read-back of the result to the CPU',
    '(tfjs: `tf.matMul` + `await data()`; deterministic: `runProgram` + `readBuffer`; exact: its GPU',
    'preprocessing (exponents, limbs) + integer matmul + recombination, then map; "exact 2x2": the same',
    'with 2x2 outputs per invocation, same bits). Ratios and GFLOP/s use the plain exact column.',
    '"kernel" columns time the dispatch alone up to `queue.onSubmittedWorkDone()`. "CPU prep" is the',
    "TypeScript alternative to the exact kernel's GPU preprocessing (`prepareA` + `prepareB`), for comparison.",
    'The machine is shared and has 2 cores: figures move by up to 2x between runs.',
    "`onSubmittedWorkDone()` in Dawn's Node binding resolves on a polling tick (about 4 ms here), so the",
    '"kernel" columns cannot show less than that; the round-trip columns (mapAsync) are the finer ones.',
    '',
    '| shape | stock | deterministic | det. kernel | exact | exact 2x2 | exact kernel | CPU prep | exact/stock | det./stock | GFLOP/s stock / det. / exact | % of FP32 peak stock / det. / exact | exact = CPU model | max abs diff exact vs stock |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) =>
      `| ${r.shape} | ${f(r.stockMs)} | ${f(r.deterministicMs)} | ${f(r.deterministicKernelMs)} | ${f(r.exactMs)} | ${f(r.exactBlockedMs)} | ` +
      `${f(r.exactKernelMs)} | ${f(r.cpuPrepMs)} | ${f(r.exactOverStock)} | ${f(r.deterministicOverStock)} | ` +
      `${f(r.gflops.stock, 3)} / ${f(r.gflops.deterministic, 3)} / ${f(r.gflops.exact, 3)} | ` +
      `${peak ? [r.gflops.stock, r.gflops.deterministic, r.gflops.exact].map((g) => f((100 * g) / peak.gflops, 3)).join(' / ') : 'n/a'} | ` +
      `${r.exactMatchesModel ? 'yes' : 'NO'} | ` +
      `${r.exactMaxAbsDiffVsStock.toExponential(2)} |`),
    '',
    '## Accuracy against float64',
    '',
    'Max over outputs of |C - C64| / (|A| @ |B|), C64 the float64 product of the same float32 inputs',
    '(uniform in [-1, 1)). The exact kernel\'s results are the same on every conforming implementation;',
    "stock's depend on the implementation. 2 limbs (14-bit mantissas) from the CPU model, for the trade-off.",
    '',
    `| shape | stock | exact (${exact.bundleId}) | exact, 2 limbs, all pairs |`,
    '|---|---|---|---|',
    ...rows.map((r) =>
      `| ${r.shape} | ${r.relErr.stock.toExponential(2)} | ${r.relErr.exact.toExponential(2)} | ${r.relErr.exact2Limbs.toExponential(2)} |`),
    '',
  ].join('\n')
  await mkdir(RESULTS, { recursive: true })
  await writeFile(join(RESULTS, 'kernels.md'), md)
  await writeFile(
    join(RESULTS, 'kernels.json'),
    JSON.stringify({ generatedAt: new Date().toISOString(), adapter: adapterLine, fp32Peak: peak, dot4, reps: REPS, scheme: exact.bundleId, rows }, null, 2) + '\n',
  )
  console.log(md)
}

await main()
