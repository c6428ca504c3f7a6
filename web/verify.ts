import * as Comlink from 'comlink'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { promisesSameBitsEverywhere, type JobDetail, type UnitRecord } from '../src/protocol/index.ts'
import type { DeviceInfo, TrainingWorkerApi } from '../src/worker/api.ts'
import { coordinatorUrlFromPage } from './lib/liveProgress.ts'
import { loadProblem, parameterProblem, problemElement, showPageProblem } from './lib/pageErrors.ts'

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T
const client = new CoordinatorClient(coordinatorUrlFromPage())
const worker = new Worker(new URL('../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'tabtrain-verify' })
const remote = Comlink.wrap<TrainingWorkerApi>(worker)

/**
 * The verdict a verifier can give from here. In exact mode every device computes the same bits, so any
 * difference is evidence. Otherwise only the same device class promises equal bits; another class (another
 * vendor, browser or backend) may round differently.
 */
const CHECKING = 'this unit is being checked; its answer is not served until the check settles'

function verdict(record: UnitRecord, outputHash: string, deviceClass: string, kernelBundle: string): { text: string; kind: 'good' | 'bad' | 'muted' } {
  if (record.status === 'checking') return { text: `${CHECKING}: nothing to compare yet, try again later`, kind: 'muted' }
  if (!record.outputHash) return { text: `not accepted yet (${record.status}): nothing to compare`, kind: 'muted' }
  if (record.status === 'rejected') {
    return record.outputHash === outputHash
      ? { text: 'equal to an answer the coordinator rejected: it was removed from the model as part of work found wrong', kind: 'muted' }
      : { text: 'different from an answer the coordinator rejected (found wrong, removed from the model and its round rebuilt)', kind: 'good' }
  }
  if (record.outputHash === outputHash) return { text: 'equal: the accepted update is reproduced bit for bit', kind: 'good' }
  if (promisesSameBitsEverywhere(kernelBundle)) return { text: 'DIFFERENT in exact mode, which gives the same bits on every device: evidence against the claim', kind: 'bad' }
  if (record.deviceClass === deviceClass) return { text: 'DIFFERENT on the same device class: evidence against the claim', kind: 'bad' }
  return { text: `different, but computed on another device class (${record.deviceClass}); compare within the job's tolerance`, kind: 'muted' }
}

async function run(device: DeviceInfo) {
  const jobId = $<HTMLInputElement>('job').value.trim()
  const round = Number($<HTMLInputElement>('round').value)
  const index = Number($<HTMLInputElement>('unit').value)
  delete document.body.dataset.outputHash
  delete document.body.dataset.unitStatus
  $('verdict').textContent = 'running…'
  let job: JobDetail
  let record: UnitRecord
  try {
    ;[job, record] = await Promise.all([client.job(jobId), client.unit(jobId, round, index)])
  } catch (error) {
    // An unknown job or unit is said in words, with the way back, not as a failed run.
    $('verdict').replaceChildren(problemElement(loadProblem(error, { job: jobId, round, unit: index })))
    document.body.dataset.outputHash = 'error'
    return
  }
  $('input-hash').textContent = record.unit.inputHash
  document.body.dataset.unitStatus = record.status
  $('accepted-hash').textContent = record.outputHash ?? (record.status === 'checking' ? `– (${CHECKING})` : '–')
  $('accepted-class').textContent = record.deviceClass ? `${record.contributor} on ${record.deviceClass}` : '–'
  const started = performance.now()
  const output = await remote.runUnit(job.spec, record.unit)
  $('time').textContent = `${(performance.now() - started).toFixed(0)} ms`
  $('output-hash').textContent = output.outputHash
  const ranAs = output.deviceClass ?? device.deviceClass
  $('device-class').textContent = ranAs
  const v = verdict(record, output.outputHash, ranAs, job.spec.kernelBundle)
  $('verdict').innerHTML = `<span class="badge ${v.kind}"></span>`
  $('verdict').firstElementChild!.textContent = v.text
  document.body.dataset.outputHash = output.outputHash
}

async function main() {
  const params = new URLSearchParams(location.search)
  const badLink = parameterProblem(params, [
    { name: 'job', kind: 'job' },
    { name: 'round', kind: 'index' },
    { name: 'unit', kind: 'index' },
  ])
  if (badLink) {
    showPageProblem(badLink)
    return
  }
  const jobs = await client.listJobs()
  $<HTMLInputElement>('job').value = params.get('job') ?? jobs[0]?.id ?? ''
  if (params.has('round')) $<HTMLInputElement>('round').value = params.get('round')!
  if (params.has('unit')) $<HTMLInputElement>('unit').value = params.get('unit')!
  const device = await remote.init(client.baseUrl)
  $('backend').textContent = device.backend === 'webgpu' ? 'WebGPU' : device.backend
  $('device-class').textContent = device.deviceClass
  $<HTMLButtonElement>('run').disabled = false
  $('form').addEventListener('submit', (event) => {
    event.preventDefault()
    $<HTMLButtonElement>('run').disabled = true
    run(device)
      .catch((error: unknown) => {
        $('verdict').textContent = `failed: ${error instanceof Error ? error.message : String(error)}`
        document.body.dataset.outputHash = 'error'
      })
      .finally(() => ($<HTMLButtonElement>('run').disabled = false))
  })
  document.body.dataset.ready = 'true'
  // A link that names the job, round and unit asks for that unit to be verified: it runs at once.
  if (params.get('run') === '1' || (params.has('job') && params.has('round') && params.has('unit'))) $<HTMLFormElement>('form').requestSubmit()
}

main().catch((error: unknown) => showPageProblem(loadProblem(error)))
