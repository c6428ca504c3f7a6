import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { CoordinatorInfo, JobSummary } from '../src/protocol/index.ts'
import { formatToken, type TokenFormat } from './lib/amounts.ts'
import { coordinatorUrlFromPage, shortHash } from './lib/liveProgress.ts'

const client = new CoordinatorClient(coordinatorUrlFromPage())
const body = document.querySelector('#jobs tbody')!

const ESCROW_TEXT = { awaiting_deposit: 'awaiting deposit', funded: 'funded', closed: 'closed' } as const

function jobRow(job: JobSummary, token: TokenFormat | null): HTMLTableRowElement {
  const row = document.createElement('tr')
  const link = document.createElement('a')
  link.href = `./job.html?id=${job.id}`
  link.textContent = job.name
  const texts = [
    job.status,
    `${job.round} / ${job.rounds}`,
    job.payment ? formatToken(BigInt(job.payment.pricePerUnit), token) : 'volunteer',
    job.payment ? ESCROW_TEXT[job.payment.status] : '–',
    shortHash(job.checkpoint),
  ]
  const first = document.createElement('td')
  first.append(link)
  row.append(first)
  for (const text of texts) {
    const td = document.createElement('td')
    td.textContent = text
    row.append(td)
  }
  if (job.payment) row.children[3]!.setAttribute('data-amount', job.payment.pricePerUnit)
  row.children[5]!.className = 'mono'
  return row
}

Promise.all([client.listJobs(), client.info().catch((): CoordinatorInfo | null => null)]).then(
  ([jobs, info]) => {
    const token = info?.chain?.token ?? null
    body.replaceChildren(...jobs.map((job) => jobRow(job, token)))
    if (jobs.length === 0) body.innerHTML = '<tr><td colspan="6" class="muted">No jobs yet.</td></tr>'
  },
  (error: Error) => {
    body.innerHTML = `<tr><td colspan="6" class="bad"></td></tr>`
    body.querySelector('td')!.textContent = `Cannot reach the coordinator: ${error.message}`
  },
)
