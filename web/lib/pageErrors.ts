import { CoordinatorRequestError, CoordinatorUnreachableError } from '../../src/client/coordinatorClient.ts'

/** A way out of a page that cannot show what was asked for. */
export interface PageLink {
  href: string
  text: string
}

/** What a page says instead of its content when it cannot show it: a title, one sentence, the ways back. */
export interface PageProblem {
  /** Stable, for tests and for styling: `job_not_found`, `unit_not_found`, `missing_parameter`, `bad_parameter`, `unreachable`, `failed`. */
  code: string
  title: string
  message: string
  links: PageLink[]
}

const JOBS: PageLink = { href: './index.html', text: 'See the jobs' }
const JOB_ID = /^0x[0-9a-f]{64}$/

/**
 * The problem a missing or malformed query parameter makes, checked before anything is fetched: a job id
 * is `0x` and 64 hex digits, round and unit numbers are whole numbers from 0.
 */
export function parameterProblem(params: URLSearchParams, wanted: Array<{ name: string; kind: 'job' | 'index'; required?: boolean }>): PageProblem | null {
  for (const { name, kind, required } of wanted) {
    const value = params.get(name)
    if (value === null || value.trim() === '') {
      if (!required) continue
      return { code: 'missing_parameter', title: `This link is missing its ${name}`, message: `The address needs a \`${name}=\` parameter to know what to show.`, links: [JOBS] }
    }
    const ok = kind === 'job' ? JOB_ID.test(value.trim().toLowerCase()) : /^\d{1,9}$/.test(value.trim())
    if (!ok) {
      const expected = kind === 'job' ? 'a job id is 0x followed by 64 hex digits' : 'it must be a whole number from 0'
      return { code: 'bad_parameter', title: `This link's ${name} is not valid`, message: `"${value.slice(0, 80)}" is not a ${name}: ${expected}.`, links: [JOBS] }
    }
  }
  return null
}

/** What to tell a person when loading `what` failed, by the coordinator's stable codes. */
export function loadProblem(error: unknown, what: { job?: string | null; round?: number; unit?: number } = {}): PageProblem {
  if (error instanceof CoordinatorRequestError) {
    if (error.code === 'job_not_found') {
      return {
        code: 'job_not_found',
        title: 'There is no such job',
        message: `This coordinator has no job ${what.job ?? ''}. The link may be mistyped, or the job belongs to another coordinator.`.replace('  ', ' '),
        links: [JOBS, { href: './new.html', text: 'Create a job' }],
      }
    }
    if (error.code === 'unit_not_found') {
      return {
        code: 'unit_not_found',
        title: 'There is no such unit',
        message: `The job has no unit ${what.unit ?? '?'} in round ${what.round ?? '?'}: the round has not started yet, or the job has fewer units per round.`,
        links: what.job ? [{ href: `./job.html?id=${what.job}`, text: 'Back to the job' }, JOBS] : [JOBS],
      }
    }
    return { code: error.code, title: 'The coordinator refused', message: error.message, links: [JOBS] }
  }
  if (error instanceof CoordinatorUnreachableError) {
    return { code: 'unreachable', title: 'The coordinator cannot be reached', message: 'It may be restarting: reload this page in a moment.', links: [JOBS] }
  }
  return { code: 'failed', title: 'This page could not load', message: error instanceof Error ? error.message : String(error), links: [JOBS] }
}

/** The problem as a small card: a heading, the sentence, the links. */
export function problemElement(problem: PageProblem): HTMLElement {
  const card = document.createElement('section')
  card.className = 'card page-error'
  card.setAttribute('role', 'alert')
  card.dataset.problem = problem.code
  const title = document.createElement('h2')
  title.textContent = problem.title
  const message = document.createElement('p')
  message.textContent = problem.message
  const links = document.createElement('p')
  problem.links.forEach((link, i) => {
    if (i > 0) links.append(' · ')
    links.append(Object.assign(document.createElement('a'), { href: link.href, textContent: link.text }))
  })
  card.append(title, message, links)
  return card
}

/**
 * Replaces the page's content with the problem, so nothing keeps saying "Loading…" or draws an empty
 * chart for a job that does not exist, and marks the body (`data-ready="error"`) for tests.
 */
export function showPageProblem(problem: PageProblem): void {
  const main = document.querySelector('main')
  if (main) main.replaceChildren(problemElement(problem))
  document.title = `${problem.title} · TabTrain`
  document.body.dataset.ready = 'error'
  document.body.dataset.problem = problem.code
}

/**
 * Puts the problem in place of one part of a page (a form that cannot work here, say), keeping the rest;
 * `links` default to the jobs list. For a page that can show nothing at all, use `showPageProblem`.
 */
export function showPageError(target: HTMLElement, problem: { title: string; message: string; links?: PageLink[]; code?: string }): void {
  target.replaceChildren(problemElement({ code: problem.code ?? 'failed', title: problem.title, message: problem.message, links: problem.links ?? [JOBS] }))
  document.body.dataset.problem = problem.code ?? 'failed'
}
