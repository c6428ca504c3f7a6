import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { ChainInfo, CoordinatorInfo, EpochRecord, JobDetail, JobPayment, JobProgress } from '../src/protocol/index.ts'
import { formatToken, formatWhen, showAmount, type TokenFormat } from './lib/amounts.ts'
import { chainNow } from './lib/chainTime.ts'
import { createProgressChart } from './lib/progressChart.ts'
import { coordinatorUrlFromPage, shortHash, watchProgress } from './lib/liveProgress.ts'
import { contributorRow, roundRow, showVerification } from './lib/verificationPanel.ts'
import { estimatePace, formatTimeLeft } from './lib/pace.ts'
import { createDownloadCard } from './job/downloadCard.ts'
import { createOwnerCard } from './job/ownerCard.ts'
import { createSampleCard } from './job/sampleCard.ts'
import { loadProblem, parameterProblem, showPageProblem } from './lib/pageErrors.ts'

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
    cells([
      'Rounds',
      (t.maxStaleness
        ? `${t.rounds} asynchronous rounds of at least ${t.unitsPerRound} units, one per live contributor (answers up to ${t.maxStaleness} round(s) late)`
        : `${t.rounds} rounds of ${t.unitsPerRound} units`) +
        `, outer ${t.outerOptimizer}${t.outerOptimizer === 'nesterov' ? ` (lr ${t.outerLearningRate}, momentum ${t.outerMomentum ?? 0.9})` : ` (lr ${t.outerLearningRate})`}` +
        (t.compression ? `, updates sent as int8 (blocks of ${t.compression.blockSize})` : ''),
    ]),
    cells(['Leases', `${t.leaseTtlSeconds} s before a unit goes back to the queue`]),
    cells(['Kernels', job.spec.kernelBundle]),
  )
}

function showPace(p: JobProgress) {
  const closed = p.history.length
  const bar = $('progress-bar')
  bar.setAttribute('aria-valuemax', String(p.rounds))
  bar.setAttribute('aria-valuenow', String(closed))
  ;(bar.firstElementChild as HTMLElement).style.width = `${Math.min(100, (100 * closed) / Math.max(1, p.rounds))}%`
  const pace = estimatePace(p.history, p.rounds)
  $('time-left').textContent =
    p.status === 'finished'
      ? `All ${p.rounds} rounds closed.`
      : p.status === 'paused'
        ? `Paused by its owner after ${closed} of ${p.rounds} rounds.`
        : p.status === 'cancelled'
          ? `Cancelled by its owner after ${closed} of ${p.rounds} rounds.`
          : pace
            ? `${closed} of ${p.rounds} rounds closed · ${formatTimeLeft(pace.msLeft)} left at the recent pace (${(pace.msPerRound / 1000).toFixed(1)} s a round)`
            : `${closed} of ${p.rounds} rounds closed · time left shows once two rounds have closed`
}

function showProgress(p: JobProgress) {
  chart.update(p)
  showPace(p)
  $('status').textContent = p.status
  $('round').textContent = `${p.round} / ${p.rounds}`
  $('this-round').textContent = `${p.acceptedThisRound} / ${p.roundSize}`
  $('accepted').textContent = String(p.acceptedUnits)
  $('contributor-count').textContent = String(p.contributors.length)
  $('checkpoint').textContent = shortHash(p.checkpoint, 18)
  const last = p.history.at(-1)
  const accuracy = last?.heldOutAccuracy ?? p.initial?.heldOutAccuracy
  $('accuracy').textContent = accuracy === undefined ? '–' : `${(accuracy * 100).toFixed(1)}%`
  $('contributors').querySelector('tbody')!.replaceChildren(...p.contributors.map(contributorRow))
  $('rounds').querySelector('tbody')!.replaceChildren(...[...p.history].reverse().map((r) => roundRow(r, shortHash)))
  showVerification(p.verification)
}

const PAYMENT_STATUS: Record<JobPayment['status'], { text: string; kind: string }> = {
  awaiting_deposit: { text: 'awaiting deposit', kind: 'bad' },
  funded: { text: 'funded', kind: 'good' },
  closed: { text: 'closed', kind: 'muted' },
}

function cell(text: string): HTMLTableCellElement {
  const td = document.createElement('td')
  td.textContent = text
  return td
}

/** Full hashes where there is room; `short` keeps the epochs table readable, with the hash in the title and `data-tx-hash`. */
function txCell(hash: string, short = false): HTMLTableCellElement {
  const td = cell(short ? shortHash(hash, 18) : hash)
  td.className = 'tx'
  td.title = hash
  td.dataset.txHash = hash
  return td
}

function showEscrow(payment: JobPayment | null, token: TokenFormat | null) {
  const badge = $('escrow-status')
  $('escrow-volunteer').hidden = payment !== null
  $('escrow-details').hidden = payment === null
  if (!payment) {
    badge.textContent = 'volunteer'
    badge.className = 'badge muted'
    badge.dataset.status = 'volunteer'
    return
  }
  const status = PAYMENT_STATUS[payment.status]
  badge.textContent = status.text
  badge.className = `badge ${status.kind}`
  badge.dataset.status = payment.status
  showAmount($('escrow-price'), payment.pricePerUnit, token)
  showAmount($('escrow-budget'), payment.budget, token)
  showAmount($('escrow-deposited'), payment.deposited, token)
  showAmount($('escrow-earned'), payment.earned, token)
  showAmount($('escrow-charged'), payment.charged, token)
  showAmount($('escrow-remaining'), payment.remaining, token)
  $('escrow-requester').textContent = payment.requester ?? 'not deposited yet'
  const rows = payment.deposits.map((deposit) => {
    const row = cells(['Deposit', formatToken(BigInt(deposit.amount), token), deposit.blockNumber])
    row.append(txCell(deposit.txHash))
    row.dataset.txHash = deposit.txHash
    row.dataset.kind = 'deposit'
    return row
  })
  if (payment.closeTxHash) {
    const row = cells(['Close', '', ''])
    row.append(txCell(payment.closeTxHash))
    row.dataset.txHash = payment.closeTxHash
    row.dataset.kind = 'close'
    rows.push(row)
  }
  if (rows.length === 0) rows.push(cells(['No deposit seen on chain yet.', '', '', '']))
  $('escrow-txs').querySelector('tbody')!.replaceChildren(...rows)
}

function epochStatus(epoch: EpochRecord, chainTime: number | null): string {
  if (epoch.status !== 'posted') return epoch.status === 'built' ? 'built, not sent' : 'sent, not mined'
  if (epoch.claimableAt === null || chainTime === null) return 'posted'
  return epoch.claimableAt <= chainTime ? 'claimable' : 'in challenge window'
}

function showEpochs(epochs: EpochRecord[], token: TokenFormat | null, chainTime: number | null) {
  const body = $('epochs').querySelector('tbody')!
  if (epochs.length === 0) {
    body.replaceChildren(cells(['No epoch posted yet.', '', '', '', '', '', '']))
    return
  }
  const now = chainTime ?? Date.now() / 1000
  body.replaceChildren(
    ...epochs.map((epoch) => {
      const row = document.createElement('tr')
      const root = cell(shortHash(epoch.root, 14))
      root.className = 'mono'
      root.title = epoch.root
      const total = cell(formatToken(BigInt(epoch.totalCumulative), token))
      total.className = 'nowrap'
      total.dataset.amount = epoch.totalCumulative
      row.append(
        cell(String(epoch.epoch)),
        root,
        cell(String(epoch.accounts)),
        total,
        cell(epochStatus(epoch, chainTime)),
        epoch.txHash ? txCell(epoch.txHash, true) : cell('–'),
        cell(epoch.claimableAt === null ? '–' : formatWhen(epoch.claimableAt, now)),
      )
      row.dataset.epoch = String(epoch.epoch)
      row.dataset.status = epoch.status
      return row
    }),
  )
}

/** Escrow and epochs come from the coordinator's database and the chain, so they are read, not pushed. */
function watchSettlement(id: string, chain: ChainInfo | null, onJob: (job: JobDetail) => void): () => void {
  const token = chain?.token ?? null
  let running: Promise<void> | null = null
  let last = 0
  const read = () => {
    if (running) return
    last = Date.now()
    running = (async () => {
      const [job, epochs, chainTime] = await Promise.all([
        client.job(id),
        chain ? client.epochs() : Promise.resolve(null),
        chain ? chainNow(chain.rpcUrl) : Promise.resolve(null),
      ])
      showEscrow(job.payment, token)
      onJob(job)
      if (epochs) showEpochs(epochs, token, chainTime)
    })()
      .catch(() => {})
      .finally(() => {
        running = null
      })
  }
  read()
  setInterval(read, 5000)
  // Progress arrives with every accepted unit: at most one extra read a second keeps earned and remaining in step.
  return () => {
    if (Date.now() - last > 1000) read()
  }
}

async function main() {
  const id = new URLSearchParams(location.search).get('id') ?? (await client.listJobs())[0]?.id
  if (!id) {
    showPageProblem({ code: 'no_jobs', title: 'No jobs yet', message: 'This coordinator has no jobs to show.', links: [{ href: './new.html', text: 'Create a job' }] })
    return
  }
  const [job, info] = await Promise.all([client.job(id), client.info().catch((): CoordinatorInfo | null => null)])
  showSetup(job)
  const chain = info?.chain ?? null
  showEscrow(job.payment, chain?.token ?? null)
  if (!chain) $('epochs').querySelector('tbody')!.replaceChildren(cells(['Rewards are off: this coordinator runs without a chain.', '', '', '', '', '', '']))
  const owner = chain ? createOwnerCard($('owner-card'), client, chain, job) : null
  const onProgress = watchSettlement(id, chain, (detail) => owner?.update(detail))
  const download = createDownloadCard($('download-card'), client, id)
  const sample = createSampleCard($('sample-card'), client, id, job.spec)
  watchProgress(client, id, (progress) => {
    showProgress(progress)
    download.update(progress)
    sample.setRound(progress.history.length > 0 ? Math.max(...progress.history.map((r) => r.round)) : null)
    onProgress()
  })
}

// An unknown or malformed id, or a coordinator that cannot be reached, gets a page that says so (pageErrors.ts).
const pageParams = new URLSearchParams(location.search)
const badLink = parameterProblem(pageParams, [{ name: 'id', kind: 'job' }])
if (badLink) showPageProblem(badLink)
else main().catch((error: unknown) => showPageProblem(loadProblem(error, { job: pageParams.get('id') })))
