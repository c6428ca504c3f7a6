import * as tf from '@tensorflow/tfjs'
import { formatBound, formatError, runKernelSuite, type KernelCaseResult } from '../src/kernels/kernelSuite.ts'
import { PINNED_KERNEL_DIGESTS } from '../src/kernels/kernelSuiteDigests.ts'
import { browserEngine } from '../src/worker/backend.ts'

/**
 * The Kernel self-test page: runs src/kernels/kernelSuite.ts on this browser's WebGPU adapter in the page
 * itself (the suite only awaits the GPU; its CPU references are small) and shows one row per case and
 * bundle. For tests it publishes the results as JSON on `document.body.dataset.results` with
 * `dataset.done = '1'`, or the reason it could not run on `dataset.error`.
 */

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T

function cell(text: string, className = ''): HTMLTableCellElement {
  const td = document.createElement('td')
  td.textContent = text
  if (className) td.className = className
  return td
}

function badge(text: string, kind: 'good' | 'bad' | 'muted'): HTMLTableCellElement {
  const td = document.createElement('td')
  const span = document.createElement('span')
  span.className = `badge ${kind}`
  span.textContent = text
  td.append(span)
  return td
}

function pinnedDigest(result: KernelCaseResult): string | undefined {
  return PINNED_KERNEL_DIGESTS[result.bundle]?.[result.name]
}

function addRow(result: KernelCaseResult) {
  const row = document.createElement('tr')
  const name = cell(result.name)
  name.title = result.kernels
  const bound = cell(`${formatBound(result.bound)} ${result.unit}`, 'nowrap')
  bound.title = result.why
  const digest = cell(`${result.digest.slice(0, 18)}…`, 'mono')
  digest.title = result.digest
  const pinned = pinnedDigest(result)
  row.append(
    name,
    cell(result.bundle, 'muted'),
    cell(formatError(result.maxError), result.withinBound ? 'nowrap' : 'nowrap bad'),
    bound,
    cell(result.repeatable ? 'same' : 'DIFFERENT', result.repeatable ? 'muted' : 'bad'),
    digest,
    pinned === undefined ? badge('not pinned', 'muted') : pinned === result.digest ? badge('same bits', 'good') : badge('other bits', 'muted'),
    result.passed ? badge('pass', 'good') : badge('FAIL', 'bad'),
  )
  $('results').append(row)
}

/** tfjs on WebGPU, or why not: this page has no fallback, since it exists to test the GPU. */
async function startWebgpu(): Promise<string> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu
  if (!gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)')
  const adapter = await gpu.requestAdapter().catch(() => null)
  if (!adapter) throw new Error('WebGPU found no adapter on this device')
  await import('@tensorflow/tfjs-backend-webgpu')
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs could not initialise its WebGPU backend')
  await tf.ready()
  const info = adapter.info
  return [info.vendor || 'unknown vendor', info.architecture || info.description || 'unknown', browserEngine(navigator.userAgent)].join(' · ')
}

async function run() {
  $<HTMLButtonElement>('run').disabled = true
  delete document.body.dataset.done
  delete document.body.dataset.results
  $('results').replaceChildren()
  $('status').textContent = 'running: the first cases include shader compilation…'
  const started = performance.now()
  const results = await runKernelSuite({ onResult: addRow })
  const seconds = (performance.now() - started) / 1000
  const passed = results.filter((r) => r.passed).length
  const pinned = results.filter((r) => pinnedDigest(r) === r.digest).length
  $('passed').textContent = `${passed} / ${results.length}`
  $('passed').className = `value ${passed === results.length ? 'good' : 'bad'}`
  $('pinned').textContent = `${pinned} / ${results.length}`
  $('time').textContent = `${seconds.toFixed(1)} s`
  $('status').textContent =
    passed === results.length
      ? 'Every kernel is within its bound and repeatable on this device.'
      : `${results.length - passed} case(s) failed: this device's results are outside the stated bounds or not repeatable.`
  document.body.dataset.results = JSON.stringify(results)
  document.body.dataset.done = '1'
  $<HTMLButtonElement>('run').disabled = false
}

function fail(error: unknown) {
  const message = error instanceof Error ? error.message : String(error)
  $('status').textContent = `Could not run the kernel self-test: ${message}`
  $('status').className = 'bad'
  document.body.dataset.error = message
}

async function main() {
  $('device').textContent = await startWebgpu().catch((error: unknown) => {
    $('device').textContent = 'no WebGPU'
    throw error
  })
  $('run').addEventListener('click', () => void run().catch(fail))
  await run()
}

main().catch(fail)
