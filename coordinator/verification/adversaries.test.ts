import { getAddress, type Address } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import {
  DEFAULT_VERIFICATION,
  decodeTensorList,
  hashTensorList,
  parseJobSpec,
  signLeaseRequest,
  type Hash,
  type JobSpec,
  type TensorList,
} from '../../src/protocol/index.ts'
import { applyAveragedUpdate, clipToMedianNorm } from '../../src/training/aggregate.ts'
import { evaluateModel } from '../../src/training/evaluate.ts'
import { buildModel, setModelWeights } from '../../src/training/model.ts'
import { memoryCached } from '../../src/worker/blobSource.ts'
import { useCpuKernelsFor } from '../../src/worker/cpuKernels.ts'
import { createUnitRunner } from '../../src/worker/unitRunner.ts'
import { stakeManagerAbi } from '../../contracts/generated/index.ts'
import { LOCAL_PRESET_REQUESTER, buildMnistPreset, type PresetBlobs } from '../presets/mnist.ts'
import { AVERAGED_PRIMARIES } from '../rounds.ts'
import type { AttemptRow } from '../rows.ts'
import { createAdversary, PERSISTENT_LIARS, type LiarKind, type LiarStats } from '../testing/adversaries.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'
import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from '../testing/postgresServer.ts'

/**
 * Jobs attacked by contributors that run the real worker code and then lie (coordinator/testing/adversaries.ts),
 * about 30% of the addresses in each job, on a real local chain (anvil). What a requester and an honest
 * contributor must be able to rely on: every persistent cheater is caught and slashed, no honest address is
 * ever flagged, the model is as good as a clean run's and holds no rejected update, and nobody stalls a round.
 *
 * The jobs are created with the highest check rate a requester can ask for: every unit of an address with
 * no clean check is re-executed (the default is 1 in 3), falling as checks pass, with 1 in 10 canaries. A
 * liar never passes a check, so each of its lies is checked and a six-round job catches it for certain;
 * honest addresses fall towards the floor as usual. bench/verification.ts measures the default rates over
 * longer runs (units until caught, tokens earned before).
 */
const ROUNDS = 6
const UNITS_PER_ROUND = 4

let coordinator: TemporaryCoordinator
let preset: PresetBlobs
let jobCounter = 0

beforeAll(async () => {
  preset = await buildMnistPreset({ paid: true })
})

/**
 * A squatter holds a unit until its lease runs out, so the squatted job's leases are short (honest units
 * take about a second here); that bounds the test's time, not the protection, which is what is asserted.
 */
const SQUATTED_LEASE_SECONDS = 8

function attackedJobSpec(name: string, leaseTtlSeconds: number): JobSpec {
  return parseJobSpec({
    ...preset.spec,
    name: `adversary suite: ${name} ${++jobCounter}`,
    training: { ...preset.spec.training, unitsPerRound: UNITS_PER_ROUND, rounds: ROUNDS, leaseTtlSeconds },
    payment: { pricePerUnit: '1000000000000000000', budget: '60000000000000000000', requester: LOCAL_PRESET_REQUESTER },
    verification: { ...DEFAULT_VERIFICATION, initialCheckRate: 1, canaryRate: 1 / 10 },
  })
}

/** The same job trained by honest contributors only: every unit computed from the checkpoint it was issued. */
async function cleanRun(spec: JobSpec, jobId: Hash): Promise<{ final: Hash; accuracy: number }> {
  const blobs = new Map<string, Uint8Array>(preset.blobs)
  const runner = createUnitRunner(memoryCached({ get: async (hash) => blobs.get(hash) ?? coordinator.jobs.options.blobs.get(hash) }))
  await useCpuKernelsFor(spec, 'cpu')
  let checkpoint = decodeTensorList(blobs.get(spec.model.initialWeights)!)
  for (let round = 0; round < spec.training.rounds; round++) {
    const input = hashTensorList(checkpoint)
    blobs.set(input.hash, input.bytes)
    const updates = []
    for (let unit = 0; unit < spec.training.unitsPerRound; unit++) {
      const out = await runner.run(spec, { jobId, round, unit, inputHash: input.hash })
      updates.push({ update: decodeTensorList(out.updateBytes), examples: out.examples })
    }
    checkpoint = applyAveragedUpdate(checkpoint, clipToMedianNorm(updates).updates, spec.training.outerLearningRate)
  }
  return { final: hashTensorList(checkpoint).hash, accuracy: await accuracyOf(spec, checkpoint) }
}

async function accuracyOf(spec: JobSpec, weights: TensorList): Promise<number> {
  const model = await buildModel(spec)
  setModelWeights(model, weights)
  const { accuracy } = await evaluateModel(model, spec, preset.heldOut)
  model.dispose()
  return accuracy
}

async function stakeOf(address: Address): Promise<bigint> {
  const chain = coordinator.settlement!.chain
  const [active, pending] = await coordinator.chain!.publicClient.readContract({
    address: chain.contracts.stakeManager,
    abi: stakeManagerAbi,
    functionName: 'stakeOf',
    args: [address],
  })
  return active + pending
}

interface Party {
  kind: LiarKind | 'honest' | 'sybil'
  address: Address
  stats: LiarStats
  stop: () => Promise<void>
  stakeBefore: bigint
}

/**
 * Runs one attacked job to its end: `honest` honest contributors and one adversary per entry of `liars`,
 * all started together; returns who was who. Also runs `alongside` (squatters) until the job ends.
 */
async function runAttackedJob(name: string, honest: number, liars: LiarKind[], alongside: Array<(jobId: Hash) => { stop: () => Promise<void> }> = []) {
  const spec = attackedJobSpec(name, alongside.length ? SQUATTED_LEASE_SECONDS : 30)
  const jobId = (await coordinator.jobs.createJob(spec, preset.blobs.values())) as Hash
  await coordinator.chain!.fundJob!(jobId, spec.payment!)
  const kinds: Array<LiarKind | 'honest'> = [...Array.from({ length: honest }, () => 'honest' as const), ...liars]
  const parties: Party[] = []
  for (const kind of kinds) {
    const adversary = createAdversary({ kind, coordinatorUrl: coordinator.url, jobId })
    await coordinator.settlement!.drip(adversary.address)
    parties.push({ kind, address: getAddress(adversary.address), stats: adversary.stats, stop: () => adversary.scheduler.stop(), stakeBefore: await stakeOf(adversary.address) })
    ;(parties.at(-1) as Party & { start: () => void }).start = () => adversary.scheduler.start()
  }
  const others = alongside.map((start) => start(jobId))
  for (const p of parties) (p as Party & { start: () => void }).start()
  const client = new CoordinatorClient(coordinator.url)
  const deadline = Date.now() + 240_000
  let progress = await client.progress(jobId)
  while (progress.status !== 'finished' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500))
    progress = await client.progress(jobId)
  }
  await Promise.all([...parties.map((p) => p.stop()), ...others.map((o) => o.stop())])
  expect(progress.status, `job "${name}" did not finish in time: round ${progress.round} of ${progress.rounds}`).toBe('finished')
  return { spec, jobId, parties, progress }
}

/** Posts epochs and sends the evidence until every dispute is on-chain (or a minute has passed). */
async function settleDisputes(): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    await coordinator.settlement!.closeEpoch()
    await coordinator.settlement!.disputes.tick()
    const [row] = await coordinator.db.query<{ n: string }>(`SELECT count(*) AS n FROM disputes WHERE status NOT IN ('done', 'failed')`)
    if (Number(row!.n) === 0 || Date.now() > deadline) return
    await new Promise((r) => setTimeout(r, 500))
  }
}

/** Recomputes the final checkpoint from the stored rounds, keeping only answers never found wrong. */
async function recomputeFinal(spec: JobSpec, jobId: Hash): Promise<{ final: Hash; rejectedInModel: number }> {
  const blobs = coordinator.jobs.options.blobs
  let checkpoint = decodeTensorList(await blobs.get(spec.model.initialWeights))
  let rejectedInModel = 0
  for (let round = 0; round < spec.training.rounds; round++) {
    const averaged = await coordinator.db.query<AttemptRow>(AVERAGED_PRIMARIES, [jobId, round])
    const bad = await coordinator.db.query(
      `SELECT 1 FROM attempts WHERE job_id = $1 AND round = $2 AND verdict IN ('rejected', 'dropped') AND lease_id = ANY($3::text[])`,
      [jobId, round, averaged.map((a) => a.lease_id)],
    )
    rejectedInModel += bad.length
    if (averaged.length === 0) continue
    const updates = await Promise.all(averaged.map(async (a) => ({ update: decodeTensorList(await blobs.get(a.output_hash!)), examples: Number(a.examples) })))
    checkpoint = applyAveragedUpdate(checkpoint, clipToMedianNorm(updates).updates, spec.training.outerLearningRate)
  }
  return { final: hashTensorList(checkpoint).hash, rejectedInModel }
}

async function assertOutcome(run: Awaited<ReturnType<typeof runAttackedJob>>, persistent: Array<LiarKind | 'honest' | 'sybil'>) {
  const { spec, jobId, parties, progress } = run
  await settleDisputes()
  if (process.env.TABTRAIN_SUITE_DEBUG) {
    const disputes = await coordinator.db.query(`SELECT kind, contributor, status, slashed, error FROM disputes WHERE job_id = $1`, [jobId])
    console.log(JSON.stringify({ verification: (await new CoordinatorClient(coordinator.url).progress(jobId)).verification, parties: parties.map((p) => ({ kind: p.kind, stats: p.stats })), disputes }, null, 1))
  }
  const client = new CoordinatorClient(coordinator.url)
  for (const party of parties) {
    const reputation = await client.reputation(party.address)
    const stake = await stakeOf(party.address)
    if (party.kind === 'honest') {
      expect(reputation, `honest ${party.address} was flagged`).toMatchObject({ banned: false, checksFailed: 0, unitsRejected: 0, slashes: 0 })
      expect(stake, `honest ${party.address} lost stake`).toBe(party.stakeBefore)
    } else if (persistent.includes(party.kind) && party.stats.acceptedLies > 0) {
      expect(reputation.banned, `${party.kind} liar ${party.address} (${party.stats.acceptedLies} lies accepted) was not caught`).toBe(true)
      expect(stake, `${party.kind} liar ${party.address} was not slashed`).toBeLessThan(party.stakeBefore)
    }
  }
  // The model holds no rejected update, and its stored final checkpoint is exactly the recomputation.
  const recomputed = await recomputeFinal(spec, jobId)
  expect(recomputed.rejectedInModel).toBe(0)
  expect(progress.checkpoint === recomputed.final || (await client.progress(jobId)).checkpoint === recomputed.final).toBe(true)
  const final = (await client.progress(jobId)).history.at(-1)!
  const clean = await cleanRun(spec, jobId)
  expect(Math.abs(final.heldOutAccuracy - clean.accuracy), `accuracy ${final.heldOutAccuracy} vs clean ${clean.accuracy}`).toBeLessThanOrEqual(0.01)
}

describe('a job under attack by contributors that lie, on anvil and PGlite', () => {
  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ epochSeconds: 2 })
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  it('catches and slashes liars who scale, randomise or skip their updates; honest work is untouched', { timeout: 420_000 }, async () => {
    const run = await runAttackedJob('scaled, random, zero', 7, ['scaled', 'random', 'zero'])
    await assertOutcome(run, PERSISTENT_LIARS)
  })

  it('catches liars who train from a stale checkpoint or copy other answers; a 5% faker gains little', { timeout: 420_000 }, async () => {
    const run = await runAttackedJob('stale, copy, sometimes', 7, ['stale', 'copy', 'sometimes'])
    await assertOutcome(run, PERSISTENT_LIARS)
    const sometimes = run.parties.find((p) => p.kind === 'sometimes')!
    // Its faked units are either caught (and it is banned) or were never checked and their influence bounded.
    const reputation = await new CoordinatorClient(coordinator.url).reputation(sometimes.address)
    if (reputation.checksFailed > 0) expect(reputation.banned).toBe(true)
  })

  it('a checker cannot copy the answer it checks, and colluders who vouch for each other are caught', { timeout: 420_000 }, async () => {
    const run = await runAttackedJob('copying checker, colluding pair', 7, ['copying-checker', 'colluder', 'colluder'])
    await assertOutcome(run, PERSISTENT_LIARS)
    const copier = run.parties.find((p) => p.kind === 'copying-checker')!
    // Every time it looked for the answer of the unit it held, nothing was served.
    expect(copier.stats.copied).toBe(0)
    expect(copier.stats.copyRefused).toBe(copier.stats.units)
  })

  it('twenty fresh addresses of one owner gain nothing, and squatters cannot stall a round', { timeout: 420_000 }, async () => {
    const squatters: Array<(jobId: Hash) => { stop: () => Promise<void> }> = [
      // A keyless client asking for leases as fast as it can, with no signature.
      (jobId) => {
        let running = true
        const loop = (async () => {
          let refused = 0
          while (running) {
            const answer = await fetch(`${coordinator.url}/api/jobs/${jobId}/leases`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ contributor: privateKeyToAccount(generatePrivateKey()).address }),
            })
            expect(answer.status).toBe(400)
            refused += 1
            await new Promise((r) => setTimeout(r, 20))
          }
          expect(refused).toBeGreaterThan(0)
        })()
        return { stop: async () => ((running = false), await loop) }
      },
      // A keyed client that takes every lease it can and never answers.
      (jobId) => {
        let running = true
        const account = privateKeyToAccount(generatePrivateKey())
        const client = new CoordinatorClient(coordinator.url)
        const loop = (async () => {
          await coordinator.settlement!.drip(account.address)
          const info = await client.info()
          while (running) {
            await client.lease(jobId, await signLeaseRequest(account, { jobId, audience: info.coordinatorId, domain: info })).catch(() => null)
            await new Promise((r) => setTimeout(r, 200))
          }
        })()
        return { stop: async () => ((running = false), await loop) }
      },
    ]
    const sybils: LiarKind[] = Array.from({ length: 20 }, () => 'zero')
    const run = await runAttackedJob('sybils and squatters', 5, sybils, squatters)
    await assertOutcome(run, PERSISTENT_LIARS)
    // The owner's twenty addresses together were paid for no more units than they lied in and were never caught for.
    const paid = await coordinator.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = ANY($2::text[]) AND status = 'submitted' AND verdict IN ('unchecked', 'passed')`,
      [run.jobId, run.parties.filter((p) => p.kind === 'zero').map((p) => p.address)],
    )
    const honestUnits = await coordinator.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = ANY($2::text[]) AND status = 'submitted' AND verdict IN ('unchecked', 'passed')`,
      [run.jobId, run.parties.filter((p) => p.kind === 'honest').map((p) => p.address)],
    )
    expect(Number(paid[0]!.n)).toBeLessThan(Number(honestUnits[0]!.n))
  })
})

describe.skipIf(postgresUnavailableReason() !== null)('the same attack with the store on PostgreSQL', () => {
  let server: PostgresServer

  beforeAll(async () => {
    server = await startPostgresServer()
    coordinator = await startTemporaryCoordinator({ epochSeconds: 2, databaseUrl: await server.createDatabase('adversaries') })
  })

  afterAll(async () => {
    await coordinator?.dispose()
    await server?.stop()
  })

  it('catches and slashes liars who scale, randomise or skip their updates; honest work is untouched', { timeout: 420_000 }, async () => {
    const run = await runAttackedJob('scaled, random, zero on PostgreSQL', 7, ['scaled', 'random', 'zero'])
    await assertOutcome(run, PERSISTENT_LIARS)
  })
})
