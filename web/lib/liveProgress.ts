import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { JobProgress, LiveMessage } from '../../src/protocol/index.ts'

/**
 * Calls `onProgress` with the job's progress now and on every change, pushed over the job's WebSocket.
 * Reconnects with back-off when the coordinator restarts; meanwhile polls so the page never freezes.
 */
export function watchProgress(client: CoordinatorClient, jobId: string, onProgress: (p: JobProgress) => void): () => void {
  let closed = false
  let socket: WebSocket | null = null
  let retryMs = 500
  let pollTimer: ReturnType<typeof setInterval> | null = null

  const poll = () => client.progress(jobId).then(onProgress, () => {})
  const startPolling = () => {
    pollTimer ??= setInterval(poll, 3000)
  }
  const stopPolling = () => {
    if (pollTimer) clearInterval(pollTimer)
    pollTimer = null
  }
  const connect = () => {
    if (closed) return
    socket = new WebSocket(client.liveUrl(jobId))
    socket.onopen = () => {
      retryMs = 500
      stopPolling()
    }
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as LiveMessage
      if (message.type === 'progress') onProgress(message.progress)
    }
    socket.onclose = () => {
      if (closed) return
      startPolling()
      setTimeout(connect, retryMs)
      retryMs = Math.min(10_000, retryMs * 2)
    }
  }
  void poll()
  connect()
  return () => {
    closed = true
    stopPolling()
    socket?.close()
  }
}

export function coordinatorUrlFromPage(): string {
  return new URLSearchParams(location.search).get('coordinator') ?? location.origin
}

export function shortHash(hash: string, chars = 10): string {
  return hash.length > chars + 4 ? `${hash.slice(0, chars)}…` : hash
}
