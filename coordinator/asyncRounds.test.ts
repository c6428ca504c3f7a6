import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { beforeAll, describe, expect, it } from 'vitest'
import { decodeTensorList, hashTensorList, type TrainingConfig } from '../src/protocol/index.ts'
import { clipToMedianNorm } from '../src/training/aggregate.ts'
import { outerStep } from '../src/training/outerOptimizer.ts'
import { threadAggregator, type Aggregator } from './aggregation/aggregator.ts'
import { CoordinatorError } from './errors.ts'
import { JobService } from './jobs.ts'
import { TEST_ENGINES, noteSkippedEngines, useMigratedStore } from './testing/engines.ts'
import {
  TEST_DOMAIN,
  jobVariant,
  leased,
  makeSubmission,
  testJobBase,
  testUpdate,
  type TestJobBase,
} from './testing/fixtures.ts'

const T0 = 1_800_000_000_000
const NEVER_SAMPLED = () => 1

/** Asynchronous rounds (spec.training.maxStaleness ≥ 1): what contributors and the requester see. */
for (const engine of TEST_ENGINES) {
  describe.skipIf(engine.skipReason !== null)(`asynchronous rounds on ${engine.name}`, () => {
    const store = useMigratedStore(engine, 'tabtrain-async')
    let base: TestJobBase
    let jobCounter = 0

    beforeAll(async () => {
      base = await testJobBase()
    })

    async function newJob(training: Partial<TrainingConfig> = {}, aggregator?: Aggregator) {
      const clock = { t: T0 }
      const jobs = new JobService({ db: store.db, blobs: store.blobs, domain: TEST_DOMAIN, now: () => clock.t, random: NEVER_SAMPLED, aggregator })
      const spec = jobVariant(base.spec, `async ${engine.name} ${++jobCounter}`, { unitsPerRound: 2, maxStaleness: 2, rounds: 6, ...training })
      const jobId = await jobs.createJob(spec, base.blobs)
      let seed = 1000 * jobCounter
      /** Answers `lease` with a fresh deterministic update; returns the update sent. */
      const answer = async (lease: ReturnType<typeof leased>, account: ReturnType<typeof privateKeyToAccount>) => {
        const update = testUpdate(base.shapes, ++seed)
        const submission = await makeSubmission({ lease, account, update, shapes: base.shapes })
        return { update, result: await jobs.submit(lease.id, submission.body) }
      }
      /** Waits for the close an answer may have started in the background (closes of a job run in turn). */
      const settled = async () => {
        await jobs.closeRound(jobId, 'current')
        return jobs.progress(jobId)
      }
      return { jobs, jobId, spec, clock, answer, settled }
    }

    const contributors = (n: number) => Array.from({ length: n }, () => privateKeyToAccount(generatePrivateKey()))

    it('every contributor that asks gets a unit: the round grows with the pool instead of making tabs wait', async () => {
      const ctx = await newJob()
      const pool = contributors(8)
      const leases = await Promise.all(pool.map(async (a) => leased(await ctx.jobs.lease(ctx.jobId, a.address)).unit))
      expect(leases.map((u) => u.round)).toEqual(Array(8).fill(0))
      expect(new Set(leases.map((u) => u.unit)).size).toBe(8)
      expect(leases.every((u) => u.inputHash === ctx.spec.model.initialWeights)).toBe(true)
    })

    it('a round closes once it holds an answer per live contributor (at least K), averaging exactly those', async () => {
      const ctx = await newJob()
      const [a, b, c] = contributors(3)
      const la = leased(await ctx.jobs.lease(ctx.jobId, a!.address))
      const lb = leased(await ctx.jobs.lease(ctx.jobId, b!.address))
      const lc = leased(await ctx.jobs.lease(ctx.jobId, c!.address))
      const first = await ctx.answer(la, a!)
      const second = await ctx.answer(lb, b!)
      // K = 2 answers are in, but c still holds a live lease: the pool is 3, so the round waits for c. The job
      // page shows it the same way: 2 answers in, 3 needed.
      expect(second.result).toMatchObject({ accepted: true, roundClosed: false })
      expect(await ctx.settled()).toMatchObject({ round: 0, asynchronous: true, acceptedThisRound: 2, roundSize: 3 })
      const third = await ctx.answer(lc, c!)
      // The contributor is answered before the close, which runs behind the answer.
      expect(third.result).toMatchObject({ accepted: true, roundClosed: false })
      const progress = await ctx.settled()
      expect(progress.round).toBe(1)
      const expected = hashTensorList(
        outerStep({
          checkpoint: base.initial,
          momentum: null,
          updates: clipToMedianNorm([first, second, third].map((x) => ({ update: x.update, examples: 1 }))).updates,
          training: ctx.spec.training,
        }).next,
      )
      expect(progress.checkpoint).toBe(expected.hash)
      expect(progress.history[0]).toMatchObject({ round: 0, units: 3 })
    })

    it('an answer computed from an earlier checkpoint is averaged into the round open when it arrives, up to S rounds late', async () => {
      const ctx = await newJob({ unitsPerRound: 1, maxStaleness: 1 })
      const [a, b] = contributors(2)
      const slow = leased(await ctx.jobs.lease(ctx.jobId, a!.address))
      // b alone closes round 0 (a's live lease counts in the pool, so b answers twice).
      await ctx.answer(leased(await ctx.jobs.lease(ctx.jobId, b!.address)), b!)
      const second = leased(await ctx.jobs.lease(ctx.jobId, b!.address))
      expect(second.unit.round).toBe(0)
      await ctx.answer(second, b!)
      const round1Input = (await ctx.settled()).checkpoint
      expect(round1Input).not.toBe(ctx.spec.model.initialWeights)

      // a's unit of round 0, one round late: accepted, and averaged into round 1 onto round 1's checkpoint.
      expect(slow.unit.inputHash).toBe(ctx.spec.model.initialWeights)
      const late = await ctx.answer(slow, a!)
      expect(late.result).toMatchObject({ accepted: true, round: 0 })
      const progress = await ctx.settled()
      expect(progress.round).toBe(2)
      const expected = outerStep({ checkpoint: decodeTensorList(await store.blobs.get(round1Input)), momentum: null, updates: [{ update: late.update, examples: 1 }], training: ctx.spec.training })
      expect(progress.checkpoint).toBe(hashTensorList(expected.next).hash)
    })

    it('an answer more than S rounds old is refused as stale_round, and the refusal says how old it may be', async () => {
      const ctx = await newJob({ unitsPerRound: 1, maxStaleness: 1 })
      const [a, b] = contributors(2)
      const slow = leased(await ctx.jobs.lease(ctx.jobId, a!.address))
      // a's lease stays live (so a is in the pool and each round needs two answers); b answers four times,
      // closing rounds 0 and 1, while a's unit of round 0 is still out.
      for (let i = 0; i < 4 && (await ctx.settled()).round < 2; i++) {
        await ctx.answer(leased(await ctx.jobs.lease(ctx.jobId, b!.address)), b!)
      }
      expect((await ctx.settled()).round).toBe(2)
      const error = await ctx.answer(slow, a!).then(
        () => null,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(CoordinatorError)
      expect(error).toMatchObject({ code: 'stale_round' })
      expect((error as Error).message).toMatch(/at most 1 round\(s\) old/)
    })

    it('leases and submissions are answered while a round is being aggregated', async () => {
      // The thread aggregator, held at a gate until the test has seen the other requests answered.
      let open!: () => void
      const gate = new Promise<void>((resolve) => (open = resolve))
      let started!: () => void
      const aggregating = new Promise<void>((resolve) => (started = resolve))
      const thread = threadAggregator()
      const gated: Aggregator = {
        async aggregate(request, blob) {
          started()
          await gate
          return thread.aggregate(request, blob)
        },
      }
      const ctx = await newJob({ unitsPerRound: 1 }, gated)
      const [a, b] = contributors(2)
      const la = leased(await ctx.jobs.lease(ctx.jobId, a!.address))
      expect((await ctx.answer(la, a!)).result).toMatchObject({ accepted: true, roundClosed: false })
      await aggregating
      // Mid-close: a new lease is granted and its answer accepted at once (it waits for the next round).
      const lb = leased(await ctx.jobs.lease(ctx.jobId, b!.address))
      expect(lb.unit.round).toBe(0)
      expect((await ctx.answer(lb, b!)).result).toMatchObject({ accepted: true, roundClosed: false })
      expect((await ctx.jobs.progress(ctx.jobId)).round).toBe(0)
      open()
      // The first close lands, and b's answer, one round stale, closes round 1 behind it.
      await expect.poll(async () => (await ctx.settled()).round).toBe(2)
    })

    it('a synchronous job (maxStaleness absent) keeps exactly K units a round and makes extra tabs wait', async () => {
      const ctx = await newJob({ maxStaleness: undefined, unitsPerRound: 2 })
      const pool = contributors(3)
      const answers = []
      for (const a of pool) answers.push(await ctx.jobs.lease(ctx.jobId, a.address))
      expect(answers.map((r) => r.status)).toEqual(['leased', 'leased', 'wait'])
    })
  })
}

noteSkippedEngines('coordinator/asyncRounds.test.ts')
