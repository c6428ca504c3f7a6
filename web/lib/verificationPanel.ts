import type { ContributorRecord, JobVerificationSummary, RoundRecord } from '../../src/protocol/index.ts'
import { checkRateTitle, formatCheckRate, standing } from './reputationCard.ts'

/**
 * The job page's verification parts: the "Verification" card (checks, referee runs, rejected units,
 * rebuilt rounds, banned addresses), the reputation columns of the contributors table and the rebuilt
 * marks of the rounds table. Fills elements of job.html by id.
 */

const $ = (id: string) => document.getElementById(id)!

const SUMMARY_FIELDS = ['checksPassed', 'checksFailed', 'checksPending', 'refereeRuns', 'unitsRejected'] as const

function idOf(field: string): string {
  return `verification-${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
}

function td(text: string, props: Partial<HTMLTableCellElement> = {}): HTMLTableCellElement {
  return Object.assign(document.createElement('td'), { textContent: text }, props)
}

export function showVerification(summary: JobVerificationSummary | undefined): void {
  if (!summary) return
  for (const field of SUMMARY_FIELDS) {
    const el = $(idOf(field))
    el.textContent = String(summary[field])
    el.dataset.value = String(summary[field])
  }
  const rebuilt = [...summary.roundsRebuilt].sort((a, b) => a - b)
  const roundsEl = $('verification-rounds-rebuilt')
  roundsEl.textContent = String(rebuilt.length)
  roundsEl.dataset.value = rebuilt.join(',')
  $('verification-rebuilt-list').textContent =
    rebuilt.length === 0
      ? 'No round has been rebuilt.'
      : `Rounds rebuilt without rejected work: ${rebuilt.join(', ')}. Their checkpoints (and every later one) were recomputed; the rounds table marks them.`
  const banned = $('verification-banned')
  banned.dataset.count = String(summary.banned.length)
  if (summary.banned.length === 0) {
    banned.replaceChildren(Object.assign(document.createElement('li'), { className: 'muted', textContent: 'No address banned in this job.' }))
  } else {
    banned.replaceChildren(...summary.banned.map((address) => Object.assign(document.createElement('li'), { className: 'mono bad', textContent: address })))
  }
}

/** One contributors-table row: address, accepted units, last seen, then the address's record with the checks. */
export function contributorRow(c: ContributorRecord): HTMLTableRowElement {
  const tr = document.createElement('tr')
  tr.dataset.address = c.address
  tr.append(td(c.address, { className: 'mono' }), td(String(c.acceptedUnits)), td(new Date(c.lastSeen).toLocaleTimeString()))
  const r = c.reputation
  if (!r) {
    tr.append(td('–'), td('–'), td('–'))
    return tr
  }
  const s = standing(r)
  const standingCell = td('')
  standingCell.append(Object.assign(document.createElement('span'), { className: `badge ${s.kind}`, textContent: s.text, title: r.bannedReason ?? '' }))
  tr.append(td(formatCheckRate(r.checkRate), { title: checkRateTitle(r.checkRate) }), td(`${r.checksPassed} / ${r.checksFailed}`), standingCell)
  if (r.banned) tr.dataset.banned = 'true'
  return tr
}

/** One rounds-table row; a rebuilt round says how often, and clipped updates are counted. */
export function roundRow(r: RoundRecord, shortHash: (hash: string, chars: number) => string): HTMLTableRowElement {
  const tr = document.createElement('tr')
  tr.dataset.round = String(r.round)
  const rebuilds = r.rebuilds ?? 0
  tr.append(
    td(String(r.round)),
    td(String(r.units)),
    td(Number.isFinite(r.trainLoss) ? r.trainLoss.toFixed(4) : '–'),
    td(r.heldOutLoss.toFixed(4)),
    td(`${(r.heldOutAccuracy * 100).toFixed(1)}%`),
    td(shortHash(r.outputHash, 14), { className: 'mono', title: r.outputHash }),
  )
  const verification = td('')
  if (rebuilds > 0) {
    tr.dataset.rebuilt = String(rebuilds)
    tr.className = 'rebuilt'
    verification.append(
      Object.assign(document.createElement('span'), {
        className: 'badge bad',
        textContent: rebuilds === 1 ? 'rebuilt' : `rebuilt ×${rebuilds}`,
        title: 'Recomputed without work that failed a check',
      }),
    )
  }
  if ((r.clipped ?? 0) > 0) verification.append(`${rebuilds > 0 ? ' ' : ''}${r.clipped} clipped`)
  tr.append(verification)
  return tr
}
