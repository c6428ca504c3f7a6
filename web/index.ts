import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { coordinatorUrlFromPage, shortHash } from './lib/liveProgress.ts'

const client = new CoordinatorClient(coordinatorUrlFromPage())
const body = document.querySelector('#jobs tbody')!

client.listJobs().then(
  (jobs) => {
    body.replaceChildren(
      ...jobs.map((job) => {
        const row = document.createElement('tr')
        row.innerHTML = `<td><a href="./job.html?id=${job.id}"></a></td><td>${job.status}</td><td>${job.round} / ${job.rounds}</td><td class="mono">${shortHash(job.checkpoint)}</td>`
        row.querySelector('a')!.textContent = job.name
        return row
      }),
    )
    if (jobs.length === 0) body.innerHTML = '<tr><td colspan="4" class="muted">No jobs yet.</td></tr>'
  },
  (error: Error) => {
    body.innerHTML = `<tr><td colspan="4" class="bad"></td></tr>`
    body.querySelector('td')!.textContent = `Cannot reach the coordinator: ${error.message}`
  },
)
