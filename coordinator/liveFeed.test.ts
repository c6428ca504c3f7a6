import { EventEmitter } from 'node:events'
import { describe, expect, it, vi } from 'vitest'
import type { WebSocket } from 'ws'
import { CoordinatorError } from './errors.ts'
import type { JobService } from './jobs.ts'
import { LiveFeeds } from './liveFeed.ts'

const JOB = `0x${'ab'.repeat(32)}`
const OTHER = `0x${'cd'.repeat(32)}`

/** A socket that keeps what it is sent. */
function fakeSocket() {
  const events = new EventEmitter()
  const socket = {
    OPEN: 1,
    readyState: 1,
    sent: [] as string[],
    closed: null as null | { code: number; reason: string },
    send(message: string) {
      this.sent.push(message)
    },
    close(code: number, reason: string) {
      this.closed = { code, reason }
      this.readyState = 3
      events.emit('close')
    },
    on(event: string, listener: () => void) {
      events.on(event, listener)
      return this
    },
  }
  return socket
}

/** A job service whose progress counts its queries and answers after `gate` opens. */
function fakeJobs() {
  const events = new EventEmitter()
  let accepted = 0
  let release: () => void = () => {}
  let gate = Promise.resolve()
  const progress = vi.fn(async (jobId: string) => {
    await gate
    if (jobId !== JOB && jobId !== OTHER) throw new CoordinatorError('job_not_found', `no job ${jobId}`)
    return { jobId, acceptedUnits: accepted }
  })
  return {
    jobs: { events, progress } as unknown as JobService,
    progress,
    accept(jobId = JOB) {
      accepted++
      events.emit('progress', jobId)
    },
    hold() {
      gate = new Promise((resolve) => (release = resolve))
    },
    open: () => release(),
  }
}

const lastAccepted = (socket: ReturnType<typeof fakeSocket>) => (JSON.parse(socket.sent.at(-1)!) as { progress: { acceptedUnits: number } }).progress.acceptedUnits

describe('live progress feed', () => {
  it('computes progress once per change of a job, however many sockets watch it, and sends each the same message', async () => {
    const f = fakeJobs()
    const feeds = new LiveFeeds(f.jobs)
    const sockets = Array.from({ length: 1000 }, fakeSocket)
    for (const socket of sockets) feeds.join(JOB, socket as unknown as WebSocket)
    await vi.waitFor(() => expect(sockets.every((s) => s.sent.length === 1)).toBe(true))
    expect(f.progress).toHaveBeenCalledTimes(1)

    f.accept()
    await vi.waitFor(() => expect(sockets.every((s) => s.sent.length === 2)).toBe(true))
    expect(f.progress).toHaveBeenCalledTimes(2)
    expect(new Set(sockets.map((s) => s.sent[1])).size).toBe(1)
    expect(lastAccepted(sockets[0]!)).toBe(1)
    // A change of another job costs this one nothing.
    f.accept(OTHER)
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(f.progress).toHaveBeenCalledTimes(2)
    expect(feeds.sockets).toBe(1000)
  })

  it('folds changes that arrive while progress is computed into one more computation, ending on the latest', async () => {
    const f = fakeJobs()
    const feeds = new LiveFeeds(f.jobs)
    const socket = fakeSocket()
    feeds.join(JOB, socket as unknown as WebSocket)
    await vi.waitFor(() => expect(socket.sent).toHaveLength(1))
    f.hold()
    for (let i = 0; i < 50; i++) f.accept()
    f.open()
    await vi.waitFor(() => expect(lastAccepted(socket)).toBe(50))
    // The first change's computation, then one for the 49 that came while it ran: not 50.
    expect(f.progress).toHaveBeenCalledTimes(3)
    // A socket that joins now gets the latest message without another query.
    const late = fakeSocket()
    feeds.join(JOB, late as unknown as WebSocket)
    expect(late.sent).toEqual([socket.sent.at(-1)])
    expect(f.progress).toHaveBeenCalledTimes(3)
  })

  it('closes the sockets of an unknown job with 4404, and forgets sockets that close', async () => {
    const f = fakeJobs()
    const feeds = new LiveFeeds(f.jobs)
    const socket = fakeSocket()
    feeds.join(`0x${'00'.repeat(32)}`, socket as unknown as WebSocket)
    await vi.waitFor(() => expect(socket.closed).toEqual({ code: 4404, reason: `no job 0x${'00'.repeat(32)}` }))
    expect(feeds.sockets).toBe(0)
    const watcher = fakeSocket()
    feeds.join(JOB, watcher as unknown as WebSocket)
    await vi.waitFor(() => expect(watcher.sent).toHaveLength(1))
    watcher.close(1000, 'bye')
    expect(feeds.sockets).toBe(0)
    f.accept()
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(f.progress).toHaveBeenCalledTimes(2)
  })
})
