import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { Hash, JobProgress } from '../../src/protocol/index.ts'
import type { SpawnedCoordinator } from '../testing/spawnCoordinator.ts'
import type { PlannedKill } from './killPlan.ts'

export interface KillRecord {
  planned: PlannedKill
  /** The job as last seen before the kill. */
  before: JobProgress
  /** Every unit of the round was in and the round not yet closed: the kill hit its close (or its last check). */
  midClose: boolean
  /** The round had units still out: the kill hit contributors leasing, computing and handing in. */
  midRound: boolean
  /** The killed process had built an epoch and not yet recorded its root posted. */
  midEpochPost: boolean
  /** From the SIGKILL until the replacement served its URL. */
  restartMs: number
}

export interface KillLoopOptions {
  plan: PlannedKill[]
  jobId: Hash
  unitsPerRound: number
  /** Reads the job's progress (in a single-coordinator setting, from the coordinator that is killed). */
  observer: CoordinatorClient
  /** The process to kill now. */
  victim: () => SpawnedCoordinator
  /** Starts the killed coordinator again (same store, same port); resolves once it serves. */
  restart: () => Promise<void>
  /** Contributors of the killed coordinator heard back from it since `since` (ms, Date.now()): they carried on. */
  carriedOn: (since: number) => boolean
  /** Longest wait for a milestone. */
  timeoutMs?: number
  /** Told of each kill once its coordinator serves again. */
  onKill?: (record: KillRecord, index: number, restarted: { killedAt: number; output: string }) => void
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `read` until `done`; a failing read (a coordinator mid-restart) is waited out, a throwing `done` is not. */
export async function until<T>(read: () => Promise<T> | T, done: (value: T) => boolean, what: string, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T | null = null
  for (;;) {
    let value: T
    try {
      value = await read()
    } catch {
      value = undefined as T // the coordinator is restarting
    }
    if (value !== undefined) {
      last = value
      if (done(value)) return value
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last seen ${JSON.stringify(last, (_k, v) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 400)}`)
    await sleep(everyMs)
  }
}

const BUILT = /epoch (\d+): \d+ accounts/g
const POSTED = /epoch (\d+) posted/g

/** Whether the log shows an epoch built whose root it has not (yet) recorded as posted. */
export function epochInFlight(output: string): boolean {
  const built = [...output.matchAll(BUILT)].map((m) => Number(m[1]))
  const posted = new Set([...output.matchAll(POSTED)].map((m) => Number(m[1])))
  return built.length > 0 && !posted.has(Math.max(...built))
}

/**
 * Kills the coordinator with SIGKILL once per planned kill and starts it again. Each kill first waits until
 * the job reaches the kill's milestone and has moved on since the last restart, with the killed coordinator's
 * contributors served again (they carried on by themselves), then aims: at a random moment, at a round whose
 * units are all in (its close), or at an epoch just built (its post). After each restart, everything the API
 * showed before the kill is still there.
 */
export async function runKills(options: KillLoopOptions): Promise<KillRecord[]> {
  const { observer, jobId, unitsPerRound: K } = options
  const timeoutMs = options.timeoutMs ?? 90_000
  const progress = () => observer.progress(jobId)
  const records: KillRecord[] = []
  let unitsAtRestart = 0
  let restartedAt = 0
  for (const [index, planned] of options.plan.entries()) {
    const target = Math.max(planned.afterUnits, unitsAtRestart + 1)
    let before = await until(
      progress,
      (p) => {
        if (p.status === 'finished') throw new Error(`the job finished before kill ${index + 1} of ${options.plan.length}: give it more rounds`)
        return p.acceptedUnits >= target && options.carriedOn(restartedAt)
      },
      `kill ${index + 1}: the job reaching ${target} accepted units with its contributors back`,
      timeoutMs,
      100,
    )
    const victim = options.victim()
    if (planned.aim === 'unit') {
      await sleep(planned.delayMs)
      before = await progress()
    } else if (planned.aim === 'close') {
      before = await until(progress, (p) => p.acceptedThisRound >= K || p.status !== 'active', `kill ${index + 1}: a round with all its units in`, 5_000, 25).catch(() => before)
    } else {
      const from = victim.output().length
      await until(() => victim.output().slice(from), (text) => new RegExp(BUILT.source).test(text), `kill ${index + 1}: an epoch built`, 3_000, 5).catch(() => null)
    }
    await victim.kill('SIGKILL')
    const midEpochPost = epochInFlight(victim.output())
    const killedAt = Date.now()
    await options.restart()
    const restartMs = Date.now() - killedAt
    restartedAt = Date.now()
    const after = await progress()
    // What the API showed before the kill is still there.
    if (after.acceptedUnits < before.acceptedUnits || after.round < before.round) {
      throw new Error(`kill ${index + 1}: the job went back from ${before.acceptedUnits} units in round ${before.round} to ${after.acceptedUnits} in round ${after.round}`)
    }
    for (const [i, r] of before.history.entries()) {
      if (after.history[i]?.outputHash !== r.outputHash) throw new Error(`kill ${index + 1}: round ${r.round}'s checkpoint changed across the restart`)
    }
    unitsAtRestart = after.acceptedUnits
    const midClose = before.status === 'active' && before.acceptedThisRound >= K
    const record = { planned, before, midClose, midRound: before.status === 'active' && !midClose, midEpochPost, restartMs }
    records.push(record)
    options.onKill?.(record, index, { killedAt, output: options.victim().output() })
  }
  return records
}
