/**
 * `npm run bench` (`tsx bench/throughput.ts`): writes bench/results/throughput.md and throughput.json.
 *
 * The coordinator runs in a child process (as in production, on its own event loop; the OS shares this
 * machine's cores between it and the client), on the embedded store (PGlite) and on PostgreSQL.
 *
 * 1. Claim path: lease + submit round trips per second and p50/p99 latency with N simulated contributors
 *    (1, 10, 100, 1,000), each a loop of lease → sign claim → submit a preset-sized update (int8 when the
 *    coordinator takes it). The first lease of each contributor is a signed EIP-712 request; later ones
 *    send the session it was answered with (coordinator/verification/identity.ts). Jobs are synchronous
 *    with a round too large to close: the figures are the claim path alone.
 * 2. Scaling with contributors whose compute is a fixed delay (no training): examples per second through
 *    the network and the fraction of each contributor's wall time spent "computing", with 1, 4, 16 and 64
 *    contributors, for synchronous rounds (maxStaleness 0) and asynchronous ones (maxStaleness 1). Rounds
 *    close here (aggregation and held-out evaluation are real), so this is the coordinator's whole loop.
 *
 * Environment (all optional): BENCH_THROUGHPUT_SECONDS (per claim-path row, 5), BENCH_THROUGHPUT_CONTRIBUTORS
 * ("1,10,100,1000"), BENCH_THROUGHPUT_STORES ("pglite,postgres"), BENCH_SCALING_SECONDS (per row, 15),
 * BENCH_SCALING_CONTRIBUTORS ("1,4,16,64"), BENCH_SCALING_DELAY_MS (fixed compute per unit, 1000),
 * BENCH_SCALING_STALENESS ("0,1"), BENCH_SCALING_STORES ("pglite"), BENCH_SCALING_OVERLAP (0: no prefetch, no
 * background upload), BENCH_SKIP ("claims" or "scaling"), BENCH_SIGN_EVERY_LEASE (1: no sessions), BENCH_THROUGHPUT_OUT (file name
 * stem in bench/results, "throughput": a partial run elsewhere keeps the full tables), BENCH_PROFILE (a folder: the
 * coordinator writes a V8 CPU profile there).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LeaseResponse, UpdateCompression } from '../src/protocol/index.ts'
import { examplesPerUnit } from '../src/protocol/index.ts'
import { CoordinatorProcess } from './lib/coordinatorProcess.ts'
import { checkSigningMatchesViem, contributors, madeUpUpdate, NO_CHECKS, percentile, probeCompression, table, type Contributor } from './lib/simulatedContributor.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RESULTS = join(ROOT, 'bench/results')
const env = process.env
const list = (value: string | undefined, fallback: string) => (value ?? fallback).split(',').map((s) => s.trim()).filter(Boolean)
const CLAIM_SECONDS = Number(env.BENCH_THROUGHPUT_SECONDS ?? 5)
const CLAIM_COUNTS = list(env.BENCH_THROUGHPUT_CONTRIBUTORS, '1,10,100,1000').map(Number)
const STORES = list(env.BENCH_THROUGHPUT_STORES, 'pglite,postgres') as ('pglite' | 'postgres')[]
const SCALING_SECONDS = Number(env.BENCH_SCALING_SECONDS ?? 15)
const SCALING_COUNTS = list(env.BENCH_SCALING_CONTRIBUTORS, '1,4,16,64').map(Number)
const SCALING_DELAY_MS = Number(env.BENCH_SCALING_DELAY_MS ?? 1000)
const SCALING_STALENESS = list(env.BENCH_SCALING_STALENESS, '0,1').map(Number)
const SCALING_STORES = new Set(list(env.BENCH_SCALING_STORES, 'pglite'))
/** Lease the next unit while one computes and upload in the background, as src/worker/scheduler.ts does. */
const OVERLAP = env.BENCH_SCALING_OVERLAP !== '0'
const SKIP = new Set(list(env.BENCH_SKIP, ''))
/** The claim path's target (issue 11): stated in the table, never asserted. */
const TARGET_ROUND_TRIPS_PER_S = 2000
const TARGET_COMPUTE_FRACTION = 0.9

// --- 1. Claim path ----------------------------------------------------------------------------------

interface ClaimRow {
  store: string
  contributors: number
  roundTrips: number
  refused: number
  seconds: number
  perSecond: number
  p50Ms: number
  p99Ms: number
  /** CPU of the coordinator's process per round trip, and of this (client) process. */
  serverCpuMsPerRoundTrip: number
  clientCpuMsPerRoundTrip: number
  updateBytes: number
  compression: string
}

async function claimPath(store: string, server: CoordinatorProcess, compression: UpdateCompression): Promise<ClaimRow[]> {
  const rows: ClaimRow[] = []
  for (const n of CLAIM_COUNTS) {
    // A fresh job per row, its round as large as a job allows (10,000 units) so that it does not close
    // within the row: every request is a lease and a claim check. A row that uses them all up ends early.
    const { jobId, initialWeights } = await server.createJob(`bench: claim path, ${n} contributors`, {
      unitsPerRound: 10_000,
      ...(compression ? { compression } : {}),
    }, NO_CHECKS)
    const update = madeUpUpdate(Uint8Array.from(initialWeights), compression)
    const crowd = await contributors(n, server)
    // Every contributor's first (signed) lease is outside the timed window: sessions are the steady state.
    const first = await Promise.all(crowd.map((c) => c.lease(jobId)))
    await Promise.all(crowd.map((c, i) => (first[i]!.status === 'leased' ? c.submit((first[i] as Extract<LeaseResponse, { status: 'leased' }>).lease, update) : null)))
    const latencies: number[] = []
    let refused = 0
    const cpu0 = await server.cpuSeconds()
    const client0 = process.cpuUsage()
    const start = performance.now()
    const end = start + CLAIM_SECONDS * 1000
    await Promise.all(
      crowd.map(async (c) => {
        while (performance.now() < end) {
          const t0 = performance.now()
          const response = await c.lease(jobId)
          if (response.status !== 'leased') break // the round's units are all answered
          const result = await c.submit(response.lease, update)
          if (!result.ok) {
            refused++
            if (refused === 1) console.log(`  a submission was refused: ${result.code}`)
          } else latencies.push(performance.now() - t0)
        }
      }),
    )
    const seconds = (performance.now() - start) / 1000
    const serverCpu = (await server.cpuSeconds()) - cpu0
    const clientCpu = process.cpuUsage(client0)
    const row: ClaimRow = {
      store,
      contributors: n,
      roundTrips: latencies.length,
      refused,
      seconds,
      perSecond: latencies.length / seconds,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      serverCpuMsPerRoundTrip: (1000 * serverCpu) / Math.max(1, latencies.length),
      clientCpuMsPerRoundTrip: (clientCpu.user + clientCpu.system) / 1000 / Math.max(1, latencies.length),
      updateBytes: update.bytes.byteLength,
      compression: compression ? `int8/${compression.blockSize}` : 'float32',
    }
    rows.push(row)
    console.log(`  ${store}, ${n} contributors: ${row.perSecond.toFixed(0)} round trips/s, p50 ${row.p50Ms.toFixed(1)} ms, p99 ${row.p99Ms.toFixed(1)} ms, coordinator ${row.serverCpuMsPerRoundTrip.toFixed(2)} ms CPU each`)
  }
  return rows
}

// --- 2. Scaling with fixed-delay contributors ----------------------------------------------------------

interface ScalingRow {
  store: string
  maxStaleness: number
  contributors: number
  units: number
  examples: number
  seconds: number
  examplesPerSecond: number
  /** Mean over contributors of (time in the fixed-delay "compute") / (wall time of the session). */
  computeFraction: number
  /** The same counting only units whose answer was accepted (a refused answer's compute was wasted). */
  usefulFraction: number
  roundsClosed: number
  refused: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function scaling(store: string, server: CoordinatorProcess, compression: UpdateCompression): Promise<ScalingRow[]> {
  const rows: ScalingRow[] = []
  for (const staleness of SCALING_STALENESS) {
    for (const n of SCALING_COUNTS) {
      const { jobId, spec, initialWeights } = await server.createJob(`bench: scaling, S=${staleness}, ${n} contributors`, {
        maxStaleness: staleness,
        rounds: 100_000,
        ...(compression ? { compression } : {}),
      }, NO_CHECKS)
      const update = madeUpUpdate(Uint8Array.from(initialWeights), compression)
      const crowd = await contributors(n, server)
      const perUnit = examplesPerUnit(spec.training)
      let units = 0
      let refused = 0
      let leaseErrors = 0
      let firstRound = Infinity
      let lastRound = 0
      const start = performance.now()
      const end = start + SCALING_SECONDS * 1000
      // A refused lease request (e.g. too many live leases while an upload is still in flight) is a wait.
      const lease = (c: Contributor): Promise<LeaseResponse> =>
        c.lease(jobId).catch((error: unknown) => {
          leaseErrors++
          if (leaseErrors === 1) console.log(`  a lease request was refused: ${(error as Error).message}`)
          return { status: 'wait', retryAfterMs: 250, reason: 'refused' } as LeaseResponse
        })
      const computing = await Promise.all(
        crowd.map(async (c) => {
          let busy = 0
          let upload: Promise<void> = Promise.resolve()
          let next: Promise<LeaseResponse> | null = null
          while (performance.now() < end) {
            const response = await (next ?? lease(c))
            next = null
            if (response.status === 'finished') break
            if (response.status !== 'leased') {
              await sleep(Math.min(response.retryAfterMs, Math.max(0, end - performance.now())))
              continue
            }
            // As the worker's scheduler does: the next unit is leased while this one computes (once the
            // previous upload has settled, so the address holds at most two live leases) and this one
            // is uploaded while the next computes.
            if (OVERLAP) next = upload.then(() => lease(c))
            const t0 = performance.now()
            await sleep(SCALING_DELAY_MS)
            busy += performance.now() - t0
            const submitted = upload.then(async () => {
              const result = await c.submit(response.lease, update)
              if (result.ok) {
                units++
                firstRound = Math.min(firstRound, response.lease.unit.round)
                lastRound = Math.max(lastRound, response.lease.unit.round)
              } else {
                refused++
                if (refused === 1) console.log(`  a submission was refused: ${result.code}`)
                // As the worker does with a unit whose round moved on: hand it back.
                await c.release(response.lease.id)
              }
            })
            if (OVERLAP) upload = submitted
            else await submitted
          }
          await upload
          return busy
        }),
      )
      const seconds = (performance.now() - start) / 1000
      const row: ScalingRow = {
        store,
        maxStaleness: staleness,
        contributors: n,
        units,
        examples: units * perUnit,
        seconds,
        examplesPerSecond: (units * perUnit) / seconds,
        computeFraction: computing.reduce((a, b) => a + b, 0) / (n * seconds * 1000),
        usefulFraction: (units * SCALING_DELAY_MS) / (n * seconds * 1000),
        roundsClosed: Number.isFinite(firstRound) ? lastRound - firstRound : 0,
        refused,
      }
      rows.push(row)
      console.log(`  ${store}, S=${staleness}, ${n} contributors: ${row.examplesPerSecond.toFixed(0)} examples/s, ${(100 * row.computeFraction).toFixed(0)}% computing (${(100 * row.usefulFraction).toFixed(0)}% on accepted units), ${row.refused} refused`)
    }
  }
  return rows
}

// --- Report -----------------------------------------------------------------------------------------


async function main() {
  await mkdir(RESULTS, { recursive: true })
  // The load others put on the machine when the run started: these figures are only as good as it is quiet.
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load average ${loadavg()[0]!.toFixed(1)} at start`
  const claimRows: ClaimRow[] = []
  const scalingRows: ScalingRow[] = []
  const notes: string[] = []
  for (const store of STORES) {
    let postgres: { url: string; stop(): Promise<void> } | null = null
    if (store === 'postgres') {
      const { postgresUnavailableReason, startPostgresServer } = await import('../coordinator/testing/postgresServer.ts')
      const reason = postgresUnavailableReason()
      if (reason) {
        notes.push(`PostgreSQL rows skipped: ${reason}.`)
        continue
      }
      postgres = await startPostgresServer({ database: 'bench' })
    }
    try {
      const server = await CoordinatorProcess.start({ databaseUrl: postgres?.url, profileDir: env.BENCH_PROFILE })
      try {
        await checkSigningMatchesViem(server.domain)
        const compression = await probeCompression(server)
        if (!SKIP.has('claims')) {
          console.log(`claim path on ${store}…`)
          claimRows.push(...(await claimPath(store, server, compression)))
        }
        if (!SKIP.has('scaling') && SCALING_STORES.has(store)) {
          console.log(`scaling on ${store}…`)
          scalingRows.push(...(await scaling(store, server, compression)))
        }
      } finally {
        await server.stop()
      }
    } finally {
      await postgres?.stop()
    }
  }

  const md = [
    '# Coordinator throughput',
    '',
    `Run ${new Date().toISOString()} on ${machine}. Reproduce with \`tsx bench/throughput.ts\` (part of \`npm run bench\`; environment variables in the file's header).`,
    '',
    'The coordinator runs in its own process; the simulated contributors run in the benchmark\'s process; both share this machine\'s cores. Jobs are volunteer copies of the MNIST preset with spot checks and canaries off (the updates are made up; bench/verification.md measures checks).',
    '',
    ...notes,
    '',
    '## Lease + submit round trips',
    '',
    `Each round trip: a lease request (a session from the contributor's first, signed, request), a unit leased in a transaction, an EIP-712 claim signed by the contributor, and a POST of the claim with a preset-sized update; the coordinator checks the claim's signature (against the contributor's known public key), the lease, round, input and output hash (SHA-256 in OpenSSL), decodes the update and checks shapes and finiteness, writes the blob and records the answer. Synchronous jobs with rounds too large to close: this is the claim path alone. ${CLAIM_SECONDS} s per row. **Target: ≥ ${TARGET_ROUND_TRIPS_PER_S} round trips/s** (issue 11).`,
    '',
    table(
      ['store', 'contributors', 'update', 'round trips', 'round trips / s', 'p50', 'p99', 'coordinator CPU / round trip', 'client CPU / round trip', 'refused'],
      claimRows.map((r) => [r.store, r.contributors, `${r.compression}, ${(r.updateBytes / 1024).toFixed(0)} KiB`, r.roundTrips, r.perSecond.toFixed(0), `${r.p50Ms.toFixed(1)} ms`, `${r.p99Ms.toFixed(1)} ms`, `${r.serverCpuMsPerRoundTrip.toFixed(2)} ms`, `${r.clientCpuMsPerRoundTrip.toFixed(2)} ms`, r.refused]),
    ),
    '',
    `## Scaling: contributors whose compute is a fixed ${SCALING_DELAY_MS} ms delay`,
    '',
    `Each contributor loops lease → wait ${SCALING_DELAY_MS} ms ("compute") → sign → submit for ${SCALING_SECONDS} s${OVERLAP ? ", leasing its next unit while one computes and uploading in the background as the worker's scheduler does" : ', one step after the other (no prefetch)'}; a contributor told to wait sleeps for the coordinator's retryAfterMs. Rounds close (aggregation and held-out evaluation run as in production). maxStaleness 0: synchronous rounds of K = 4 units; ≥ 1: asynchronous rounds that follow the live pool. computing = the mean over contributors of the share of their wall time spent in the delay. **Target: ≥ ${100 * TARGET_COMPUTE_FRACTION}% computing with 64 contributors; near-linear examples/s** (issue 11).`,
    '',
    table(
      ['store', 'maxStaleness', 'contributors', 'units accepted', 'examples / s', 'computing', 'computing, accepted units only', 'rounds closed', 'answers refused (stale)'],
      scalingRows.map((r) => [r.store, r.maxStaleness, r.contributors, r.units, r.examplesPerSecond.toFixed(0), `${(100 * r.computeFraction).toFixed(0)}%`, `${(100 * r.usefulFraction).toFixed(0)}%`, r.roundsClosed, r.refused]),
    ),
    '',
  ].join('\n')
  const out = env.BENCH_THROUGHPUT_OUT || 'throughput'
  await writeFile(join(RESULTS, `${out}.md`), md)
  await writeFile(join(RESULTS, `${out}.json`), JSON.stringify({ date: new Date().toISOString(), machine, claimPath: claimRows, scaling: scalingRows, notes }, null, 2))
  console.log(md)
}

await main()
process.exit(0)
