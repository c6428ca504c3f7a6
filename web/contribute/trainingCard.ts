import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { Hash, JobProgress, JobSummary } from '../../src/protocol/index.ts'
import { Scheduler, type SchedulerEvent, type UnitExecutor, type UnitReport } from '../../src/worker/scheduler.ts'
import type { PauseReason } from '../lib/pausePolicy.ts'
import { createProgressChart } from '../lib/progressChart.ts'
import { watchProgress } from '../lib/liveProgress.ts'
import type { ConnectedWallet } from '../lib/wallets.ts'
import type { Log } from './activityLog.ts'
import { byId } from './dom.ts'
import type { LiveStats } from './liveStats.ts'
import type { PauseControls } from './pauseControls.ts'
import { STAKE_RECHECK_MS, type StakeRequiredOutcome } from './stakeCard.ts'

export interface TrainingCard {
  /** The wallet that signs from now on: the loop is rebuilt around it (a unit in flight is handed back). */
  setWallet(wallet: ConnectedWallet): Promise<void>
  /** The job to train from now on. */
  setJob(job: JobSummary | null): Promise<void>
  /** The automatic pauses changed: pause (handing the unit back) or resume. */
  pausesChanged(reasons: PauseReason[]): void
}

export interface TrainingCardOptions {
  client: CoordinatorClient
  executor: UnitExecutor
  deviceClass: string
  pauses: PauseControls
  stats: LiveStats
  log: Log
  /** A unit was accepted: earnings changed. */
  onAccepted(): void
  /** A unit was leased: the coordinator sees the stake. */
  onLeased(): void
  /** The job wants stake this wallet lacks: `retry` once it is there, or the person has to stake. */
  onStakeRequired(reason: string, jobId: Hash): Promise<StakeRequiredOutcome>
}

/** The line under the timings table that says how units are sized (made here: the page has no slot for it). */
function sizingLine(table: HTMLElement): HTMLElement {
  const existing = document.getElementById('unit-sizing')
  if (existing) return existing
  const line = Object.assign(document.createElement('p'), { id: 'unit-sizing', className: 'muted', hidden: true })
  line.setAttribute('role', 'status')
  table.after(line)
  return line
}

/** The last units from this tab, newest first: where the wall time of a unit goes. */
const TIMING_ROWS = 10

/**
 * The training card: Start and Stop, the job's progress, the live numbers' events, and the pull loop
 * (`Scheduler`) under them. What the person asked for (`wanted`: Start pressed, Stop not) is kept apart from
 * whether the loop runs: an automatic pause stops the loop, handing the unit in flight back, and resumes it.
 */
export function createTrainingCard(options: TrainingCardOptions): TrainingCard {
  const { client, executor, deviceClass, pauses, stats, log } = options
  const els = {
    start: byId<HTMLButtonElement>('start'),
    stop: byId<HTMLButtonElement>('stop'),
    status: byId('status'),
    pauseReason: byId('pause-reason'),
    startNote: byId('start-note'),
    timings: byId('timings').querySelector('tbody')!,
    sizing: sizingLine(byId('timings')),
  }
  const chart = createProgressChart(byId('chart'))
  let wallet: ConnectedWallet | null = null
  let job: JobSummary | null = null
  let scheduler: Scheduler | null = null
  let wanted = false
  let timingRows = 0
  let unwatch: () => void = () => {}
  let retryTimer: ReturnType<typeof setTimeout> | null = null

  const paused = () => wanted && pauses.reasons().length > 0

  const render = () => {
    const state = scheduler?.currentState ?? 'idle'
    const reasons = wanted ? pauses.reasons() : []
    els.status.textContent = reasons.length > 0 && state !== 'running' && state !== 'stopping' ? 'paused' : state
    els.pauseReason.hidden = reasons.length === 0
    els.pauseReason.textContent = reasons.length ? `Paused: ${reasons.map((r) => r.message).join('; ')}.` : ''
    els.start.disabled = wanted || !scheduler || job?.status !== 'active' || state === 'finished'
    els.stop.disabled = !wanted && state !== 'running'
  }

  /** A refusal under the Start button that a person has to act on; null hides it. */
  const startNote = (message: string | null, link?: { href: string; text: string }) => {
    els.startNote.hidden = message === null
    els.startNote.replaceChildren(message ?? '')
    if (message !== null && link) els.startNote.append(' ', Object.assign(document.createElement('a'), { href: link.href, textContent: link.text }))
  }

  /** Runs the loop when it is wanted and nothing pauses it; stops it (handing the unit back) otherwise. */
  const apply = () => {
    const s = scheduler
    if (s) {
      if (wanted && !paused() && job?.status === 'active') {
        if (s.currentState !== 'running' && s.currentState !== 'finished') {
          stats.started()
          s.start()
        }
      } else if (s.currentState === 'running') {
        void s.stop()
      }
    }
    render()
  }

  const showTimings = (report: UnitReport) => {
    const ms = (x: number) => `${x.toFixed(0)} ms`
    const t = report.timings
    if (timingRows === 0) els.timings.replaceChildren()
    const row = document.createElement('tr')
    for (const text of [`${report.round} · ${report.unit}`, ms(t.fetchMs), ms(t.trainMs), ms(t.hashMs), ms(t.signMs), ms(t.uploadMs), ms(t.totalMs), report.meanLoss.toFixed(4)]) {
      row.append(Object.assign(document.createElement('td'), { textContent: text }))
    }
    els.timings.prepend(row)
    timingRows++
    while (els.timings.children.length > TIMING_ROWS) els.timings.lastChild?.remove()
    // How the unit was sized and whether the GPU waited between units (the next one is leased ahead).
    const idle = report.idleBeforeMs === null ? '' : `; the GPU waited ${report.idleBeforeMs.toFixed(0)} ms before it`
    els.sizing.hidden = false
    els.sizing.textContent = `Last unit: H = ${report.innerSteps} steps (${report.examples.toLocaleString('en-US')} examples), computed in ${(report.computeMs / 1000).toFixed(1)} s${idle}.`
  }

  const showProgress = (progress: JobProgress) => {
    chart.update(progress)
    byId('round').textContent = progress.status === 'finished' ? `${progress.round} (done)` : `${progress.round} / ${progress.rounds}`
    const last = progress.history.at(-1)
    const metrics = last ? { acc: last.heldOutAccuracy, loss: last.heldOutLoss } : progress.initial ? { acc: progress.initial.heldOutAccuracy, loss: progress.initial.heldOutLoss } : null
    byId('accuracy').textContent = metrics ? `${(metrics.acc * 100).toFixed(1)}%` : '–'
    byId('loss').textContent = metrics ? metrics.loss.toFixed(3) : '–'
  }

  const onStopped = async (source: Scheduler, event: Extract<SchedulerEvent, { type: 'stopped' }>) => {
    log(`Stopped: ${event.reason}`, 'bad')
    wanted = false
    render()
    const stuckJob = job
    if (event.code === 'stake_required' && stuckJob) {
      const outcome = await options.onStakeRequired(event.reason, stuckJob.id)
      // The wallet or job changed meanwhile: the new loop has its own answer.
      if (scheduler !== source || job !== stuckJob) return
      if (outcome === 'retry') {
        wanted = true
        render()
        retryTimer = setTimeout(() => {
          retryTimer = null
          if (scheduler === source && wanted) apply()
        }, STAKE_RECHECK_MS)
      } else {
        startNote(event.reason, { href: '#stake-card', text: 'Stake below, then press Start again.' })
      }
    } else if (event.code === 'address_banned') {
      startNote(`${event.reason} This address gets no more units: choose another wallet to contribute.`)
    } else {
      startNote(event.reason)
    }
  }

  const onEvent = (source: Scheduler, event: SchedulerEvent) => {
    const current = source === scheduler
    switch (event.type) {
      case 'state':
        if (current) render()
        if (event.state === 'finished' && current) log('The job has finished: no more units.', 'good')
        break
      case 'leased': {
        options.onLeased()
        const { round, unit, innerSteps } = event.lease.unit
        log(`Leased round ${round} unit ${unit}${innerSteps ? ` (H = ${innerSteps})` : ''}${event.prefetched ? ', to start when this one is done' : ''}`)
        break
      }
      case 'unit-accepted':
        void stats.accepted(event.report)
        showTimings(event.report)
        if (event.report.deviceLosses > 0) {
          log(`The GPU device was lost during round ${event.report.round} unit ${event.report.unit}: it was re-created and the unit redone`, 'bad')
        }
        log(`Round ${event.report.round} unit ${event.report.unit} accepted (${event.report.timings.totalMs.toFixed(0)} ms)${event.report.roundClosed ? ', closing the round' : ''}`, 'good')
        options.onAccepted()
        break
      case 'unit-refused':
        void stats.refused(event.round, event.unit)
        log(`Round ${event.round} unit ${event.unit} refused: ${event.message}`, 'bad')
        break
      case 'waiting':
        log(`Waiting ${event.retryAfterMs} ms: ${event.reason}`)
        break
      case 'resting':
        log(`Resting ${(event.ms / 1000).toFixed(1)} s (duty cycle)`)
        break
      case 'released':
        log(
          event.handedBack
            ? `Handed round ${event.round} unit ${event.unit} back${event.reason ? ` (${event.reason})` : ''}: someone else can take it now`
            : `Could not hand round ${event.round} unit ${event.unit} back (${event.message ?? 'unknown error'}); its lease runs out by itself`,
          event.handedBack ? 'info' : 'bad',
        )
        break
      case 'error':
        log(`${event.message}; retrying in ${(event.retryAfterMs / 1000).toFixed(1)} s`, 'bad')
        break
      case 'stopped':
        if (current) void onStopped(source, event)
        break
    }
  }

  /** A new loop for the current wallet and job; the old one is stopped first, handing its unit back. */
  const rebuild = async () => {
    if (retryTimer) clearTimeout(retryTimer)
    retryTimer = null
    const old = scheduler
    scheduler = null
    render()
    if (old) await old.stop()
    if (wallet && job) {
      const signer = wallet.signer
      const jobId = job.id
      const next: Scheduler = new Scheduler({
        client,
        executor,
        signer,
        deviceClass,
        jobId,
        restAfterUnit: (ms) => pauses.restAfterUnit(ms),
        onEvent: (event) => onEvent(next, event),
      })
      scheduler = next
    }
    await stats.setScope(wallet?.address ?? null, job?.id ?? null)
    apply()
  }

  // Closing or leaving the page is a stop too: the unit in flight and the one leased ahead are handed back
  // by beacons, which the browser still sends while the page goes away (a fetch would be cancelled with it).
  window.addEventListener('pagehide', () => {
    for (const lease of scheduler?.leasesHeld ?? []) navigator.sendBeacon(`${client.baseUrl}/api/leases/${encodeURIComponent(lease.id)}/release`)
  })

  els.start.addEventListener('click', () => {
    startNote(null)
    wanted = true
    if (paused()) log(`Start pressed; paused until ${pauses.reasons().map((r) => r.code).join(', ')} clears`)
    apply()
  })
  els.stop.addEventListener('click', () => {
    wanted = false
    if (retryTimer) clearTimeout(retryTimer)
    retryTimer = null
    const s = scheduler
    render()
    if (s) void s.stop().then(render)
  })

  return {
    async setWallet(next) {
      wallet = next
      await rebuild()
    },
    async setJob(next) {
      job = next
      unwatch()
      unwatch = () => {}
      timingRows = 0
      if (next) {
        let shownRound = -1
        unwatch = watchProgress(client, next.id, (progress) => {
          if (job !== next) return
          showProgress(progress)
          if (progress.round !== shownRound) scheduler?.nudge()
          shownRound = progress.round
        })
      }
      await rebuild()
    },
    pausesChanged(reasons) {
      if (wanted) log(reasons.length ? `Pausing: ${reasons.map((r) => r.message).join('; ')}` : 'Resuming: nothing pauses training any more')
      apply()
    },
  }
}
