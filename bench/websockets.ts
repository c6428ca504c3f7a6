/**
 * The coordinator's memory with 0, 1,000 and 10,000 WebSocket clients watching a job's live progress
 * (`/api/jobs/:jobId/live`), and the time one progress change takes to reach all of them. Three processes:
 * this one (orchestration), the coordinator (embedded PGlite, chain off) and the clients, so that neither
 * the clients' memory nor their CPU is counted as the coordinator's. Memory is read after a full GC in the
 * coordinator (`--expose-gc`): RSS (what the machine gives it), V8's used heap, and `external`
 * (buffers, the sockets' own memory outside the heap).
 *
 * 10,000 sockets need 10,000 file descriptors in each of the two child processes: each is started under
 * `ulimit -n` raised to the hard limit (at most 65,536) and the run says what it got.
 *
 * Writes bench/results/websockets.md and .json. `npx tsx bench/websockets.ts` (BENCH_WS_COUNTS=0,1000 to
 * choose the levels).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

const SELF = fileURLToPath(import.meta.url)
const ROOT = join(SELF, '..', '..')
const COUNTS = (process.env.BENCH_WS_COUNTS ?? '0,1000,10000').split(',').map(Number)
/** Connections opened at once by the client process: beyond the listen backlog, SYNs would be dropped and retried. */
const CONNECT_BATCH = 250
/** Progress changes sent per level to time the fan-out. */
const BROADCASTS = 5

type Memory = { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; sockets: number; fdLimit: number }
type ServerMessage = { type: 'ready'; url: string; jobId: string; fdLimit: number } | { type: 'memory'; id: number; memory: Memory } | { type: 'emitted'; id: number }
type ClientMessage =
  | { type: 'connected'; id: number; open: number; failed: number; seconds: number; fdLimit: number }
  | { type: 'received'; id: number; all: boolean; ms: number }
  | { type: 'closed'; id: number }

/** A child running this file with `role`, under the highest file descriptor limit the machine allows. */
function child(role: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const node = [process.execPath, '--expose-gc', '--import', 'tsx', SELF, role, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  return spawn('bash', ['-c', `ulimit -n $(( $(ulimit -Hn) > 65536 ? 65536 : $(ulimit -Hn) )) 2>/dev/null; exec ${node}`], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
}

/** Requests over a child's IPC channel, answered by `id`. */
function rpc<Reply extends { id: number }>(proc: ChildProcess) {
  let next = 0
  const waiting = new Map<number, (reply: Reply) => void>()
  proc.on('message', (message: Reply) => waiting.get(message.id)?.(message))
  return (request: Record<string, unknown>) =>
    new Promise<Reply>((resolve) => {
      const id = ++next
      waiting.set(id, resolve)
      proc.send({ ...request, id })
    })
}

async function fdLimit(): Promise<number> {
  const { execSync } = await import('node:child_process')
  return Number(execSync('ulimit -n', { shell: '/bin/bash' }).toString().trim())
}

/** The coordinator: a temporary one with the chain off, the mnist preset as the watched job. */
async function serve(): Promise<void> {
  const { startTemporaryCoordinator } = await import('../coordinator/testing/inProcess.ts')
  const coordinator = await startTemporaryCoordinator({
    chain: { mode: 'off', chainId: 31337, verifyingContract: '0x00000000000000000000000000000000000000B1' },
  })
  const wss = (coordinator.app as unknown as { websocketServer: { clients: Set<unknown> } }).websocketServer
  const limit = await fdLimit()
  process.on('message', async (message: { type: string; id: number }) => {
    if (message.type === 'memory') {
      for (let i = 0; i < 3; i++) {
        globalThis.gc?.()
        await new Promise((r) => setTimeout(r, 100))
      }
      const m = process.memoryUsage()
      const memory: Memory = { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, sockets: wss.clients.size, fdLimit: limit }
      process.send!({ type: 'memory', id: message.id, memory } satisfies ServerMessage)
    } else if (message.type === 'emit') {
      // What an accepted unit or a round close does: the job changed, every watcher gets its progress.
      coordinator.jobs.events.emit('progress', coordinator.presetJobId)
      process.send!({ type: 'emitted', id: message.id } satisfies ServerMessage)
    } else if (message.type === 'stop') {
      await coordinator.dispose().catch(() => {})
      process.exit(0)
    }
  })
  process.send!({ type: 'ready', url: coordinator.url, jobId: coordinator.presetJobId, fdLimit: limit } satisfies ServerMessage)
}

/** The clients: `count` sockets on the job's live feed, each counting the progress messages it gets. */
async function clients(url: string, jobId: string, count: number): Promise<void> {
  const { WebSocket } = await import('ws')
  const sockets: InstanceType<typeof WebSocket>[] = []
  const received: number[] = []
  const limit = await fdLimit()
  let failed = 0
  const send = (message: ClientMessage) => process.send!(message)
  process.on('message', async (message: { type: string; id: number; expect?: number }) => {
    if (message.type === 'connect') {
      const started = performance.now()
      const target = `${url.replace(/^http/, 'ws')}/api/jobs/${jobId}/live`
      for (let from = 0; from < count; from += CONNECT_BATCH) {
        await Promise.all(
          Array.from({ length: Math.min(CONNECT_BATCH, count - from) }, (_, k) => {
            const index = from + k
            received[index] = 0
            return new Promise<void>((resolve) => {
              const socket = new WebSocket(target)
              socket.on('message', () => {
                received[index]! += 1
                // Connected once the first progress message is in: the server has registered the watcher.
                if (received[index] === 1) resolve()
              })
              socket.on('error', () => {
                failed += 1
                resolve()
              })
              sockets.push(socket)
            })
          }),
        )
      }
      const open = sockets.filter((s) => s.readyState === WebSocket.OPEN).length
      send({ type: 'connected', id: message.id, open, failed, seconds: (performance.now() - started) / 1000, fdLimit: limit })
    } else if (message.type === 'await') {
      // Waits until every socket has `expect` messages (or 30 s pass), timing from the request.
      const started = performance.now()
      const all = () => received.every((n) => n >= message.expect!)
      while (!all() && performance.now() - started < 30_000) await new Promise((r) => setTimeout(r, 2))
      send({ type: 'received', id: message.id, all: all(), ms: performance.now() - started })
    } else if (message.type === 'close') {
      for (const socket of sockets) socket.terminate()
      send({ type: 'closed', id: message.id })
      process.exit(0)
    }
  })
}

interface Row {
  clients: number
  open: number
  failed: number
  connectSeconds: number
  rssMiB: number
  heapUsedMiB: number
  externalMiB: number
  /** Per client, over the 0-client baseline. */
  rssPerClientKiB: number | null
  heapPerClientKiB: number | null
  /** Median time from one progress change to every socket having its message. */
  broadcastMs: number | null
}

const MiB = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10

async function main(): Promise<void> {
  const server = child('serve', [], { TABTRAIN_RATE_LIMIT_PER_IP: '0' })
  const ready = await new Promise<Extract<ServerMessage, { type: 'ready' }>>((resolve, reject) => {
    server.once('message', (m: ServerMessage) => (m.type === 'ready' ? resolve(m) : reject(new Error(`unexpected ${m.type}`))))
    server.once('exit', (code) => reject(new Error(`coordinator exited with ${code}`)))
  })
  const ask = rpc<Extract<ServerMessage, { id: number }>>(server)
  console.log(`coordinator at ${ready.url}, watching job ${ready.jobId.slice(0, 10)}; file descriptor limit ${ready.fdLimit}`)
  const rows: Row[] = []
  let baseline: Memory | null = null
  let clientLimit = 0
  for (const count of COUNTS) {
    let connected: Extract<ClientMessage, { type: 'connected' }> | null = null
    let broadcastMs: number | null = null
    let proc: ChildProcess | null = null
    let tell: ((request: Record<string, unknown>) => Promise<ClientMessage>) | null = null
    if (count > 0) {
      proc = child('clients', [ready.url, ready.jobId, String(count)])
      tell = rpc<ClientMessage>(proc)
      connected = (await tell({ type: 'connect' })) as Extract<ClientMessage, { type: 'connected' }>
      clientLimit = connected.fdLimit
      // Every socket got the current progress on connecting; each change sends one more to all of them.
      const times: number[] = []
      for (let b = 1; b <= BROADCASTS; b++) {
        const waiting = tell({ type: 'await', expect: 1 + b })
        await ask({ type: 'emit' })
        const got = (await waiting) as Extract<ClientMessage, { type: 'received' }>
        if (got.all) times.push(got.ms)
      }
      times.sort((a, b) => a - b)
      broadcastMs = times.length ? Math.round(times[Math.floor(times.length / 2)]!) : null
    }
    const memory = ((await ask({ type: 'memory' })) as Extract<ServerMessage, { type: 'memory' }>).memory
    baseline ??= count === 0 ? memory : null
    const per = (now: number, base: number | undefined) => (base === undefined || count === 0 ? null : Math.round(((now - base) / count / 1024) * 10) / 10)
    rows.push({
      clients: count,
      open: connected?.open ?? 0,
      failed: connected?.failed ?? 0,
      connectSeconds: connected ? Math.round(connected.seconds * 10) / 10 : 0,
      rssMiB: MiB(memory.rss),
      heapUsedMiB: MiB(memory.heapUsed),
      externalMiB: MiB(memory.external),
      rssPerClientKiB: per(memory.rss, baseline?.rss),
      heapPerClientKiB: per(memory.heapUsed, baseline?.heapUsed),
      broadcastMs,
    })
    console.log(JSON.stringify(rows.at(-1)))
    if (proc && tell) {
      const exited = new Promise((r) => proc!.once('exit', r))
      await tell({ type: 'close' })
      await exited
      // Let the coordinator see the closes before the next level.
      await new Promise((r) => setTimeout(r, 2000))
    }
  }
  server.send({ type: 'stop', id: 0 })
  await new Promise((r) => server.once('exit', r))

  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    fileDescriptorLimit: { coordinator: ready.fdLimit, clients: clientLimit },
    liveRoute: 'coordinator/liveFeed.ts (LiveFeeds): progress computed once per job change and sent to every watcher of the job',
    rows,
  }
  await writeFile(join(ROOT, 'bench/results/websockets.json'), `${JSON.stringify(result, null, 2)}\n`)
  const md = [
    '# Coordinator memory with WebSocket clients',
    '',
    `Clients watching one job's live progress (\`/api/jobs/:jobId/live\`), in a process of their own; the coordinator on`,
    `embedded PGlite with the chain off, the MNIST preset job watched. Memory after a full GC in the coordinator. Broadcast:`,
    `median of ${BROADCASTS} progress changes, from the change to the last socket holding its message (${result.liveRoute}).`,
    `Node ${result.node}, ${result.cpus} CPUs, file descriptor limit ${ready.fdLimit} (coordinator) and ${clientLimit || 'n/a'} (clients).`,
    `Run: \`npx tsx bench/websockets.ts\` (${result.date}).`,
    '',
    '| clients | open | failed | connect (s) | RSS (MiB) | heap used (MiB) | external (MiB) | RSS per client (KiB) | heap per client (KiB) | broadcast (ms) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.clients.toLocaleString('en')} | ${r.open.toLocaleString('en')} | ${r.failed} | ${r.connectSeconds} | ${r.rssMiB} | ${r.heapUsedMiB} | ${r.externalMiB} | ${r.rssPerClientKiB ?? '–'} | ${r.heapPerClientKiB ?? '–'} | ${r.broadcastMs ?? '–'} |`,
    ),
    '',
  ].join('\n')
  await writeFile(join(ROOT, 'bench/results/websockets.md'), md)
  console.log(md)
}

const [role, ...args] = process.argv.slice(2)
if (role === 'serve') await serve()
else if (role === 'clients') await clients(args[0]!, args[1]!, Number(args[2]))
else await main()
