import * as Comlink from 'comlink'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { Hash, JobProgress } from '../src/protocol/index.ts'
import type { TrainingWorkerApi } from '../src/worker/api.ts'
import { Scheduler, type SchedulerEvent, type UnitReport } from '../src/worker/scheduler.ts'
import { loadBurnerAccount } from '../src/worker/wallet.ts'
import { createProgressChart } from './lib/progressChart.ts'
import { coordinatorUrlFromPage, watchProgress } from './lib/liveProgress.ts'

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T
const client = new CoordinatorClient(coordinatorUrlFromPage())
const chart = createProgressChart($('chart'))
let unitsDone = 0
let unitsRefused = 0

function log(message: string, kind: 'info' | 'good' | 'bad' = 'info') {
  const item = document.createElement('li')
  item.textContent = `${new Date().toLocaleTimeString()}  ${message}`
  if (kind !== 'info') item.className = kind
  const list = $('log')
  list.prepend(item)
  while (list.children.length > 200) list.lastChild?.remove()
}

function showProgress(progress: JobProgress) {
  chart.update(progress)
  $('round').textContent = progress.status === 'finished' ? `${progress.round} (done)` : `${progress.round} / ${progress.rounds}`
  const last = progress.history.at(-1)
  const metrics = last ? { acc: last.heldOutAccuracy, loss: last.heldOutLoss } : progress.initial ? { acc: progress.initial.heldOutAccuracy, loss: progress.initial.heldOutLoss } : null
  $('accuracy').textContent = metrics ? `${(metrics.acc * 100).toFixed(1)}%` : '–'
  $('loss').textContent = metrics ? metrics.loss.toFixed(3) : '–'
}

/** The last units from this tab, newest first: where the wall time of a unit goes. */
const TIMING_ROWS = 10
let timingRows = 0
function showTimings(report: UnitReport) {
  const ms = (x: number) => `${x.toFixed(0)} ms`
  const t = report.timings
  const body = $('timings').querySelector('tbody')!
  if (timingRows === 0) body.replaceChildren()
  const row = document.createElement('tr')
  for (const text of [`${report.round} · ${report.unit}`, ms(t.fetchMs), ms(t.trainMs), ms(t.hashMs), ms(t.signMs), ms(t.uploadMs), ms(t.totalMs), report.meanLoss.toFixed(4)]) {
    const cell = document.createElement('td')
    cell.textContent = text
    row.append(cell)
  }
  body.prepend(row)
  timingRows++
  while (body.children.length > TIMING_ROWS) body.lastChild?.remove()
}

function onEvent(event: SchedulerEvent) {
  switch (event.type) {
    case 'state':
      $('status').textContent = event.state
      $<HTMLButtonElement>('start').disabled = event.state === 'running' || event.state === 'stopping' || event.state === 'finished'
      $<HTMLButtonElement>('stop').disabled = event.state !== 'running'
      if (event.state === 'finished') log('The job has finished: no more units.', 'good')
      break
    case 'leased':
      log(`Leased round ${event.lease.unit.round} unit ${event.lease.unit.unit}`)
      break
    case 'unit-accepted':
      unitsDone++
      $('units-done').textContent = String(unitsDone)
      showTimings(event.report)
      log(`Round ${event.report.round} unit ${event.report.unit} accepted (${event.report.timings.totalMs.toFixed(0)} ms)${event.report.roundClosed ? ', closing the round' : ''}`, 'good')
      break
    case 'unit-refused':
      unitsRefused++
      $('units-refused').textContent = String(unitsRefused)
      log(`Round ${event.round} unit ${event.unit} refused: ${event.message}`, 'bad')
      break
    case 'waiting':
      log(`Waiting ${event.retryAfterMs} ms: ${event.reason}`)
      break
    case 'error':
      log(`${event.message}; retrying in ${(event.retryAfterMs / 1000).toFixed(1)} s`, 'bad')
      break
  }
}

async function main() {
  const worker = new Worker(new URL('../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'tabtrain-training' })
  const remote = Comlink.wrap<TrainingWorkerApi>(worker)
  const [device, account, jobs] = await Promise.all([remote.init(client.baseUrl), loadBurnerAccount(), client.listJobs()])

  $('backend').textContent = device.backend === 'webgpu' ? 'WebGPU' : device.backend
  $('adapter').textContent =
    device.backend === 'webgpu'
      ? `Adapter: ${device.vendor} / ${device.architecture}${device.isFallbackAdapter ? ' (software fallback adapter)' : ''}${device.description ? ` · ${device.description}` : ''}`
      : `No WebGPU: ${device.fallbackReason ?? 'unknown reason'}. Training on ${device.backend}.`
  $('device-class').textContent = device.deviceClass
  $('address').textContent = account.address

  const requested = new URLSearchParams(location.search).get('job')
  const job = jobs.find((j) => j.id === requested) ?? jobs.find((j) => j.status === 'active') ?? jobs[0]
  if (!job) {
    log('The coordinator has no jobs.', 'bad')
    return
  }
  $('job-name').innerHTML = `Job: <a href="./job.html?id=${job.id}">${job.name}</a>`
  const scheduler = new Scheduler({
    client,
    executor: { runUnit: (spec, unit) => remote.runUnit(spec, unit) },
    signer: account,
    deviceClass: device.deviceClass,
    jobId: job.id as Hash,
    onEvent,
  })
  let shownRound = -1
  watchProgress(client, job.id, (progress) => {
    showProgress(progress)
    if (progress.round !== shownRound) scheduler.nudge()
    shownRound = progress.round
  })
  $('start').addEventListener('click', () => scheduler.start())
  $('stop').addEventListener('click', () => void scheduler.stop())
  $<HTMLButtonElement>('start').disabled = job.status !== 'active'
  if (job.status !== 'active') log('This job has finished.', 'good')
  document.body.dataset.ready = 'true'
}

main().catch((error: unknown) => {
  log(`Could not start: ${error instanceof Error ? error.message : String(error)}`, 'bad')
  document.body.dataset.ready = 'error'
})
