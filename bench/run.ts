/**
 * `npm run bench`: writes bench/results/bench.md (tables) and bench/results/bench.json (same figures).
 *
 * 1. Coordinator throughput: lease + submit round trips per second with N simulated contributors over
 *    real HTTP on the embedded store (PGlite), each lease request signed as a page signs it. Each submission is a real, signed, full-size update of the
 *    preset model; rounds are made too large to close, so this measures the claim path alone. Round
 *    closing (aggregate + held-out evaluation) is timed separately.
 * 2. One unit in a tab: the split of wall time between fetching, training, hashing, signing and
 *    uploading, read from the contribute page in headless Chromium on its WebGPU adapter.
 *
 * Timings on SwiftShader are CPU timings; they say nothing about a real GPU.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import {
  DEFAULT_VERIFICATION,
  decodeTensorList,
  hashTensorList,
  jobSpecHash,
  signLeaseRequest,
  signWorkClaim,
  type Hash,
  type JobSpec,
  type VerificationPolicy,
} from '../src/protocol/index.ts'
import { buildMnistPreset } from '../coordinator/presets/mnist.ts'
import { startTemporaryCoordinator } from '../coordinator/testing/inProcess.ts'
import { ARTIFACTS, launchChromium, ROOT, startSystem } from '../e2e/harness.ts'

const RESULTS = join(ROOT, 'bench/results')
const SECONDS_PER_POINT = Number(process.env.BENCH_SECONDS ?? 6)
const CONTRIBUTOR_COUNTS = [1, 4, 16]
const TAB_UNITS = Number(process.env.BENCH_TAB_UNITS ?? 6)

interface ThroughputRow {
  contributors: number
  roundTrips: number
  seconds: number
  perSecond: number
  p50Ms: number
  p95Ms: number
}

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN
}
const median = (xs: number[]) => percentile(xs, 0.5)

/**
 * The submissions here are made up (one fixed update for every unit), so under the default policy spot
 * checks and canaries would catch them and ban the simulated contributors. The bench jobs therefore run
 * with the smallest positive check rate and no canaries: the figures are the protocol's own overhead
 * (signatures, leases, claim checks, storage, aggregation) without verification work. Checks are measured by
 * bench/verification.ts.
 */
const NO_CHECKS: VerificationPolicy = { ...DEFAULT_VERIFICATION, initialCheckRate: 1e-9, floorCheckRate: 1e-9, canaryRate: 0 }

async function coordinatorThroughput(): Promise<{ rows: ThroughputRow[]; roundCloseMs: number[]; updateBytes: number }> {
  const coordinator = await startTemporaryCoordinator()
  try {
    const preset = await buildMnistPreset({ paid: false })
    // Same model and data, but a round that never fills: every request is a lease and a full claim check.
    const spec: JobSpec = { ...preset.spec, name: 'bench: claim path', training: { ...preset.spec.training, unitsPerRound: 10_000 }, verification: NO_CHECKS }
    const jobId = await coordinator.jobs.createJob(spec, preset.blobs.values())
    const initial = decodeTensorList(preset.blobs.get(spec.model.initialWeights)!)
    const update = hashTensorList({ shapes: initial.shapes, values: initial.values.map((v) => v.map((_, i) => ((i % 7) - 3) * 1e-4)) })
    const client = new CoordinatorClient(coordinator.url)
    const domain = coordinator.jobs.domain
    const { coordinatorId } = await client.info()
    // Each simulated contributor signs every lease request as a page does (part of the round trip's time).
    const leaseRequest = (account: PrivateKeyAccount, forJob: Hash) => signLeaseRequest(account, { jobId: forJob, audience: coordinatorId, domain })

    const rows: ThroughputRow[] = []
    for (const n of CONTRIBUTOR_COUNTS) {
      const accounts = Array.from({ length: n }, () => privateKeyToAccount(generatePrivateKey()))
      const latencies: number[] = []
      const end = performance.now() + SECONDS_PER_POINT * 1000
      const start = performance.now()
      await Promise.all(
        accounts.map(async (account) => {
          while (performance.now() < end) {
            const t0 = performance.now()
            const response = await client.lease(jobId, await leaseRequest(account, jobId))
            if (response.status !== 'leased') throw new Error(`expected a lease, got ${response.status}`)
            const { unit } = response.lease
            const signed = await signWorkClaim(
              account,
              { ...unit, outputHash: update.hash, contributor: account.address, deviceClass: 'bench' },
              domain,
            )
            await client.submit(response.lease.id, signed, update.bytes, 1)
            latencies.push(performance.now() - t0)
          }
        }),
      )
      const seconds = (performance.now() - start) / 1000
      rows.push({ contributors: n, roundTrips: latencies.length, seconds, perSecond: latencies.length / seconds, p50Ms: median(latencies), p95Ms: percentile(latencies, 0.95) })
      console.log(`  ${n} contributors: ${(latencies.length / seconds).toFixed(1)} round trips/s`)
    }

    // Round closing on a volunteer copy of the preset with the same low check rates (K = 4 accepted
    // updates averaged, then evaluated on 2,000 digits).
    const roundCloseMs: number[] = []
    const closingSpec: JobSpec = { ...preset.spec, name: 'bench: round closing', verification: NO_CHECKS }
    const presetId = (await coordinator.jobs.createJob(closingSpec, preset.blobs.values())) as Hash
    const account = privateKeyToAccount(generatePrivateKey())
    for (let r = 0; r < 3; r++) {
      for (let u = 0; u < preset.spec.training.unitsPerRound; u++) {
        const response = await client.lease(presetId, await leaseRequest(account, presetId))
        if (response.status !== 'leased') throw new Error('expected a lease on the preset job')
        const signed = await signWorkClaim(account, { ...response.lease.unit, outputHash: update.hash, contributor: account.address, deviceClass: 'bench' }, domain)
        const last = u === preset.spec.training.unitsPerRound - 1
        const t0 = performance.now()
        const result = await client.submit(response.lease.id, signed, update.bytes, 1)
        if (last) {
          if (!result.roundClosed) throw new Error('the last unit should close the round')
          roundCloseMs.push(performance.now() - t0)
        }
      }
    }
    return { rows, roundCloseMs, updateBytes: update.bytes.byteLength }
  } finally {
    await coordinator.dispose()
  }
}

interface TabUnit {
  round: number
  unit: number
  fetchMs: number
  trainMs: number
  hashMs: number
  signMs: number
  uploadMs: number
  totalMs: number
}

async function unitInTab(): Promise<{ adapter: string; units: TabUnit[] }> {
  const system = await startSystem()
  const browser = await launchChromium()
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1500 } })
    await page.goto(`${system.url}/contribute.html`)
    await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
    const adapter = `${await page.textContent('#backend')} · ${await page.textContent('#adapter')}`
    await page.click('#start')
    await page.waitForFunction((n) => Number(document.getElementById('units-done')?.textContent) >= n, TAB_UNITS, { timeout: 600_000 })
    await page.click('#stop')
    await page.screenshot({ path: join(ARTIFACTS, 'bench-contribute.png'), fullPage: true })
    const rows = await page.$$eval('#timings tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent ?? '')))
    const units = rows
      .map((cells) => {
        const [id, ...ms] = cells
        const [round, unit] = id!.split('·').map((s) => Number(s.trim()))
        const [fetchMs, trainMs, hashMs, signMs, uploadMs, totalMs] = ms.slice(0, 6).map((s) => Number.parseFloat(s))
        return { round: round!, unit: unit!, fetchMs: fetchMs!, trainMs: trainMs!, hashMs: hashMs!, signMs: signMs!, uploadMs: uploadMs!, totalMs: totalMs! }
      })
      .reverse()
    return { adapter, units }
  } finally {
    await browser.close()
    await system.stop()
  }
}

function table(header: string[], rows: (string | number)[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

async function main() {
  await mkdir(RESULTS, { recursive: true })
  await mkdir(ARTIFACTS, { recursive: true })
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`
  console.log('coordinator throughput…')
  const throughput = await coordinatorThroughput()
  console.log('one unit in a tab…')
  const tab = await unitInTab()

  const phases = ['fetchMs', 'trainMs', 'hashMs', 'signMs', 'uploadMs'] as const
  const warm = tab.units.slice(1)
  const phaseRow = (label: string, units: TabUnit[]) => {
    const total = median(units.map((u) => u.totalMs))
    const cell = (ms: number) => `${ms.toFixed(0)} ms (${((100 * ms) / total).toFixed(0)}%)`
    const other = median(units.map((u) => u.totalMs - phases.reduce((n, p) => n + u[p], 0)))
    return [label, ...phases.map((p) => cell(median(units.map((u) => u[p])))), cell(other), `${total.toFixed(0)} ms`]
  }

  const md = [
    '# TabTrain benchmark',
    '',
    `Run ${new Date().toISOString()} on ${machine}. Reproduce with \`npm run bench\`.`,
    '',
    '## Coordinator: lease + submit round trips (embedded PGlite store)',
    '',
    `Jobs: volunteer copies of the preset whose verification policy sets the check rates to 1e-9 and canaries to 0, because the updates here are made up (spot checks would catch them): **this measures the protocol's overhead without checks** (bench/verification.md measures the checks). Each round trip: sign an EIP-712 lease request and lease a unit (the coordinator checks its signature, freshness and nonce), sign an EIP-712 claim, POST a ${(throughput.updateBytes / 1024).toFixed(0)} KiB update (the preset model's full size); the coordinator recovers the signer, checks lease, round, input hash, output hash, shapes and finiteness, stores the blob and records the unit. ${SECONDS_PER_POINT} s per row; client and coordinator share this machine's cores.`,
    '',
    table(
      ['contributors', 'round trips', 'round trips / s', 'p50 latency', 'p95 latency'],
      throughput.rows.map((r) => [r.contributors, r.roundTrips, r.perSecond.toFixed(1), `${r.p50Ms.toFixed(1)} ms`, `${r.p95Ms.toFixed(1)} ms`]),
    ),
    '',
    `Closing a round of the preset job (same low-check volunteer copy; average 4 updates, store the checkpoint, evaluate 2,000 held-out digits on tfjs's CPU backend), seen as the latency of the submission that completes it: median ${median(throughput.roundCloseMs).toFixed(0)} ms over ${throughput.roundCloseMs.length} rounds.`,
    '',
    '## One unit in a browser tab',
    '',
    `Preset MNIST job (10 Adam steps of 32 examples per unit), headless Chromium, ${tab.adapter}. Medians; the first unit is cold (data shard download, model build, shader compilation).`,
    '',
    table(['unit', 'fetch', 'train', 'hash', 'sign', 'upload', 'other', 'total'], [phaseRow('first (cold)', tab.units.slice(0, 1)), phaseRow(`next ${warm.length} (warm)`, warm)]),
    '',
    'fetch = checkpoint and data shard (network or IndexedDB) and model build; train = set weights, H steps, read back; hash = Δ and its canonical bytes and SHA-256; sign = EIP-712 signature with the burner key; upload = the submission round trip including the coordinator\'s checks; other = the rest of the unit\'s wall time (Worker messaging, the page\'s main thread).',
    '',
  ].join('\n')
  await writeFile(join(RESULTS, 'bench.md'), md)
  await writeFile(join(RESULTS, 'bench.json'), JSON.stringify({ date: new Date().toISOString(), machine, throughput, tab }, null, 2))
  console.log(md)
}

await main()
process.exit(0)
