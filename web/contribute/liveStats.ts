import type { Address } from 'viem'
import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { UnitReport } from '../../src/worker/scheduler.ts'
import { deviceSpeed, historyKey, summarize, throughput, unsettled, withStatus, type HistoryStore, type UnitHistoryEntry } from '../lib/history.ts'
import { formatRate } from './capabilityCard.ts'
import { byId } from './dom.ts'

export interface LiveStats {
  /** Shows the history of `address` in `jobId` (a wallet or job switch). */
  setScope(address: Address | null, jobId: string | null): Promise<void>
  /** Training (re)started: delivered examples/s count from now at the earliest. */
  started(): void
  accepted(report: UnitReport): Promise<void>
  refused(round: number, unit: number): Promise<void>
  dispose(): void
}

/** How often the coordinator is asked about units whose check may still change their fate, and how many at once. */
const POLL_MS = 10_000
const POLL_BATCH = 6
/** Delivered examples/s is recomputed this often: it falls while resting or paused, with no event to say so. */
const RENDER_MS = 2_000

/**
 * The live numbers: examples per second delivered, units done / checked / rejected / refused, from the
 * contribution history (IndexedDB, so they survive a reload). The coordinator's unit records
 * (`GET /api/jobs/:id/rounds/:r/units/:u`) say which answers went under check and which were rejected.
 */
export function createLiveStats({ client, history, onSpeed }: { client: CoordinatorClient; history: HistoryStore; onSpeed: (rate: number | null) => void }): LiveStats {
  let scope: { address: Address; jobId: string } | null = null
  let entries: UnitHistoryEntry[] = []
  let since = performance.timeOrigin + performance.now()
  let polling = false

  const render = () => {
    const summary = summarize(entries)
    byId('units-done').textContent = String(summary.done)
    byId('units-checked').textContent = String(summary.checked)
    byId('units-checking').textContent = summary.checking > 0 ? `${summary.checking} under check now` : ''
    byId('units-rejected').textContent = String(summary.rejected)
    byId('units-refused').textContent = String(summary.refused)
    byId('examples-rate').textContent = formatRate(throughput(entries, Date.now(), since))
    byId('examples-total').textContent = summary.examples > 0 ? `${summary.examples.toLocaleString('en-US')} examples in all` : ''
    onSpeed(deviceSpeed(entries))
  }

  const add = async (entry: UnitHistoryEntry) => {
    entries = [...entries.filter((e) => e.key !== entry.key), entry]
    render()
    await history.put(entry).catch(() => {})
  }

  const base = (round: number, unit: number) => {
    if (!scope) return null
    return { key: historyKey(scope.address, scope.jobId, round, unit), address: scope.address, jobId: scope.jobId, round, unit, finishedAt: Date.now(), status: null, checked: false, polledAt: 0 }
  }

  const poll = async () => {
    if (polling || !scope) return
    polling = true
    const current = scope
    try {
      for (const entry of unsettled(entries, Date.now(), POLL_BATCH)) {
        const record = await client.unit(entry.jobId, entry.round, entry.unit).catch(() => null)
        if (scope !== current) return
        // Unreachable coordinator: ask again next time, others first.
        const next = record ? withStatus(entry, record.status, Date.now()) : { ...entry, polledAt: Date.now() }
        entries = entries.map((e) => (e.key === next.key ? next : e))
        await history.put(next).catch(() => {})
      }
      render()
    } finally {
      polling = false
    }
  }

  const timers = [setInterval(() => void poll(), POLL_MS), setInterval(render, RENDER_MS)]

  return {
    async setScope(address, jobId) {
      scope = address && jobId ? { address, jobId } : null
      entries = scope ? await history.list(scope.address, scope.jobId).catch(() => []) : []
      render()
      void poll()
    },
    started() {
      since = Math.max(since, Date.now())
    },
    async accepted(report) {
      const entry = base(report.round, report.unit)
      if (entry) await add({ ...entry, outcome: 'accepted', examples: report.examples, computeMs: report.computeMs })
    },
    async refused(round, unit) {
      const entry = base(round, unit)
      if (entry) await add({ ...entry, outcome: 'refused', examples: 0, computeMs: 0 })
    },
    dispose() {
      for (const timer of timers) clearInterval(timer)
    },
  }
}
