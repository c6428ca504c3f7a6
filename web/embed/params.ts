import { isAddress, getAddress, zeroAddress, type Address } from 'viem'

/** Share of the time the widget computes when the host page does not say (`max-duty`). */
export const DEFAULT_DUTY = 0.5
/** Below this the widget would hold leases mostly idle; above 1 means nothing. */
export const MIN_DUTY = 0.05

export interface EmbedParams {
  job: `0x${string}`
  /** Share of wall time spent computing, MIN_DUTY to 1. */
  duty: number
  referrer: Address | null
  /** The page the widget sits on, as the browser says (ancestorOrigins), else as the host claimed. */
  host: string
}

/** A widget attribute the frame cannot work with; `code` is stable, the message names the attribute. */
export class EmbedParamError extends Error {
  override name = 'EmbedParamError'
  constructor(
    readonly code: 'missing_job' | 'bad_job' | 'bad_referrer' | 'bad_duty',
    message: string,
  ) {
    super(message)
  }
}

/**
 * Reads the frame's query (widget.ts writes it from the element's attributes). A bad attribute is refused
 * with a message for the site's author rather than guessed at: the consent text must name exactly what
 * the visitor agrees to (the job, and who gets the referrer share).
 */
export function parseEmbedParams(search: string, frame: { ancestorOrigin: string | null; referrerOrigin: string | null }): EmbedParams {
  const params = new URLSearchParams(search)
  const job = (params.get('job') ?? '').trim()
  if (!job) throw new EmbedParamError('missing_job', 'This widget has no job: its <tabtrain-contributor> element needs a job="0x…" attribute.')
  if (!/^0x[0-9a-fA-F]{64}$/.test(job)) throw new EmbedParamError('bad_job', `The widget's job="${job.slice(0, 80)}" is not a job id (0x and 64 hex digits).`)
  let duty = DEFAULT_DUTY
  const dutyText = params.get('duty')
  if (dutyText !== null && dutyText.trim() !== '') {
    duty = Number(dutyText)
    if (!Number.isFinite(duty) || duty <= 0 || duty > 1) {
      throw new EmbedParamError('bad_duty', `The widget's max-duty="${dutyText.slice(0, 20)}" must be a number above 0 and at most 1 (a share of the time).`)
    }
    duty = Math.max(MIN_DUTY, duty)
  }
  const referrerText = (params.get('referrer') ?? '').trim()
  let referrer: Address | null = null
  if (referrerText) {
    if (!isAddress(referrerText, { strict: false })) throw new EmbedParamError('bad_referrer', `The widget's referrer="${referrerText.slice(0, 80)}" is not an address (0x and 40 hex digits).`)
    referrer = getAddress(referrerText)
    if (referrer === zeroAddress) referrer = null
  }
  const claimed = params.get('host')
  const host = frame.ancestorOrigin ?? frame.referrerOrigin ?? (claimed && /^https?:\/\/[^/]+$/.test(claimed) ? claimed : 'this site')
  return { job: job.toLowerCase() as `0x${string}`, duty, referrer, host }
}

/**
 * The rest after a unit that computed for `computeMs`, so that computing takes at most `duty` of the time:
 * t·(1−duty)/duty. The shared pull loop takes it between units (Scheduler's `restAfterUnit`), never while
 * holding a lease, so no lease runs out while the tab idles.
 */
export function restAfter(duty: number, computeMs: number): number {
  return (Math.max(0, computeMs) * (1 - duty)) / duty
}
