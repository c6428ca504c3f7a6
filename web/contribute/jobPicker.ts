import type { JobSummary } from '../../src/protocol/index.ts'
import { formatToken, type TokenFormat } from '../lib/amounts.ts'
import { byId } from './dom.ts'

export interface JobPicker {
  readonly current: JobSummary | null
}

/** The job a page opened with `?job=` trains, else the first active one, else the first at all. */
export function pickJob(jobs: readonly JobSummary[], requested: string | null): JobSummary | null {
  return jobs.find((j) => j.id === requested) ?? jobs.find((j) => j.status === 'active') ?? jobs[0] ?? null
}

/** One line per job in the picker: its name, what it pays, where it is. */
export function jobLabel(job: JobSummary, token: TokenFormat | null): string {
  const pay = job.payment ? `${formatToken(BigInt(job.payment.pricePerUnit), token)} per unit` : 'volunteer'
  const where = job.status === 'active' ? `round ${job.round} of ${job.rounds}` : job.status
  return `${job.name} · ${pay} · ${where}`
}

/**
 * The job picker: every job the coordinator lists, active ones first; `?job=` preselects. Choosing another
 * job puts it in the address (a reload or a shared link trains the same job) and calls `onChange`.
 */
export function createJobPicker(
  jobs: readonly JobSummary[],
  token: TokenFormat | null,
  onChange: (job: JobSummary) => void,
): JobPicker {
  const select = byId<HTMLSelectElement>('job-picker')
  const sorted = [...jobs].sort((a, b) => Number(b.status === 'active') - Number(a.status === 'active'))
  const requested = new URLSearchParams(location.search).get('job')
  let current = pickJob(sorted, requested)
  /** A link naming a job this coordinator does not have: said once, not silently replaced. */
  let unknownRequest = requested !== null && !sorted.some((j) => j.id === requested) ? requested : null
  select.replaceChildren(
    ...sorted.map((job) => {
      const option = document.createElement('option')
      option.value = job.id
      option.textContent = jobLabel(job, token)
      return option
    }),
  )
  if (current) select.value = current.id
  select.disabled = sorted.length === 0
  const link = () => {
    const el = byId('job-name')
    if (!current) {
      el.textContent = 'The coordinator has no jobs.'
      return
    }
    const a = Object.assign(document.createElement('a'), { href: `./job.html?id=${current.id}`, textContent: 'Open the job page' })
    if (unknownRequest) {
      const note = Object.assign(document.createElement('span'), {
        className: 'bad',
        textContent: `This link's job ${unknownRequest.slice(0, 80)} does not exist on this coordinator; pick one above (${current.name} for now). `,
      })
      note.dataset.testid = 'unknown-job'
      el.replaceChildren(note, a)
    } else {
      el.replaceChildren(a)
    }
  }
  link()
  select.addEventListener('change', () => {
    const next = sorted.find((j) => j.id === select.value)
    if (!next || next.id === current?.id) return
    current = next
    unknownRequest = null
    const url = new URL(location.href)
    url.searchParams.set('job', next.id)
    history.replaceState(null, '', url)
    link()
    onChange(next)
  })
  return {
    get current() {
      return current
    },
  }
}
