import type { Address } from 'viem'
import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { ReputationView } from '../../src/protocol/index.ts'

/**
 * A check rate as people read it: "1 in 3" (the chance that a unit is re-executed by someone else), with
 * the exact percentage for the title. Shared by the contribute page's card and the job page's table.
 */
export function formatCheckRate(rate: number): string {
  if (!Number.isFinite(rate) || rate <= 0) return 'none'
  if (rate >= 1) return 'every unit'
  return `1 in ${Math.round(1 / rate)}`
}

export function checkRateTitle(rate: number): string {
  return `${(rate * 100).toFixed(1)}% of this address's next units are re-executed to check them`
}

/** One word for the record: banned, failed checks, new (checked most) or clean. */
export function standing(view: ReputationView): { text: string; kind: 'good' | 'bad' | 'muted' } {
  if (view.banned) return { text: 'banned', kind: 'bad' }
  if (view.checksFailed > 0) return { text: 'failed checks', kind: 'bad' }
  if (view.checksPassed === 0) return { text: 'new', kind: 'muted' }
  return { text: 'clean', kind: 'good' }
}

const NUMBER_FIELDS = [
  ['checksPassed', 'Checks passed'],
  ['checksFailed', 'Checks failed'],
  ['unitsRejected', 'Units rejected'],
  ['slashes', 'Slashes'],
] as const

/**
 * The contribute page's reputation card: what the coordinator's checks say about the current wallet.
 * Builds its own content inside `root` (a `<section class="card">`); `show` reads the record again and never
 * throws: a failed read is said in the card and the next refresh tries again.
 */
export function createReputationCard(root: HTMLElement, client: CoordinatorClient): { show(address: Address | null): Promise<void> } {
  const el = <K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]) => {
    const node = Object.assign(document.createElement(tag), props)
    node.append(...children)
    return node
  }
  const badge = el('span', { className: 'badge muted', id: 'reputation-status', textContent: '–' })
  const stat = (id: string, label: string) => {
    const value = el('div', { className: 'value', id, textContent: '–' })
    return { box: el('div', { className: 'stat' }, el('div', { className: 'label', textContent: label }), value), value }
  }
  const rate = stat('reputation-check-rate', 'Check rate')
  const numbers = NUMBER_FIELDS.map(([field, label]) => ({ field, ...stat(`reputation-${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, label) }))
  const note = el('p', { className: 'muted small', id: 'reputation-note' })
  const banned = el('p', { className: 'bad', id: 'reputation-banned', hidden: true })
  root.replaceChildren(
    el('h2', {}, 'Reputation ', badge),
    el('div', { className: 'row' }, rate.box, ...numbers.map((n) => n.box)),
    banned,
    note,
  )

  let shown: Address | null = null
  const clear = () => {
    for (const { value } of [rate, ...numbers]) {
      value.textContent = '–'
      delete value.dataset.value
    }
    badge.textContent = '–'
    badge.className = 'badge muted'
    delete badge.dataset.status
    banned.hidden = true
    note.textContent = ''
  }

  return {
    async show(address) {
      if (address !== shown) clear()
      shown = address
      if (!address) return
      let view: ReputationView
      try {
        view = await client.reputation(address)
      } catch (error) {
        if (address === shown) note.textContent = `Cannot read the reputation: ${error instanceof Error ? error.message : String(error)}`
        return
      }
      if (address !== shown) return
      rate.value.textContent = formatCheckRate(view.checkRate)
      rate.value.title = checkRateTitle(view.checkRate)
      rate.value.dataset.value = String(view.checkRate)
      for (const { field, value } of numbers) {
        value.textContent = String(view[field])
        value.dataset.value = String(view[field])
      }
      const s = standing(view)
      badge.textContent = s.text
      badge.className = `badge ${s.kind}`
      badge.dataset.status = view.banned ? 'banned' : s.text
      banned.hidden = !view.banned
      banned.textContent = view.banned
        ? `Banned: ${view.bannedReason ?? 'caught cheating'}. This address gets no more units and leaves later reward trees; contribute with another wallet.`
        : ''
      const parts = [
        `${view.unitsAccepted} unit${view.unitsAccepted === 1 ? '' : 's'} accepted.`,
        `A unit of this address is re-executed by someone else with a chance of ${formatCheckRate(view.checkRate)}; clean checks in a row (${view.consecutiveClean} now) lower it, a failed one raises it again.`,
      ]
      if (view.leasesAbandoned > 0) parts.push(`${view.leasesAbandoned} lease${view.leasesAbandoned === 1 ? '' : 's'} ran out without an answer.`)
      note.textContent = parts.join(' ')
    },
  }
}
