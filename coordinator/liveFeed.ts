import type { WebSocket } from 'ws'
import type { LiveMessage } from '../src/protocol/index.ts'
import { CoordinatorError } from './errors.ts'
import type { JobService } from './jobs.ts'

/** One job's watchers: the latest message, valid until the job's next change, and whether one is being made. */
interface Feed {
  sockets: Set<WebSocket>
  /** The message of the job as it is now; null once it changed since. */
  latest: string | null
  computing: boolean
  /** The job changed while a message was being made: make another when it is done. */
  dirty: boolean
}

/**
 * `/api/jobs/:jobId/live`: the job's progress to every socket watching it, now and after every change.
 * Progress is computed once per change of a job, however many sockets watch it (a query per socket per
 * change would cost 10,000 queries per accepted unit with 10,000 tabs watching), and changes that arrive
 * while it is being computed fold into one more computation. A socket that joins gets the latest message
 * if the job has not changed since, else the next one made.
 */
export class LiveFeeds {
  private readonly feeds = new Map<string, Feed>()
  private readonly onProgress = (jobId: string) => {
    const feed = this.feeds.get(jobId)
    if (!feed) return
    feed.latest = null
    this.refresh(jobId, feed)
  }

  constructor(
    private readonly jobs: JobService,
    private readonly log?: (message: string) => void,
  ) {
    jobs.events.on('progress', this.onProgress)
  }

  /** Watchers now, for the operations' gauges. */
  get sockets(): number {
    let n = 0
    for (const feed of this.feeds.values()) n += feed.sockets.size
    return n
  }

  join(jobId: string, socket: WebSocket): void {
    let feed = this.feeds.get(jobId)
    if (!feed) {
      feed = { sockets: new Set(), latest: null, computing: false, dirty: false }
      this.feeds.set(jobId, feed)
    }
    feed.sockets.add(socket)
    socket.on('close', () => this.leave(jobId, socket))
    if (feed.latest !== null) socket.send(feed.latest)
    // A message being made now is as fresh as one made for this socket: it gets that one.
    else if (!feed.computing) this.refresh(jobId, feed)
  }

  close(): void {
    this.jobs.events.off('progress', this.onProgress)
  }

  private leave(jobId: string, socket: WebSocket): void {
    const feed = this.feeds.get(jobId)
    if (!feed) return
    feed.sockets.delete(socket)
    if (feed.sockets.size === 0 && !feed.computing) this.feeds.delete(jobId)
  }

  private refresh(jobId: string, feed: Feed): void {
    if (feed.computing) {
      feed.dirty = true
      return
    }
    feed.computing = true
    void (async () => {
      try {
        do {
          feed.dirty = false
          let message: string
          try {
            message = JSON.stringify({ type: 'progress', progress: await this.jobs.progress(jobId) } satisfies LiveMessage)
          } catch (error) {
            if (error instanceof CoordinatorError) {
              // No such job (or gone): say so and let go of every watcher.
              for (const socket of feed.sockets) socket.close(4404, error.message.slice(0, 120))
              feed.sockets.clear()
              return
            }
            this.log?.(`live progress of job ${jobId.slice(0, 10)} failed: ${(error as Error).message}`)
            return
          }
          if (!feed.dirty) feed.latest = message
          for (const socket of feed.sockets) if (socket.readyState === socket.OPEN) socket.send(message)
        } while (feed.dirty && feed.sockets.size > 0)
      } finally {
        feed.computing = false
        if (feed.sockets.size === 0 && this.feeds.get(jobId) === feed) this.feeds.delete(jobId)
      }
    })()
  }
}
