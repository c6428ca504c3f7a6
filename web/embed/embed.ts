import * as Comlink from 'comlink'
import type { Address } from 'viem'
import { CoordinatorClient, CoordinatorRequestError } from '../../src/client/coordinatorClient.ts'
import { REFERRER_SHARE_BPS, type CoordinatorInfo } from '../../src/protocol/index.ts'
import type { DeviceInfo, TrainingWorkerApi } from '../../src/worker/api.ts'
import { Scheduler, type SchedulerEvent } from '../../src/worker/scheduler.ts'
import { loadBurnerAccount } from '../../src/worker/wallet.ts'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { CONSENT_DAYS, grantConsent, readConsent, revokeConsent, type ConsentStorage } from './consent.ts'
import { EmbedParamError, parseEmbedParams, restAfter, type EmbedParams } from './params.ts'

/**
 * The widget's frame (embed.html, on the coordinator's origin, framed by widget.ts on any site). Until the
 * visitor clicks "Allow", it only shows the consent: no API call, no Worker, no storage written. After the
 * click it runs the site's own pull loop (Scheduler) with the training Worker, a burner key of this origin,
 * the duty cycle as rest between units, and the referrer named in every signed lease request. Stop, and a
 * hidden tab, end the Worker at once and hand the unit in flight back.
 */

type WidgetState = 'loading' | 'consent' | 'starting' | 'running' | 'paused' | 'stopped' | 'finished' | 'error'

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T
const COORDINATOR = location.origin
const plain = new CoordinatorClient(COORDINATOR)

/** The coordinator reads stake through a cache of a few seconds: after the faucet staked, start again after this. */
const STAKE_RECHECK_MS = 6000
const STAKE_RECHECKS = 3

function setState(state: WidgetState) {
  document.body.dataset.state = state
  for (const [id, states] of [
    ['consent', ['consent']],
    ['working', ['starting', 'running', 'paused']],
    ['stopped', ['stopped', 'finished']],
  ] as const) {
    $(id).hidden = !(states as readonly string[]).includes(state)
  }
  const indicator = $('indicator')
  indicator.hidden = !['starting', 'running', 'paused'].includes(state)
  $('indicator-text').textContent = state === 'paused' ? 'Paused' : state === 'starting' ? 'Starting' : 'Training'
  reportHeight()
}

function showProblem(message: string, link?: { href: string; text: string }) {
  const text = $('problem-text')
  text.replaceChildren(message)
  if (link) text.append(' ', Object.assign(document.createElement('a'), { href: link.href, textContent: link.text, target: '_blank', rel: 'noopener' }))
  $('problem').hidden = false
  reportHeight()
}

function clearProblem() {
  $('problem').hidden = true
}

function statusLine(text: string) {
  $('status-line').textContent = text
}

/** Tells the host element how tall this page is, so the frame never cuts the consent text off. */
function reportHeight() {
  const height = document.documentElement.scrollHeight
  if (window.parent !== window) window.parent.postMessage({ type: 'tabtrain-embed-height', height }, '*')
}

/** The framing page's origin as the browser states it: the host cannot forge it. */
function frameOrigins(): { ancestorOrigin: string | null; referrerOrigin: string | null } {
  const ancestors = (location as Location & { ancestorOrigins?: DOMStringList }).ancestorOrigins
  let referrerOrigin: string | null = null
  try {
    referrerOrigin = document.referrer ? new URL(document.referrer).origin : null
  } catch {
    referrerOrigin = null
  }
  return { ancestorOrigin: ancestors && ancestors.length > 0 ? ancestors[0]! : null, referrerOrigin }
}

/** The frame's storage; where the browser blocks it, an in-memory one (consent then lasts for this page only). */
function consentStorage(): { storage: ConsentStorage; persistent: boolean } {
  try {
    const storage = window.localStorage
    return { storage, persistent: true }
  } catch {
    const memory = new Map<string, string>()
    return {
      storage: { getItem: (k) => memory.get(k) ?? null, setItem: (k, v) => void memory.set(k, v), removeItem: (k) => void memory.delete(k) },
      persistent: false,
    }
  }
}

const short = (address: string) => `${address.slice(0, 6)}…${address.slice(-4)}`

/**
 * Whether this browser offers a WebGPU adapter. Asking for an adapter computes nothing and stores
 * nothing; it only lets the consent say truthfully where the work would run.
 */
async function hasWebGpu(): Promise<boolean> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu
  if (!gpu) return false
  try {
    return (await gpu.requestAdapter()) !== null
  } catch {
    return false
  }
}

/** What the visitor agrees to, in full: what runs, where, how much, who is paid, what is kept and for how long. */
function consentText(params: EmbedParams, webgpu: boolean, persistent: boolean): string {
  const share = Number(REFERRER_SHARE_BPS) / 100
  const device = webgpu ? "this device's GPU (WebGPU)" : "this device's CPU, since this browser has no WebGPU (WebAssembly: slower, more battery)"
  const key = persistent
    ? 'Results are signed with a key created and kept in this browser; the key earns the test-token rewards'
    : 'Results are signed with a key that lasts only while this page is open (this browser lets the widget keep nothing), so the test-token rewards it earns are lost when the page closes'
  const remembered = persistent
    ? `Your choice is remembered on ${params.host} for ${CONSENT_DAYS} days; Stop ends it at any time.`
    : 'Your choice lasts while this page is open; Stop ends it at any time.'
  return [
    `Lend this tab to train a machine-learning model? With your click, this tab downloads a training job from ${new URL(COORDINATOR).host} and computes on ${device}, at most ${Math.round(params.duty * 100)}% of the time and only while this tab is visible.`,
    `${key}${params.referrer ? `, and ${params.host} (${short(params.referrer)}) receives ${share}% of them for hosting this widget` : ''}.`,
    `Nothing runs, downloads or is stored before you click. ${remembered}`,
  ].join(' ')
}

function deviceNote(webgpu: boolean): string {
  return webgpu
    ? 'WebGPU is available in this browser: units run on the GPU.'
    : 'No WebGPU in this browser: units run on the CPU instead (WebAssembly), more slowly and with more battery use.'
}

function backendText(device: DeviceInfo): string {
  if (device.backend === 'webgpu') return `WebGPU (${device.vendor} ${device.architecture})`.replace(' ()', '')
  return `No WebGPU here (${device.fallbackReason ?? 'no adapter'}): training on the CPU with ${device.backend}, more slowly`
}

// ---------------------------------------------------------------------------------------------------

/**
 * One stretch of work: a Worker and the pull loop around it. Stop and a hidden tab both end it (the loop
 * hands the unit in flight back, the Worker is terminated so the computation stops mid-unit); Start again
 * and the tab coming back begin a new one.
 */
interface Session {
  worker: Worker
  scheduler: Scheduler | null
  address: Address | null
  info: CoordinatorInfo | null
  stakeRechecks: number
  ended: boolean
}

let session: Session | null = null
let unitsDone = 0
/** Whether the visitor wants the widget working (consented and not stopped): a hidden tab only pauses it. */
let wanted = false

async function startSession(params: EmbedParams) {
  if (session && !session.ended) return
  clearProblem()
  setState('starting')
  statusLine('Starting: loading the training worker…')
  const worker = new Worker(new URL('../../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'tabtrain-widget' })
  const remote = Comlink.wrap<TrainingWorkerApi>(worker)
  const current: Session = { worker, scheduler: null, address: null, info: null, stakeRechecks: 0, ended: false }
  session = current
  try {
    const device = await remote.init(COORDINATOR)
    if (current.ended) return
    $('backend').textContent = backendText(device)
    const [info, job] = await Promise.all([plain.info(), plain.job(params.job)])
    if (current.ended) return
    current.info = info
    $<HTMLAnchorElement>('job-link').textContent = `About “${job.name}”`
    if (job.status !== 'active') {
      finish(`The job “${job.name}” is ${job.status}: there is nothing to train. Thank you all the same.`)
      return
    }
    // Where the browser refuses the frame storage (a private window, strict settings), the key lives in this
    // page only: it still signs and earns, and the consent text said that its rewards end with the page.
    const account = await loadBurnerAccount().catch(() => privateKeyToAccount(generatePrivateKey()))
    if (current.ended) return
    current.address = account.address
    // A paid job leases only to staked addresses. On a local chain the faucet stakes the minimum for this
    // tab's key up front (it only tops up, so a returning key costs nothing), sparing a refused first lease.
    if (job.payment && info.chain?.faucet) {
      statusLine('Getting the minimum stake for this tab’s key from the local test faucet…')
      await plain.faucet(account.address).catch(() => {})
      if (current.ended) return
    }
    current.scheduler = new Scheduler({
      client: plain,
      signer: account,
      deviceClass: device.deviceClass,
      jobId: params.job,
      referrer: params.referrer,
      // The Worker fetches the next unit's checkpoint while the current one computes, as on the contribute page.
      executor: { runUnit: (spec, unit) => remote.runUnit(spec, unit), prefetch: (spec, unit) => remote.prefetch(spec, unit) },
      restAfterUnit: (computeMs) => restAfter(params.duty, computeMs),
      onEvent: (event) => onEvent(current, params, event),
    })
    current.scheduler.start()
  } catch (error) {
    if (current.ended) return
    endSession()
    wanted = false
    setState('error')
    if (error instanceof CoordinatorRequestError && error.code === 'job_not_found') {
      showProblem(`This widget names a job that does not exist on ${new URL(COORDINATOR).host} (${short(params.job)}). The site's author should check its job attribute.`, {
        href: '/index.html',
        text: 'See the jobs there',
      })
    } else {
      showProblem(`Could not start: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
}

/** Ends the current session now: the loop hands its unit back, the Worker stops computing. */
function endSession() {
  const current = session
  if (!current || current.ended) return
  current.ended = true
  void current.scheduler?.stop()
  current.worker.terminate()
}

function onEvent(current: Session, params: EmbedParams, event: SchedulerEvent) {
  if (session !== current || current.ended) return
  switch (event.type) {
    case 'state':
      if (event.state === 'running') setState('running')
      if (event.state === 'finished') finish('The job has finished: no more units. Thank you!')
      break
    case 'leased':
      statusLine(`Training round ${event.lease.unit.round}, unit ${event.lease.unit.unit}…`)
      break
    case 'unit-accepted':
      unitsDone++
      $('units-done').textContent = String(unitsDone)
      $('units-label').textContent = unitsDone === 1 ? 'unit' : 'units'
      statusLine(`Round ${event.report.round}, unit ${event.report.unit} accepted.`)
      break
    case 'unit-refused':
      statusLine(`Round ${event.round}, unit ${event.unit} was not taken (${event.message}); taking new work.`)
      break
    case 'resting':
      statusLine(`Resting ${(event.ms / 1000).toFixed(1)} s: this site asks for at most ${Math.round(params.duty * 100)}% of the time.`)
      break
    case 'waiting':
      statusLine(`Waiting for work: ${event.reason}.`)
      break
    case 'error':
      statusLine(`${event.message}; trying again in ${(event.retryAfterMs / 1000).toFixed(1)} s.`)
      break
    case 'stopped':
      if (event.code === 'stake_required') void onStakeRequired(current, params, event.reason)
      else {
        endSession()
        wanted = false
        setState('error')
        showProblem(event.reason)
      }
      break
    default:
      break
  }
}

/**
 * A paid job wants stake at risk. The faucet staked up front where there is one; the coordinator reads
 * stake through a cache of a few seconds, so the loop starts again a few times. Elsewhere the widget cannot
 * stake for the visitor, and says where to contribute instead.
 */
async function onStakeRequired(current: Session, params: EmbedParams, reason: string) {
  if (!current.info?.chain?.faucet || !current.address || current.stakeRechecks >= STAKE_RECHECKS) {
    endSession()
    wanted = false
    setState('error')
    showProblem(`${reason}. The widget cannot stake for you;`, { href: `/contribute.html?job=${params.job}`, text: 'contribute from the TabTrain site instead.' })
    return
  }
  current.stakeRechecks++
  statusLine('This job asks for a stake: waiting for the coordinator to see the faucet’s…')
  await new Promise((resolve) => setTimeout(resolve, STAKE_RECHECK_MS))
  if (session === current && !current.ended && current.scheduler?.currentState === 'idle') current.scheduler.start()
}

/** The visitor pressed Stop: nothing runs until they start again. */
function stop() {
  wanted = false
  endSession()
  $('stopped-text').textContent = 'Stopped. Nothing runs in this tab now (a unit in flight is handed back to the job).'
  setState('stopped')
}

/** Nothing left to do (the job finished): like Stop, with the reason. */
function finish(message: string) {
  wanted = false
  endSession()
  $('stopped-text').textContent = message
  setState('finished')
}

/** Hidden tab: end the session (unit handed back, Worker ended); shown again: a new one, without asking. */
function onVisibility(params: EmbedParams) {
  if (!wanted) return
  if (document.hidden) {
    endSession()
    setState('paused')
    statusLine('Paused while this tab is hidden; it goes on when you come back.')
  } else {
    void startSession(params)
  }
}

// ---------------------------------------------------------------------------------------------------

function main() {
  let params: EmbedParams
  try {
    params = parseEmbedParams(location.search, frameOrigins())
  } catch (error) {
    setState('error')
    showProblem(error instanceof EmbedParamError ? error.message : String(error))
    return
  }
  $<HTMLAnchorElement>('job-link').href = `/job.html?id=${params.job}`
  const { storage, persistent } = consentStorage()
  const consentFor = { host: params.host, job: params.job, referrer: params.referrer }

  const describe = (webgpu: boolean) => {
    $('consent-text').textContent = consentText(params, webgpu, persistent)
    $('device-note').textContent = deviceNote(webgpu)
    reportHeight()
  }
  describe('gpu' in navigator)
  void hasWebGpu().then(describe)
  const go = () => {
    wanted = true
    if (!document.hidden) void startSession(params)
  }
  $('allow').addEventListener('click', () => {
    grantConsent(storage, consentFor, Date.now())
    go()
  })
  $('stop').addEventListener('click', () => stop())
  $('start-again').addEventListener('click', () => {
    if (readConsent(storage, consentFor, Date.now())) go()
    else setState('consent')
  })
  document.addEventListener('visibilitychange', () => onVisibility(params))
  $('forget').addEventListener('click', () => {
    revokeConsent(storage, params.host)
    setState('consent')
  })
  new ResizeObserver(reportHeight).observe(document.body)

  // A consent given earlier on this site, for this job and referrer, and not expired: go on with it.
  if (readConsent(storage, consentFor, Date.now())) go()
  else setState('consent')
}

main()
