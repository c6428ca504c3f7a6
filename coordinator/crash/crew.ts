import type { Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import type { Hash } from '../../src/protocol/index.ts'
import { createNodeContributor } from '../../src/worker/nodeContributor.ts'
import type { Scheduler, SchedulerEvent } from '../../src/worker/scheduler.ts'
import type { Acknowledged } from './audit.ts'

export interface Contributor {
  address: Hex
  url: string
  scheduler: Scheduler
  /** Every event, with the time it arrived (Date.now()). */
  events: Array<{ at: number; event: SchedulerEvent }>
}

/** Headless contributors, started once: nothing restarts them, whatever happens to their coordinator. */
export class Crew {
  readonly members: Contributor[]

  constructor(jobId: Hash, members: Array<{ privateKey: Hex; url: string }>) {
    this.members = members.map(({ privateKey, url }) => {
      const events: Contributor['events'] = []
      const scheduler = createNodeContributor({ coordinatorUrl: url, jobId, privateKey, onEvent: (event) => events.push({ at: Date.now(), event }) })
      return { address: privateKeyToAccount(privateKey).address, url, scheduler, events }
    })
  }

  start(): void {
    for (const m of this.members) m.scheduler.start()
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.scheduler.stop()))
  }

  /** Submissions the coordinator answered "accepted", as each contributor saw them. */
  acknowledged(): Acknowledged[] {
    return this.members.flatMap((m) =>
      m.events.flatMap(({ event }) =>
        event.type === 'unit-accepted' ? [{ contributor: m.address, round: event.report.round, unit: event.report.unit, outputHash: event.report.outputHash }] : [],
      ),
    )
  }

  /** Whether `member` heard back from its coordinator (a lease, an acknowledged or refused answer) after `since`. */
  heardSince(member: Contributor, since: number): boolean {
    return member.events.some(({ at, event }) => at >= since && (event.type === 'leased' || event.type === 'unit-accepted' || event.type === 'unit-refused'))
  }

  /** Failed requests (the coordinator unreachable, or failing) each contributor reported and retried. */
  outages(): number[] {
    return this.members.map((m) => m.events.filter(({ event }) => event.type === 'error').length)
  }

  /** 'stopped' events: a contributor that gave up. */
  gaveUp(): string[] {
    return this.members.flatMap((m) => m.events.flatMap(({ event }) => (event.type === 'stopped' ? [`${m.address.slice(0, 8)}: ${event.reason}`] : [])))
  }
}
