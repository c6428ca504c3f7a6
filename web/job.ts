import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { JobDetail, JobProgress } from '../src/protocol/index.ts'
import { createProgressChart } from './lib/progressChart.ts'
import { coordinatorUrlFromPage, shortHash, watchProgress } from './lib/liveProgress.ts'

const $ = (id: string) => document.getElementById(id)!
const client = new CoordinatorClient(coordinatorUrlFromPage())
const chart = createProgressChart($('chart'))

function cells(row: (string | number)[]): HTMLTableRowElement {
  const tr = document.createElement('tr')
  for (const value of row) {
    const td = document.createElement('td')
    td.textContent = String(value)
    tr.append(td)
  }
  return tr
}

function showSetup(job: JobDetail) {
  const t = job.spec.training
  $('job-name').textContent = job.name
  $('job-description').textContent = job.spec.description
  $('job-id').textContent = job.id
  $('contribute-link').setAttribute('href', `./contribute.html?job=${job.id}`)
  $('setup').querySelector('tbody')!.replaceChildren(
    cells(['Data', `${job.spec.data.name}: ${job.spec.data.train.count} training, ${job.spec.data.heldOut.count} held-out examples`]),
    cells(['Inner optimizer', `${t.innerOptimizer}, learning rate ${t.learningRate}, batch ${t.batchSize}, ${t.innerSteps} steps per unit`]),
    cells(['Rounds', `${t.rounds} rounds of ${t.unitsPerRound} units, outer ${t.outerOptimizer} (lr ${t.outerLearningRate})`]),
    cells(['Leases', `${t.leaseTtlSeconds} s before a unit goes back to the queue`]),
    cells(['Kernels', job.spec.kernelBundle]),
  )
}

function showProgress(p: JobProgress) {
  chart.update(p)
  $('status').textContent = p.status
  $('round').textContent = `${p.round} / ${p.rounds}`
  $('this-round').textContent = `${p.acceptedThisRound} / ${p.unitsPerRound}`
  $('accepted').textContent = String(p.acceptedUnits)
  $('contributor-count').textContent = String(p.contributors.length)
  $('checkpoint').textContent = shortHash(p.checkpoint, 18)
  const last = p.history.at(-1)
  const accuracy = last?.heldOutAccuracy ?? p.initial?.heldOutAccuracy
  $('accuracy').textContent = accuracy === undefined ? '–' : `${(accuracy * 100).toFixed(1)}%`
  $('contributors').querySelector('tbody')!.replaceChildren(
    ...p.contributors.map((c) => cells([c.address, c.acceptedUnits, new Date(c.lastSeen).toLocaleTimeString()])),
  )
  $('rounds').querySelector('tbody')!.replaceChildren(
    ...[...p.history]
      .reverse()
      .map((r) =>
        cells([r.round, r.units, Number.isFinite(r.trainLoss) ? r.trainLoss.toFixed(4) : '–', r.heldOutLoss.toFixed(4), `${(r.heldOutAccuracy * 100).toFixed(1)}%`, shortHash(r.outputHash, 14)]),
      ),
  )
}

async function main() {
  const id = new URLSearchParams(location.search).get('id') ?? (await client.listJobs())[0]?.id
  if (!id) {
    $('job-name').textContent = 'No jobs yet'
    return
  }
  showSetup(await client.job(id))
  watchProgress(client, id, showProgress)
}

main().catch((error: Error) => {
  $('job-name').textContent = `Cannot load the job: ${error.message}`
})
