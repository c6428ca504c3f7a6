/**
 * `tsx bench/replicas.ts` (part of `npm run bench`): writes bench/results/replicas.md and replicas.json.
 *
 * Lease + submit round trips per second through one coordinator and through three replicas on one
 * PostgreSQL, side by side in one run. Each replica is a process of its own (bench/lib/coordinatorProcess.ts:
 * chain off, blobs in the database, the replicas' advisory locks on); the simulated contributors
 * (bench/lib/simulatedContributor.ts, as in bench/throughput.ts) send each request to the next replica in
 * turn, as a load balancer without affinity would, so a unit is often leased at one replica and answered at
 * another. Jobs are synchronous with a round too large to close: the figures are the claim path alone.
 *
 * Environment (all optional): BENCH_REPLICAS_SECONDS (per row, 10), BENCH_REPLICAS_CONTRIBUTORS ("10,100"),
 * BENCH_REPLICAS_COUNTS ("1,3").
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LeaseResponse, UpdateCompression } from '../src/protocol/index.ts'
import { postgresUnavailableReason, startPostgresServer } from '../coordinator/testing/postgresServer.ts'
import { CoordinatorProcess } from './lib/coordinatorProcess.ts'
import { checkSigningMatchesViem, contributors, madeUpUpdate, NO_CHECKS, percentile, probeCompression, table } from './lib/simulatedContributor.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RESULTS = join(ROOT, 'bench/results')
const env = process.env
const list = (value: string | undefined, fallback: string) => (value ?? fallback).split(',').map((s) => Number(s.trim())).filter((n) => n > 0)
const SECONDS = Number(env.BENCH_REPLICAS_SECONDS ?? 10)
const CONTRIBUTORS = list(env.BENCH_REPLICAS_CONTRIBUTORS, '10,100')
const REPLICA_COUNTS = list(env.BENCH_REPLICAS_COUNTS, '1,3')
const IDLE_SECONDS = 3

interface Row {
  replicas: number
  contributors: number
  roundTrips: number
  refused: number
  seconds: number
  perSecond: number
  p50Ms: number
  p99Ms: number
  /** CPU of all replica processes together per round trip, and of this (client) process. */
  serverCpuMsPerRoundTrip: number
  clientCpuMsPerRoundTrip: number
  /** Round trips whose lease and answer went to different replicas. */
  crossReplica: number
  /** CPU each replica process spends per second with no request at all (timers, threads), measured before the row. */
  idleCpuMsPerSecond: number
  updateBytes: number
  compression: string
}

async function measure(servers: CoordinatorProcess[], compression: UpdateCompression, n: number): Promise<Row> {
  const [first] = servers as [CoordinatorProcess]
  const { jobId, initialWeights } = await first.createJob(`bench: ${servers.length} replica(s), ${n} contributors`, {
    unitsPerRound: 10_000,
    ...(compression ? { compression } : {}),
  }, NO_CHECKS)
  const update = madeUpUpdate(Uint8Array.from(initialWeights), compression)
  const crowd = await contributors(n, first)
  // What the replicas cost with nobody asking (their timers: verification, rounds, progress relay): at a
  // few dozen round trips per second it is a visible share of the CPU per round trip.
  const idle0 = await Promise.all(servers.map((s) => s.cpuSeconds()))
  const idleStart = performance.now()
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000))
  const idle1 = await Promise.all(servers.map((s) => s.cpuSeconds()))
  const idleCpuMsPerSecond = (1000 * idle1.reduce((sum, c, i) => sum + c - idle0[i]!, 0)) / servers.length / ((performance.now() - idleStart) / 1000)
  // Contributor i sends its k-th request to replica (i + k) mod R.
  const turns = crowd.map((_, i) => i)
  const next = (i: number) => servers[turns[i]!++ % servers.length]!.url
  // Every contributor's first (signed) lease is outside the timed window: sessions are the steady state.
  await Promise.all(
    crowd.map(async (c, i) => {
      const response = await c.lease(jobId, next(i))
      if (response.status === 'leased') await c.submit(response.lease, update, next(i))
    }),
  )
  const latencies: number[] = []
  let refused = 0
  let crossReplica = 0
  const cpu0 = await Promise.all(servers.map((s) => s.cpuSeconds()))
  const client0 = process.cpuUsage()
  const start = performance.now()
  const end = start + SECONDS * 1000
  await Promise.all(
    crowd.map(async (c, i) => {
      while (performance.now() < end) {
        const t0 = performance.now()
        const leasedAt = next(i)
        const response: LeaseResponse = await c.lease(jobId, leasedAt)
        if (response.status !== 'leased') break // the round's units are all answered
        const submittedAt = next(i)
        const result = await c.submit(response.lease, update, submittedAt)
        if (!result.ok) {
          refused++
          if (refused === 1) console.log(`  a submission was refused: ${result.code}`)
        } else {
          latencies.push(performance.now() - t0)
          if (leasedAt !== submittedAt) crossReplica++
        }
      }
    }),
  )
  const seconds = (performance.now() - start) / 1000
  const cpu1 = await Promise.all(servers.map((s) => s.cpuSeconds()))
  const serverCpu = cpu1.reduce((sum, c, i) => sum + c - cpu0[i]!, 0)
  const clientCpu = process.cpuUsage(client0)
  return {
    replicas: servers.length,
    contributors: n,
    roundTrips: latencies.length,
    refused,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    serverCpuMsPerRoundTrip: (1000 * serverCpu) / Math.max(1, latencies.length),
    clientCpuMsPerRoundTrip: (clientCpu.user + clientCpu.system) / 1000 / Math.max(1, latencies.length),
    crossReplica,
    idleCpuMsPerSecond,
    updateBytes: update.bytes.byteLength,
    compression: compression ? `int8/${compression.blockSize}` : 'float32',
  }
}

async function main() {
  await mkdir(RESULTS, { recursive: true })
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${loadavg()[0]!.toFixed(1)} at start`
  const rows: Row[] = []
  const notes: string[] = []
  const reason = postgresUnavailableReason()
  if (reason) {
    notes.push(`Not run: ${reason}.`)
  } else {
    const postgres = await startPostgresServer({ database: 'bench_replicas' })
    try {
      for (const count of REPLICA_COUNTS) {
        // A database per replica count, so the runs share nothing but the server.
        const databaseUrl = await postgres.createDatabase(`replicas_${count}`)
        console.log(`${count} replica(s) on one PostgreSQL…`)
        const servers = await Promise.all(Array.from({ length: count }, () => CoordinatorProcess.start({ databaseUrl })))
        try {
          await checkSigningMatchesViem(servers[0]!.domain)
          const compression = await probeCompression(servers[0]!)
          for (const n of CONTRIBUTORS) {
            const row = await measure(servers, compression, n)
            rows.push(row)
            console.log(
              `  ${count} replica(s), ${n} contributors: ${row.perSecond.toFixed(0)} round trips/s, p50 ${row.p50Ms.toFixed(1)} ms, p99 ${row.p99Ms.toFixed(1)} ms, replicas ${row.serverCpuMsPerRoundTrip.toFixed(2)} ms CPU each`,
            )
          }
        } finally {
          await Promise.all(servers.map((s) => s.stop()))
        }
      }
    } finally {
      await postgres.stop()
    }
  }
  const md = [
    '# Coordinator replicas on one PostgreSQL',
    '',
    `Run ${new Date().toISOString()} on ${machine}. Reproduce with \`tsx bench/replicas.ts\` (part of \`npm run bench\`; environment variables in the file's header).`,
    '',
    "Each replica is a coordinator process of its own (chain off, blobs in the database, advisory locks for the work done once among replicas); PostgreSQL, the replicas and the simulated contributors all share this machine's cores, so the figures say what replication costs and whether it works under load on one machine, not how far it scales across machines. A contributor sends each request to the next replica in turn (no affinity): a unit is leased at one replica and answered at another whenever there are several. Each round trip is the claim path of bench/throughput.md (lease by session, EIP-712 claim, a preset-sized update checked and stored — here as a row of the `blobs` table); jobs are volunteer copies of the MNIST preset with rounds too large to close. " +
      `${SECONDS} s per row. "replicas' CPU / round trip" is every replica process's CPU over the row divided by the round trips, idle time included; "idle CPU / replica" is what one replica process used per second over ${IDLE_SECONDS} s with no request, just before the row.`,
    '',
    ...notes,
    '',
    table(
      ['replicas', 'contributors', 'update', 'round trips', 'round trips / s', 'p50', 'p99', 'replicas\' CPU / round trip', 'idle CPU / replica', 'client CPU / round trip', 'leased and answered at different replicas', 'refused'],
      rows.map((r) => [
        r.replicas,
        r.contributors,
        `${r.compression}, ${(r.updateBytes / 1024).toFixed(0)} KiB`,
        r.roundTrips,
        r.perSecond.toFixed(0),
        `${r.p50Ms.toFixed(1)} ms`,
        `${r.p99Ms.toFixed(1)} ms`,
        `${r.serverCpuMsPerRoundTrip.toFixed(2)} ms`,
        `${r.idleCpuMsPerSecond.toFixed(0)} ms/s`,
        `${r.clientCpuMsPerRoundTrip.toFixed(2)} ms`,
        `${((100 * r.crossReplica) / Math.max(1, r.roundTrips)).toFixed(0)}%`,
        r.refused,
      ]),
    ),
    '',
  ].join('\n')
  await writeFile(join(RESULTS, 'replicas.md'), md)
  await writeFile(join(RESULTS, 'replicas.json'), JSON.stringify({ date: new Date().toISOString(), machine, seconds: SECONDS, rows, notes }, null, 2))
  console.log(md)
}

await main()
process.exit(0)
