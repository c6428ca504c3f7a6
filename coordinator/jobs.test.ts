import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  JobSpecError,
  MAX_CLAIM_JSON_BYTES,
  decodeTensorList,
  encodeSubmission,
  encodeTensorList,
  examplesPerUnit,
  hashTensorList,
  jobSpecHash,
  parseJobSpec,
  signWorkClaim,
  type Hash,
  type Lease,
  type TensorList,
  type TrainingConfig,
} from '../src/protocol/index.ts'
import { applyAveragedUpdate } from '../src/training/aggregate.ts'
import { BlobStore } from './blobs.ts'
import { migrate, type Database } from './db.ts'
import { CoordinatorError, ERROR_STATUS, type ErrorCode } from './errors.ts'
import { JobService } from './jobs.ts'
import { TEST_ENGINES, noteSkippedEngines, type RunningEngine } from './testing/engines.ts'
import {
  TEST_DOMAIN,
  alice,
  bob,
  carol,
  dave,
  jobVariant,
  leased,
  makeSubmission,
  testJobBase,
  testUpdate,
  type SubmissionOptions,
  type TestJobBase,
} from './testing/fixtures.ts'

noteSkippedEngines('coordinator/jobs.test.ts')

const T0 = 1_800_000_000_000
/**
 * These tests submit made-up updates to exercise leases, claims and rounds; a draw of 1 samples no unit for
 * a check (the rate is below 1), so no honest re-execution ever disagrees with them. Checks have their own suite.
 */
const NEVER_SAMPLED = () => 1
const TTL_MS = 10_000

/** A blob store that fails reading one hash: a coordinator dying in the middle of aggregating a round. */
class CrashingBlobStore extends BlobStore {
  crashOn: string | null = null
  override async get(hash: string): Promise<Uint8Array> {
    if (hash === this.crashOn) throw new Error('simulated crash during aggregation')
    return super.get(hash)
  }
}

/** The same value with the keys of every object, at every depth, in reverse order. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).reverse().map(([k, v]) => [k, reverseKeys(v)]))
  }
  return value
}

/**
 * C + Σ wᵢΔᵢ computed here without the aggregation module, for equal weights wᵢ = 1/n and outer rate 1:
 * float64 sums of the weighted terms in unit order, rounded once to float32 (the documented rule that
 * makes the next checkpoint, and so its hash, reproducible).
 */
function meanByHand(checkpoint: TensorList, updates: TensorList[]): TensorList {
  const w = 1 / updates.length
  return {
    shapes: checkpoint.shapes,
    values: checkpoint.values.map((base, t) => {
      const out = new Float32Array(base.length)
      for (let j = 0; j < base.length; j++) {
        let sum = 0
        for (const u of updates) sum += w * u.values[t]![j]!
        out[j] = base[j]! + sum
      }
      return out
    }),
  }
}

/**
 * The influence bound, by hand: an update whose L2 norm exceeds the median of the round's norms is scaled
 * down to it (three updates: the median is the middle one), each value rounded once to float32.
 */
function clipByHand(updates: TensorList[]): TensorList[] {
  const norms = updates.map((u) => Math.sqrt(u.values.reduce((n, v) => n + v.reduce((m, x) => m + x * x, 0), 0)))
  const median = [...norms].sort((a, b) => a - b)[1]!
  return updates.map((u, i) =>
    norms[i]! > median ? { shapes: u.shapes, values: u.values.map((v) => Float32Array.from(v, (x) => x * (median / norms[i]!))) } : u,
  )
}

for (const engine of TEST_ENGINES) {
  describe.skipIf(engine.skipReason !== null)(`JobService on ${engine.name}`, () => {
    let running: RunningEngine
    let db: Database
    let blobDir: string
    let blobs: BlobStore
    let base: TestJobBase
    let jobCounter = 0
    let seedCounter = 100

    beforeAll(async () => {
      base = await testJobBase()
      running = await engine.start()
      db = await running.open()
      await migrate(db)
      blobDir = await mkdtemp(join(tmpdir(), 'tabtrain-jobs-'))
      blobs = new BlobStore(blobDir)
    })

    afterAll(async () => {
      await db?.close()
      await running?.stop()
      if (blobDir) await rm(blobDir, { recursive: true, force: true })
    })

    /** A fresh job (its own id) on the shared store, with its own service and clock. */
    async function newJob(training: Partial<TrainingConfig> = {}, blobStore: BlobStore = blobs) {
      const clock = { t: T0 }
      const jobs = new JobService({ db, blobs: blobStore, domain: TEST_DOMAIN, now: () => clock.t, random: NEVER_SAMPLED })
      const spec = jobVariant(base.spec, `${engine.name} job ${++jobCounter}`, training)
      const jobId = await jobs.createJob(spec, base.blobs)
      const submit = async (options: Omit<SubmissionOptions, 'shapes'> & { shapes?: SubmissionOptions['shapes'] }) => {
        const submission = await makeSubmission({ shapes: base.shapes, ...options })
        return { submission, result: await jobs.submit(options.lease.id, submission.body) }
      }
      return { jobs, jobId, spec, clock, submit }
    }
    type Ctx = Awaited<ReturnType<typeof newJob>>

    const uniqueSeed = () => ++seedCounter

    async function recordedState(ctx: Ctx) {
      const p = await ctx.jobs.progress(ctx.jobId)
      return {
        round: p.round,
        status: p.status,
        checkpoint: p.checkpoint,
        acceptedUnits: p.acceptedUnits,
        acceptedThisRound: p.acceptedThisRound,
        contributors: p.contributors,
        history: p.history.length,
      }
    }

    /** Runs a request that must be refused with `code`, and checks that nothing was recorded. */
    async function expectRefused(ctx: Ctx, code: ErrorCode, request: () => Promise<unknown>, message?: RegExp) {
      const before = await recordedState(ctx)
      const error = await request().then(
        () => {
          throw new Error(`expected a refusal with code ${code}, the request succeeded`)
        },
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(CoordinatorError)
      expect((error as CoordinatorError).code).toBe(code)
      expect((error as CoordinatorError).status).toBe(ERROR_STATUS[code])
      if (message) expect((error as CoordinatorError).message).toMatch(message)
      expect(await recordedState(ctx)).toEqual(before)
    }

    describe('jobs', () => {
      it('creates a job addressed by its spec hash, with round 0 at the initial checkpoint', async () => {
        const ctx = await newJob()
        expect(ctx.jobId).toBe(jobSpecHash(ctx.spec))
        const job = await ctx.jobs.getJob(ctx.jobId)
        expect(job).toMatchObject({ id: ctx.jobId, name: ctx.spec.name, status: 'active', round: 0, rounds: 3, createdAt: T0 })
        expect(job.checkpoint).toBe(ctx.spec.model.initialWeights)
        expect(jobSpecHash(job.spec)).toBe(ctx.jobId)
        expect((await ctx.jobs.listJobs()).filter((j) => j.id === ctx.jobId)).toEqual([
          { id: ctx.jobId, name: ctx.spec.name, status: 'active', round: 0, rounds: 3, checkpoint: job.checkpoint, createdAt: T0, statusChangedAt: null, payment: null },
        ])
        const progress = await ctx.jobs.progress(ctx.jobId)
        expect(progress).toMatchObject({
          jobId: ctx.jobId,
          status: 'active',
          round: 0,
          rounds: 3,
          unitsPerRound: 2,
          acceptedThisRound: 0,
          acceptedUnits: 0,
          checkpoint: ctx.spec.model.initialWeights,
          history: [],
          contributors: [],
        })
        // The initial checkpoint is evaluated: an untrained 10-class model is near chance.
        expect(progress.initial).not.toBeNull()
        expect(Number.isFinite(progress.initial!.heldOutLoss)).toBe(true)
        expect(progress.initial!.heldOutLoss).toBeGreaterThan(0)
        expect(progress.initial!.heldOutAccuracy).toBeGreaterThanOrEqual(0)
        expect(progress.initial!.heldOutAccuracy).toBeLessThan(0.5)
        expect(await blobs.has(ctx.spec.data.heldOut.images)).toBe(true)
      })

      it('creating the same spec again returns the same id and changes nothing', async () => {
        const ctx = await newJob()
        const first = await ctx.jobs.getJob(ctx.jobId)
        ctx.clock.t += 1000
        expect(await ctx.jobs.createJob(ctx.spec, [])).toBe(ctx.jobId)
        // A spec with the same content but another key order is the same job.
        const reordered = reverseKeys(ctx.spec)
        expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(ctx.spec))
        expect(await ctx.jobs.createJob(reordered, [])).toBe(ctx.jobId)
        expect(await ctx.jobs.getJob(ctx.jobId)).toEqual(first)
        expect((await ctx.jobs.listJobs()).filter((j) => j.id === ctx.jobId)).toHaveLength(1)
      })

      it('refuses an invalid spec, missing blobs and initial weights of the wrong shapes, creating nothing', async () => {
        const jobs = new JobService({ db, blobs, domain: TEST_DOMAIN, now: () => T0, random: NEVER_SAMPLED })
        const before = (await jobs.listJobs()).length

        await expect(jobs.createJob({ ...base.spec, training: { ...base.spec.training, unitsPerRound: 0 } }, [])).rejects.toThrow(
          JobSpecError,
        )

        const missing = jobVariant(base.spec, `${engine.name} missing blob`)
        missing.data.train.images = `0x${'ab'.repeat(32)}` as Hash
        await expect(jobs.createJob(missing, [])).rejects.toMatchObject({ code: 'blob_not_found' })

        const wrong = hashTensorList(testUpdate([[3, 3]]))
        const wrongShapes = jobVariant(base.spec, `${engine.name} wrong shapes`)
        wrongShapes.model.initialWeights = wrong.hash
        await expect(jobs.createJob(wrongShapes, [wrong.bytes])).rejects.toMatchObject({ code: 'wrong_shapes' })

        expect((await jobs.listJobs()).length).toBe(before)
        await expect(jobs.getJob(jobSpecHash(wrongShapes))).rejects.toMatchObject({ code: 'job_not_found' })
        await expect(jobs.progress(jobSpecHash(missing))).rejects.toMatchObject({ code: 'job_not_found' })
      })
    })

    describe('leases', () => {
      it('leases units in order, from the round checkpoint, for the lease TTL', async () => {
        const ctx = await newJob()
        const first = leased(await ctx.jobs.lease(ctx.jobId, alice.address.toLowerCase()))
        expect(first.contributor).toBe(alice.address)
        expect(first.expiresAt).toBe(T0 + TTL_MS)
        expect(first.unit).toEqual({ jobId: ctx.jobId, round: 0, unit: 0, inputHash: ctx.spec.model.initialWeights })
        ctx.clock.t += 1000
        const second = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        expect(second.unit.unit).toBe(1)
        expect(second.expiresAt).toBe(T0 + 1000 + TTL_MS)
        expect(second.id).not.toBe(first.id)
      })

      it('answers wait when every unit is leased, with a retry hint bounded by the next expiry', async () => {
        const ctx = await newJob()
        leased(await ctx.jobs.lease(ctx.jobId, alice.address)) // expires at T0 + 10 s
        ctx.clock.t += 1000
        leased(await ctx.jobs.lease(ctx.jobId, bob.address))
        const waiting = await ctx.jobs.lease(ctx.jobId, carol.address)
        if (waiting.status !== 'wait') throw new Error(`expected wait, got ${waiting.status}`)
        expect(waiting.reason).toMatch(/every unit of round 0 is leased/)
        // 9 s to the next expiry: the hint is the service's cap, somewhere between 0.25 s and 5 s.
        const cap = waiting.retryAfterMs
        expect(cap).toBeGreaterThanOrEqual(250)
        expect(cap).toBeLessThanOrEqual(5000)
        ctx.clock.t = T0 + 9500
        expect(await ctx.jobs.lease(ctx.jobId, carol.address)).toMatchObject({ status: 'wait', retryAfterMs: Math.min(cap, 500) })
        ctx.clock.t = T0 + 9990
        expect(await ctx.jobs.lease(ctx.jobId, carol.address)).toMatchObject({ status: 'wait', retryAfterMs: 250 })
      })

      it('bases the retry hint on live leases only, not on units already accepted', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address)) // expires T0 + 10 s
        ctx.clock.t = T0 + 4000
        leased(await ctx.jobs.lease(ctx.jobId, bob.address)) // expires T0 + 14 s
        const first = await ctx.jobs.lease(ctx.jobId, carol.address)
        if (first.status !== 'wait') throw new Error(`expected wait, got ${first.status}`)
        const cap = first.retryAfterMs
        ctx.clock.t = T0 + 5000
        await ctx.submit({ lease: a, account: alice })
        // Unit 0 is accepted; its old expiry (0.5 s away) is irrelevant: the only lease that can come
        // back is bob's, 4.5 s away.
        ctx.clock.t = T0 + 9500
        expect(await ctx.jobs.lease(ctx.jobId, carol.address)).toMatchObject({ status: 'wait', retryAfterMs: Math.min(cap, 4500) })
        expect(Math.min(cap, 4500)).toBeGreaterThan(500)
        // Past unit 0's old expiry, the hint does not collapse to the minimum either.
        ctx.clock.t = T0 + 12_000
        expect(await ctx.jobs.lease(ctx.jobId, carol.address)).toMatchObject({ status: 'wait', retryAfterMs: Math.min(cap, 2000) })
      })

      it('holds back every unit of a paid job when no chain can fund it, and says why', async () => {
        const jobs = new JobService({ db, blobs, domain: TEST_DOMAIN, now: () => T0, random: NEVER_SAMPLED })
        const spec = parseJobSpec({ ...jobVariant(base.spec, `${engine.name} paid job ${++jobCounter}`), payment: { pricePerUnit: '5', budget: '30', requester: dave.address } })
        const jobId = await jobs.createJob(spec, base.blobs)
        const response = await jobs.lease(jobId, alice.address)
        expect(response).toMatchObject({ status: 'wait', reason: expect.stringMatching(/without a chain/) })
        expect((await jobs.progress(jobId)).acceptedUnits).toBe(0)
        const units = await db.query(`SELECT 1 FROM units WHERE job_id = $1 AND status <> 'open'`, [jobId])
        expect(units).toHaveLength(0)
      })

      it('refuses a malformed contributor address and an unknown job', async () => {
        const ctx = await newJob()
        for (const contributor of [undefined, 42, '0x1234', 'alice']) {
          await expect(ctx.jobs.lease(ctx.jobId, contributor)).rejects.toMatchObject({ code: 'malformed_request' })
        }
        await expect(ctx.jobs.lease(`0x${'cd'.repeat(32)}`, alice.address)).rejects.toMatchObject({ code: 'job_not_found' })
        // Nothing was leased by the refused requests.
        expect(leased(await ctx.jobs.lease(ctx.jobId, alice.address)).unit.unit).toBe(0)
      })

      it('puts an expired lease back in the queue: another contributor gets the same unit, the old lease is refused', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const b = leased(await ctx.jobs.lease(ctx.jobId, bob.address))
        expect((await ctx.jobs.lease(ctx.jobId, carol.address)).status).toBe('wait')

        ctx.clock.t = T0 + TTL_MS + 1
        const c = leased(await ctx.jobs.lease(ctx.jobId, carol.address))
        expect(c.unit).toEqual(a.unit)
        expect(c.id).not.toBe(a.id)
        expect(c.expiresAt).toBe(ctx.clock.t + TTL_MS)

        const late = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        await expectRefused(ctx, 'lease_expired', () => ctx.jobs.submit(a.id, late.body), /expired/)
        expect(await blobs.has(late.outputHash)).toBe(false)

        // The new holder's submission is accepted; the other expired unit goes to the next asker.
        const { result } = await ctx.submit({ lease: c, account: carol })
        expect(result).toEqual({ accepted: true, round: 0, unit: 0, roundClosed: false })
        const d = leased(await ctx.jobs.lease(ctx.jobId, dave.address))
        expect(d.unit).toEqual(b.unit)
        await expectRefused(ctx, 'lease_expired', async () => (await ctx.submit({ lease: b, account: bob, seed: uniqueSeed() })).result)
      })

      it('refuses a submission that arrives at or after the lease expiry, even if nobody took the unit', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        ctx.clock.t = a.expiresAt
        await expectRefused(ctx, 'lease_expired', () => ctx.jobs.submit(a.id, sub.body))
        ctx.clock.t = a.expiresAt - 1
        expect((await ctx.jobs.submit(a.id, sub.body)).accepted).toBe(true)
      })

      it('never hands out the same unit twice to concurrent lease requests', async () => {
        const ctx = await newJob({ unitsPerRound: 6 })
        // Twenty addresses, so that the per-address cap on live leases plays no part in the race.
        const people = Array.from({ length: 20 }, () => privateKeyToAccount(generatePrivateKey()))
        const race = async () => {
          const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => ctx.jobs.lease(ctx.jobId, people[i % people.length]!.address)))
          const leases = answers.filter((a) => a.status === 'leased').map((a) => leased(a))
          expect(answers.filter((a) => a.status === 'wait')).toHaveLength(14)
          return leases
        }
        const first = await race()
        expect(first.map((l) => l.unit.unit).sort()).toEqual([0, 1, 2, 3, 4, 5])
        expect(new Set(first.map((l) => l.id)).size).toBe(6)

        // Every lease expires; the next race again hands each unit out once.
        ctx.clock.t += TTL_MS
        const second = await race()
        expect(second.map((l) => l.unit.unit).sort()).toEqual([0, 1, 2, 3, 4, 5])

        const rows = await db.query<{ unit: number; lease_id: string; leases_issued: number }>(
          `SELECT unit, lease_id, leases_issued FROM units WHERE job_id = $1 AND round = 0 ORDER BY unit`,
          [ctx.jobId],
        )
        expect(rows.map((r) => Number(r.leases_issued))).toEqual([2, 2, 2, 2, 2, 2])
        expect(new Set(rows.map((r) => r.lease_id))).toEqual(new Set(second.map((l) => l.id)))
        const [{ count }] = (await db.query<{ count: string }>(`SELECT count(*) AS count FROM attempts WHERE job_id = $1`, [ctx.jobId])) as [
          { count: string },
        ]
        expect(Number(count)).toBe(12)
      })
    })

    describe('submissions', () => {
      it('accepts valid submissions and closes the round after K of them', async () => {
        const ctx = await newJob()
        const progressEvents: string[] = []
        ctx.jobs.events.on('progress', (id: string) => progressEvents.push(id))
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const b = leased(await ctx.jobs.lease(ctx.jobId, bob.address))
        const ua = testUpdate(base.shapes, 3)
        const ub = testUpdate(base.shapes, -2)

        ctx.clock.t = T0 + 2000
        const first = await ctx.submit({ lease: a, account: alice, update: ua, trainLoss: 1.5 })
        expect(first.result).toEqual({ accepted: true, round: 0, unit: 0, roundClosed: false })
        expect(await blobs.get(first.submission.outputHash)).toEqual(encodeTensorList(ua))
        let progress = await ctx.jobs.progress(ctx.jobId)
        expect(progress).toMatchObject({ round: 0, acceptedThisRound: 1, acceptedUnits: 1, history: [] })
        expect(progress.contributors).toMatchObject([{ address: alice.address, acceptedUnits: 1, lastSeen: T0 + 2000, reputation: { address: alice.address, banned: false } }])
        expect(progressEvents).toEqual([ctx.jobId])

        ctx.clock.t = T0 + 3000
        const second = await ctx.submit({ lease: b, account: bob, update: ub, trainLoss: 2.5 })
        expect(second.result).toEqual({ accepted: true, round: 0, unit: 1, roundClosed: true })

        // The next checkpoint: C_0 + mean(Δ), computed two ways.
        const expected = hashTensorList(
          applyAveragedUpdate(
            base.initial,
            [ua, ub].map((update) => ({ update, examples: examplesPerUnit(ctx.spec.training) })),
            ctx.spec.training.outerLearningRate,
          ),
        )
        expect(hashTensorList(meanByHand(base.initial, [ua, ub])).hash).toBe(expected.hash)
        progress = await ctx.jobs.progress(ctx.jobId)
        expect(progress).toMatchObject({ status: 'active', round: 1, acceptedThisRound: 0, acceptedUnits: 2, checkpoint: expected.hash })
        expect(await blobs.get(expected.hash)).toEqual(expected.bytes)
        expect(progress.history).toHaveLength(1)
        const record = progress.history[0]!
        expect(record).toMatchObject({
          round: 0,
          inputHash: ctx.spec.model.initialWeights,
          outputHash: expected.hash,
          closedAt: T0 + 3000,
          trainLoss: 2,
          units: 2,
        })
        expect(Number.isFinite(record.heldOutLoss)).toBe(true)
        expect(record.heldOutLoss).toBeGreaterThan(0)
        expect(record.heldOutAccuracy).toBeGreaterThanOrEqual(0)
        expect(record.heldOutAccuracy).toBeLessThanOrEqual(1)
        expect(progress.contributors).toMatchObject([
          { address: alice.address, acceptedUnits: 1, lastSeen: T0 + 2000 },
          { address: bob.address, acceptedUnits: 1, lastSeen: T0 + 3000 },
        ].sort((x, y) => (x.address < y.address ? -1 : 1)))
        expect(progressEvents.length).toBeGreaterThanOrEqual(2)
        expect((await ctx.jobs.getJob(ctx.jobId)).checkpoint).toBe(expected.hash)

        // Round 1 starts from the new checkpoint.
        const next = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        expect(next.unit).toEqual({ jobId: ctx.jobId, round: 1, unit: 0, inputHash: expected.hash })
      })

      it('records the signature, device class and examples of an accepted unit', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const { submission } = await ctx.submit({ lease: a, account: alice, claim: { deviceClass: 'webgpu|test/arch|node|k' } })
        const [row] = await db.query<Record<string, unknown>>(`SELECT * FROM units WHERE job_id = $1 AND round = 0 AND unit = 0`, [ctx.jobId])
        expect(row).toMatchObject({
          status: 'accepted',
          lease_id: a.id,
          leased_to: alice.address,
          output_hash: submission.outputHash,
          device_class: 'webgpu|test/arch|node|k',
        })
        expect(Number(row!.examples)).toBe(examplesPerUnit(ctx.spec.training))
        expect(String(row!.signature)).toMatch(/^0x[0-9a-f]{130}$/)
      })

      it('refuses a forged signature (signed by another key in A\'s name)', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const impostor = { address: alice.address, signTypedData: bob.signTypedData }
        const forged = await makeSubmission({ lease: a, account: alice, signer: impostor, shapes: base.shapes, seed: uniqueSeed() })
        await expectRefused(ctx, 'bad_signature', () => ctx.jobs.submit(a.id, forged.body), new RegExp(`recovers to ${bob.address}`))
        expect(await blobs.has(forged.outputHash)).toBe(false)
        // A's lease is untouched: A's own claim is accepted afterwards.
        expect((await ctx.submit({ lease: a, account: alice })).result.accepted).toBe(true)
      })

      it('refuses a claim signed for another chain or contract', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        for (const domain of [
          { ...TEST_DOMAIN, chainId: 1 },
          { ...TEST_DOMAIN, verifyingContract: bob.address },
        ]) {
          const sub = await makeSubmission({ lease: a, account: alice, domain, shapes: base.shapes, seed: uniqueSeed() })
          await expectRefused(ctx, 'bad_signature', () => ctx.jobs.submit(a.id, sub.body))
        }
      })

      it('refuses a signature that does not recover at all', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes })
        const { claim } = await signWorkClaim(alice, sub.claim, TEST_DOMAIN)
        const body = encodeSubmission({ claim, signature: `0x${'00'.repeat(65)}` }, sub.updateBytes)
        await expectRefused(ctx, 'bad_signature', () => ctx.jobs.submit(a.id, body), /cannot be recovered/)
      })

      it('refuses a replayed claim, before and after its round closed', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const b = leased(await ctx.jobs.lease(ctx.jobId, bob.address))
        const { submission } = await ctx.submit({ lease: a, account: alice })
        await expectRefused(ctx, 'already_submitted', () => ctx.jobs.submit(a.id, submission.body), /replayed/)
        await ctx.submit({ lease: b, account: bob, seed: 2 })
        expect((await ctx.jobs.progress(ctx.jobId)).round).toBe(1)
        await expectRefused(ctx, 'already_submitted', () => ctx.jobs.submit(a.id, submission.body))
      })

      it("refuses a claim for someone else's lease", async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        // Bob signs a valid claim of his own about alice's unit and sends it on alice's lease.
        const sub = await makeSubmission({ lease: a, account: bob, shapes: base.shapes, seed: uniqueSeed() })
        expect(sub.claim.contributor).toBe(bob.address)
        await expectRefused(ctx, 'lease_not_yours', () => ctx.jobs.submit(a.id, sub.body), new RegExp(`not a lease of ${bob.address}`))
        expect(await blobs.has(sub.outputHash)).toBe(false)
      })

      it('refuses a claim that names another unit, round or job than its lease', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        for (const claim of [{ unit: 1 }, { round: 1 }, { jobId: `0x${'ee'.repeat(32)}` as Hash }]) {
          const sub = await makeSubmission({ lease: a, account: alice, claim, shapes: base.shapes, seed: uniqueSeed() })
          await expectRefused(ctx, 'claim_mismatch', () => ctx.jobs.submit(a.id, sub.body))
        }
      })

      it('refuses a claim for a round that has closed', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const b = leased(await ctx.jobs.lease(ctx.jobId, bob.address))
        ctx.clock.t = T0 + TTL_MS + 1
        const c = leased(await ctx.jobs.lease(ctx.jobId, carol.address))
        const d = leased(await ctx.jobs.lease(ctx.jobId, dave.address))
        expect([c.unit.unit, d.unit.unit]).toEqual([a.unit.unit, b.unit.unit])
        await ctx.submit({ lease: c, account: carol })
        expect((await ctx.submit({ lease: d, account: dave, seed: 2 })).result.roundClosed).toBe(true)
        expect((await ctx.jobs.progress(ctx.jobId)).round).toBe(1)

        const late = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        await expectRefused(ctx, 'stale_round', () => ctx.jobs.submit(a.id, late.body), /round 0, the job is at round 1/)
        const lateB = await makeSubmission({ lease: b, account: bob, shapes: base.shapes, seed: uniqueSeed() })
        await expectRefused(ctx, 'stale_round', () => ctx.jobs.submit(b.id, lateB.body))
      })

      it.each([NaN, Infinity, -Infinity])('refuses an update holding %s', async (bad) => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const update = testUpdate(base.shapes, uniqueSeed())
        update.values[2]![7] = bad
        const sub = await makeSubmission({ lease: a, account: alice, update })
        await expectRefused(ctx, 'non_finite_update', () => ctx.jobs.submit(a.id, sub.body), /tensor 2 holds .* at index 7/)
        expect(await blobs.has(sub.outputHash)).toBe(false)
      })

      it('refuses an update of the wrong shapes', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const variants = [
          base.shapes.slice(0, 3), // a tensor missing
          base.shapes.map((s, i) => (i === 0 ? [s[1]!, s[0]!] : s)), // transposed kernel
          [[base.shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0)]], // right size, one flat tensor
        ]
        for (const shapes of variants) {
          const sub = await makeSubmission({ lease: a, account: alice, shapes, seed: uniqueSeed() })
          await expectRefused(ctx, 'wrong_shapes', () => ctx.jobs.submit(a.id, sub.body))
        }
      })

      it('refuses update bytes that are not a tensor list', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, updateBytes: new TextEncoder().encode('not tensors!') })
        await expectRefused(ctx, 'malformed_submission', () => ctx.jobs.submit(a.id, sub.body), /^update: /)
      })

      it('refuses an output hash that does not match the update bytes', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const other = hashTensorList(testUpdate(base.shapes, uniqueSeed()))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed(), claim: { outputHash: other.hash } })
        await expectRefused(ctx, 'hash_mismatch', () => ctx.jobs.submit(a.id, sub.body))
        expect(await blobs.has(sub.outputHash)).toBe(false)
        // Swapping the update behind a correctly signed claim is caught the same way.
        const honest = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        const swapped = encodeSubmission(
          await signWorkClaim(alice, honest.claim, TEST_DOMAIN),
          encodeTensorList(testUpdate(base.shapes, uniqueSeed())),
        )
        await expectRefused(ctx, 'hash_mismatch', () => ctx.jobs.submit(a.id, swapped))
      })

      it("refuses a claim whose input hash is not the round's checkpoint", async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed(), claim: { inputHash: `0x${'12'.repeat(32)}` as Hash } })
        await expectRefused(ctx, 'wrong_input', () => ctx.jobs.submit(a.id, sub.body), /is not round 0's checkpoint/)
        expect((await ctx.submit({ lease: a, account: alice })).result.accepted).toBe(true)
      })

      it('refuses an unknown lease', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        await expectRefused(ctx, 'lease_not_found', () => ctx.jobs.submit('00000000-0000-4000-8000-000000000000', sub.body))
      })

      it('refuses a malformed body', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const valid = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        const badClaim = new Uint8Array(valid.body)
        // Corrupt the claim JSON's `"jobId":"0x` so the field no longer parses.
        const text = new TextDecoder().decode(badClaim)
        const at = text.indexOf('"jobId":"0x') + '"jobId":"'.length
        badClaim[at] = 'X'.charCodeAt(0)
        for (const [body, message] of [
          [new Uint8Array(), /shorter than its 8-byte header/],
          [new TextEncoder().encode('hello, coordinator'), /does not start with 'TTS1'/],
          [valid.updateBytes, /does not start with 'TTS1'/],
          [badClaim, /claim\.jobId/],
        ] as const) {
          await expectRefused(ctx, 'malformed_submission', () => ctx.jobs.submit(a.id, body), message)
        }
        expect((await ctx.jobs.submit(a.id, valid.body)).accepted).toBe(true)
      })

      it('accepts exactly one of concurrent identical submissions', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes, seed: uniqueSeed() })
        const results = await Promise.allSettled([1, 2, 3].map(() => ctx.jobs.submit(a.id, sub.body)))
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'already_submitted' })
        }
        expect((await ctx.jobs.progress(ctx.jobId)).acceptedUnits).toBe(1)
      })

      it('closes the round exactly once when the last submissions race', async () => {
        const ctx = await newJob({ unitsPerRound: 3 })
        const people = [alice, bob, carol]
        const leases: Lease[] = []
        for (const p of people) leases.push(leased(await ctx.jobs.lease(ctx.jobId, p.address)))
        const subs = await Promise.all(
          leases.map((lease, i) => makeSubmission({ lease, account: people[i]!, shapes: base.shapes, seed: uniqueSeed() })),
        )
        const results = await Promise.all(leases.map((lease, i) => ctx.jobs.submit(lease.id, subs[i]!.body)))
        expect(results.every((r) => r.accepted)).toBe(true)
        expect(results.some((r) => r.roundClosed)).toBe(true)
        const progress = await ctx.jobs.progress(ctx.jobId)
        expect(progress.round).toBe(1)
        expect(progress.history).toHaveLength(1)
        expect(progress.history[0]!.units).toBe(3)
        const updates = subs.map((s) => decodeTensorList(s.updateBytes))
        expect(progress.checkpoint).toBe(hashTensorList(meanByHand(base.initial, clipByHand(updates))).hash)
        expect(progress.history[0]!.clipped).toBe(1)
      })

      it('bounds the submission size a job accepts by its model', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const sub = await makeSubmission({ lease: a, account: alice, shapes: base.shapes })
        const max = await ctx.jobs.maxSubmissionBytes(a.id)
        if (max === null) throw new Error('no size bound for a live lease')
        expect(max).toBeGreaterThanOrEqual(sub.body.byteLength)
        expect(max).toBeLessThan(sub.body.byteLength + MAX_CLAIM_JSON_BYTES)
        expect(await ctx.jobs.maxSubmissionBytes('no-such-lease')).toBeNull()
      })
    })

    describe('rounds', () => {
      it('finishes the job after its last round', async () => {
        const ctx = await newJob({ rounds: 2 })
        const checkpoints: Hash[] = [ctx.spec.model.initialWeights]
        let checkpoint = base.initial
        for (let round = 0; round < 2; round++) {
          const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
          const b = leased(await ctx.jobs.lease(ctx.jobId, bob.address))
          expect([a.unit.round, b.unit.round]).toEqual([round, round])
          expect(a.unit.inputHash).toBe(checkpoints[round])
          const ua = testUpdate(base.shapes, 10 + round)
          const ub = testUpdate(base.shapes, 20 + round)
          await ctx.submit({ lease: a, account: alice, update: ua })
          await ctx.submit({ lease: b, account: bob, update: ub })
          checkpoint = meanByHand(checkpoint, [ua, ub])
          checkpoints.push(hashTensorList(checkpoint).hash)
        }
        expect(await ctx.jobs.lease(ctx.jobId, carol.address)).toEqual({ status: 'finished' })
        const progress = await ctx.jobs.progress(ctx.jobId)
        expect(progress).toMatchObject({ status: 'finished', round: 2, acceptedUnits: 4, checkpoint: checkpoints[2] })
        expect(progress.history.map((r) => [r.inputHash, r.outputHash])).toEqual([
          [checkpoints[0], checkpoints[1]],
          [checkpoints[1], checkpoints[2]],
        ])
        expect(progress.contributors.map((c) => c.acceptedUnits)).toEqual([2, 2])
        expect((await ctx.jobs.getJob(ctx.jobId)).status).toBe('finished')
        // No units are opened past the last round.
        const rows = await db.query(`SELECT 1 FROM units WHERE job_id = $1 AND round >= 2`, [ctx.jobId])
        expect(rows).toHaveLength(0)
        // Closing a round again is a no-op.
        await ctx.jobs.closeRound(ctx.jobId, 1)
        expect((await ctx.jobs.progress(ctx.jobId)).history).toHaveLength(2)
      })

      it('recovers a round whose aggregation was cut off after its K-th update was accepted', async () => {
        const crashing = new CrashingBlobStore(blobDir)
        const ctx = await newJob({}, crashing)
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        const b = leased(await ctx.jobs.lease(ctx.jobId, bob.address))
        const ua = testUpdate(base.shapes, uniqueSeed())
        const ub = testUpdate(base.shapes, uniqueSeed())
        await ctx.submit({ lease: a, account: alice, update: ua })

        // The K-th update is accepted (committed), then aggregation dies reading the checkpoint.
        crashing.crashOn = ctx.spec.model.initialWeights
        await expect(ctx.submit({ lease: b, account: bob, update: ub })).rejects.toThrow(/simulated crash/)
        let progress = await ctx.jobs.progress(ctx.jobId)
        expect(progress).toMatchObject({ round: 0, acceptedThisRound: 2, acceptedUnits: 2, history: [] })
        const waiting = await ctx.jobs.lease(ctx.jobId, carol.address)
        expect(waiting).toMatchObject({ status: 'wait', retryAfterMs: 250 })
        if (waiting.status === 'wait') expect(waiting.reason).toMatch(/being aggregated/)

        // A coordinator restarted on the same store closes the round at start-up.
        const restarted = new JobService({ db, blobs: new BlobStore(blobDir), domain: TEST_DOMAIN, now: () => ctx.clock.t, random: NEVER_SAMPLED })
        await restarted.recover()
        const expected = hashTensorList(meanByHand(base.initial, [ua, ub]))
        progress = await restarted.progress(ctx.jobId)
        expect(progress).toMatchObject({ round: 1, acceptedThisRound: 0, acceptedUnits: 2, checkpoint: expected.hash })
        expect(progress.history).toHaveLength(1)
        expect(progress.history[0]).toMatchObject({ round: 0, inputHash: ctx.spec.model.initialWeights, outputHash: expected.hash, units: 2 })
        expect(await blobs.get(expected.hash)).toEqual(expected.bytes)
        expect(leased(await restarted.lease(ctx.jobId, carol.address)).unit).toMatchObject({ round: 1, unit: 0, inputHash: expected.hash })

        // Recovering or closing again changes nothing.
        crashing.crashOn = null
        await restarted.recover()
        await ctx.jobs.closeRound(ctx.jobId, 0)
        const after = await restarted.progress(ctx.jobId)
        expect(after.history).toEqual(progress.history)
        expect(after.checkpoint).toBe(expected.hash)
      })

      it('recover() leaves rounds that are not complete alone', async () => {
        const ctx = await newJob()
        const a = leased(await ctx.jobs.lease(ctx.jobId, alice.address))
        await ctx.submit({ lease: a, account: alice })
        const before = await ctx.jobs.progress(ctx.jobId)
        await ctx.jobs.recover()
        await ctx.jobs.closeRound(ctx.jobId, 0)
        expect(await ctx.jobs.progress(ctx.jobId)).toEqual(before)
      })
    })
  })
}
