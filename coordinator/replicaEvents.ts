import { randomUUID } from 'node:crypto'
import type { EventEmitter } from 'node:events'
import pg from 'pg'

/** The PostgreSQL notification channel replicas tell each other about job progress on. */
export const PROGRESS_CHANNEL = 'tabtrain_progress'

/** Progress of one job within this window goes out as one notification: under load every answer is progress. */
const COALESCE_MS = 50
const RECONNECT_MS = 1000

/**
 * Job progress (`events` 'progress', job id: an answer recorded, a unit released, a round closed) is
 * emitted in the process where it happened; a tab watching the job's live feed on another replica would
 * only see it at its next poll. Replicas on one PostgreSQL relay it with LISTEN/NOTIFY: each change here
 * is announced (coalesced per job), and each announcement from another replica is emitted here. Only a
 * nudge: receivers read the progress from the store, so a lost notification costs a poll's delay, nothing more.
 */
export async function relayProgress(connectionString: string, events: EventEmitter, log: (message: string) => void): Promise<{ close(): Promise<void> }> {
  const origin = randomUUID()
  let client: pg.Client | null = null
  let closed = false
  let relaying = false
  const pending = new Set<string>()
  let flushing: ReturnType<typeof setTimeout> | null = null

  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString })
    next.on('error', () => {}) // followed by 'end', which reconnects
    next.on('notification', (message) => {
      const [from, jobId] = (message.payload ?? '').split(' ')
      if (!jobId || from === origin) return
      relaying = true
      try {
        events.emit('progress', jobId)
      } finally {
        relaying = false
      }
    })
    next.on('end', () => {
      if (client === next) client = null
      if (!closed) setTimeout(() => void connect().catch((error: unknown) => log(`replica events: reconnecting failed: ${(error as Error).message}`)), RECONNECT_MS).unref()
    })
    await next.connect()
    await next.query(`LISTEN ${PROGRESS_CHANNEL}`)
    if (closed) await next.end()
    else client = next
  }

  // One statement at a time on the connection (node-postgres queues, but warns of overlapping queries).
  let sending: Promise<unknown> = Promise.resolve()
  const flush = () => {
    flushing = null
    const payloads = [...pending].map((jobId) => `${origin} ${jobId}`)
    pending.clear()
    const to = client
    if (!to || payloads.length === 0) return
    sending = sending.then(() => to.query(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, [PROGRESS_CHANNEL, payloads]).catch(() => {}))
  }
  const onProgress = (jobId: string) => {
    if (relaying || closed) return
    pending.add(jobId)
    flushing ??= setTimeout(flush, COALESCE_MS)
  }

  await connect()
  events.on('progress', onProgress)
  return {
    async close() {
      closed = true
      events.off('progress', onProgress)
      if (flushing) clearTimeout(flushing)
      await sending
      await client?.end().catch(() => {})
    },
  }
}
