import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Address } from 'viem'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXACT_KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import {
  DEFAULT_VERIFICATION,
  checkRate,
  examplesPerUnit,
  hashTensorList,
  parseJobSpec,
  type JobSpec,
  type Lease,
  type TensorList,
  type TrainingConfig,
  type WorkUnit,
} from '../../src/protocol/index.ts'
import { applyAveragedUpdate, clipToMedianNorm } from '../../src/training/aggregate.ts'
import { BlobStore } from '../blobs.ts'
import { migrate, type Database } from '../db.ts'
import { JobService, type StakeOracle } from '../jobs.ts'
import type { AttemptRow } from '../rows.ts'
import { TEST_ENGINES, noteSkippedEngines, type RunningEngine } from '../testing/engines.ts'
import { TEST_DOMAIN, leased, makeSubmission, testJobBase, testUpdate, type TestJobBase } from '../testing/fixtures.ts'
import { CLASS_CHECK_WAIT_MS, PEER_CHECK_WAIT_MS } from './checks.ts'
import type { Referee, RefereeResult } from './referee.ts'
import { VOUCHING_CHECKS } from './reputation.ts'

noteSkippedEngines('coordinator/verification/checks.test.ts')

/**
 * The verification rules of docs/verification.md as a user sees them: which answers are served, when a
 * round closes, who is banned, what a rebuilt round holds, how often an address is checked. Made-up updates,
 * a scripted `random` and a referee that answers what the test says it computed.
 */

const T0 = 1_800_000_000_000
const TTL_MS = 10_000

/** `decideCheck` draws once against the address's check rate (below it: a peer check), then, only if not sampled, once against the canary rate. */
const NOT_SAMPLED = [0.99, 0.99]
const PEER = [0]
const CANARY = [0.99, 0]

/** A queue of draws for `random`: a draw the test did not script fails the submission that asked for it. */
class Draws {
  private readonly queue: number[] = []
  push(draws: readonly number[]) {
    this.queue.push(...draws)
  }
  readonly next = (): number => {
    const draw = this.queue.shift()
    if (draw === undefined) throw new Error('the coordinator drew a number the test did not script')
    return draw
  }
  get left(): number {
    return this.queue.length
  }
}

const unitKey = (u: { jobId: string; round: number; unit: number }) => `${u.jobId}/${u.round}/${u.unit}`

/** The coordinator's own re-execution, answering what the test scripted for each unit. */
class FakeReferee implements Referee {
  readonly calls: WorkUnit[] = []
  private readonly answers = new Map<string, { update: TensorList; deviceClass: string }>()

  answer(unit: { jobId: string; round: number; unit: number }, update: TensorList, deviceClass: string): void {
    this.answers.set(unitKey(unit), { update, deviceClass })
  }

  callsFor(unit: { jobId: string; round: number; unit: number }): number {
    return this.calls.filter((c) => unitKey(c) === unitKey(unit)).length
  }

  async compute(_spec: JobSpec, unit: WorkUnit): Promise<RefereeResult> {
    this.calls.push(unit)
    const scripted = this.answers.get(unitKey(unit))
    if (!scripted) throw new Error(`the test scripted no referee answer for ${unitKey(unit)}`)
    const { bytes, hash } = hashTensorList(scripted.update)
    return { outputHash: hash, updateBytes: bytes, deviceClass: scripted.deviceClass, ms: 1 }
  }

  async close(): Promise<void> {}
}

/** A blob store that fails reading one hash: a coordinator dying in the middle of a rebuild. */
class CrashingBlobStore extends BlobStore {
  crashOn: string | null = null
  override async get(hash: string): Promise<Uint8Array> {
    if (hash === this.crashOn) throw new Error('simulated crash during a rebuild')
    return super.get(hash)
  }
}

const fresh = (): PrivateKeyAccount => privateKeyToAccount(generatePrivateKey())

function scaled(update: TensorList, factor: number): TensorList {
  return { shapes: update.shapes, values: update.values.map((v) => Float32Array.from(v, (x) => x * factor)) }
}

/** The same update with one value moved by a relative 1e-4: another hash, a distance of about 1e-7. */
function nudged(update: TensorList): TensorList {
  const values = update.values.map((v) => Float32Array.from(v))
  values[0]![0] = values[0]![0]! * (1 + 1e-4)
  return { shapes: update.shapes, values }
}

async function until(what: string, condition: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

for (const engine of TEST_ENGINES) {
  describe.skipIf(engine.skipReason !== null)(`verification on ${engine.name}`, () => {
    let running: RunningEngine
    let db: Database
    let blobDir: string
    let blobs: BlobStore
    let base: TestJobBase
    let jobCounter = 0
    let seedCounter = 500

    beforeAll(async () => {
      base = await testJobBase()
      running = await engine.start()
      db = await running.open()
      await migrate(db)
      blobDir = await mkdtemp(join(tmpdir(), 'tabtrain-checks-'))
      blobs = new BlobStore(blobDir)
    })

    afterAll(async () => {
      await db?.close()
      await running?.stop()
      if (blobDir) await rm(blobDir, { recursive: true, force: true })
    })

    const seed = () => ++seedCounter
    const update = () => testUpdate(base.shapes, seed())

    interface JobOptions {
      training?: Partial<TrainingConfig>
      kernelBundle?: string
      stakes?: StakeOracle
      /** False: a coordinator without a referee. */
      referee?: boolean
      blobs?: BlobStore
    }

    /** A fresh job with its own service, clock, draws and referee, on the shared store. */
    async function newJob(options: JobOptions = {}) {
      const clock = { t: T0 }
      const draws = new Draws()
      const referee = new FakeReferee()
      const store = options.blobs ?? blobs
      const service = (extra: { blobs?: BlobStore } = {}) =>
        new JobService({
          db,
          blobs: extra.blobs ?? store,
          domain: TEST_DOMAIN,
          now: () => clock.t,
          random: draws.next,
          referee: options.referee === false ? undefined : referee,
          stakes: options.stakes,
        })
      const jobs = service()
      const spec = parseJobSpec({
        ...base.spec,
        name: `${engine.name} verification job ${++jobCounter}`,
        training: { ...base.spec.training, ...options.training },
        ...(options.kernelBundle ? { kernelBundle: options.kernelBundle } : {}),
      })
      const jobId = await jobs.createJob(spec, base.blobs)
      /** A device class of this job: `backend|vendor/arch|engine|bundle`. */
      const cls = (backend: string) => `${backend}|test/arch|node-20|${spec.kernelBundle}`
      const lease = async (account: PrivateKeyAccount) => leased(await jobs.lease(jobId, account.address))
      const submit = async (lease: Lease, account: PrivateKeyAccount, tensors: TensorList, options: { draws?: readonly number[]; backend?: string } = {}) => {
        draws.push(options.draws ?? [])
        const submission = await makeSubmission({ lease, account, update: tensors, shapes: base.shapes, claim: { deviceClass: cls(options.backend ?? 'webgpu') } })
        const result = await jobs.submit(lease.id, submission.body)
        expect(draws.left, 'every scripted draw was used').toBe(0)
        return { result, hash: submission.outputHash }
      }
      const rep = (account: { address: Address }) => jobs.reputation(account.address)
      const progress = () => jobs.progress(jobId)
      const unit = (round: number, index: number) => jobs.unitRecord(jobId, round, index)
      const attempt = async (leaseId: string) => (await db.query<AttemptRow>(`SELECT * FROM attempts WHERE lease_id = $1`, [leaseId]))[0]!
      const disputes = (account: { address: Address }) =>
        db.query<Record<string, unknown>>(`SELECT * FROM disputes WHERE job_id = $1 AND contributor = $2 ORDER BY created_at, id`, [jobId, account.address])
      const banned = async (account: { address: Address }) => (await rep(account)).banned
      return { jobs, jobId, spec, clock, draws, referee, service, cls, lease, submit, rep, progress, unit, attempt, disputes, banned }
    }
    type Job = Awaited<ReturnType<typeof newJob>>

    /** C + mean(Δ) as the coordinator computes it: median-norm clipping, then the weighted average, in unit order. */
    const step = (spec: JobSpec, checkpoint: TensorList, updates: TensorList[]) =>
      applyAveragedUpdate(
        checkpoint,
        clipToMedianNorm(updates.map((u) => ({ update: u, examples: examplesPerUnit(spec.training) }))).updates,
        spec.training.outerLearningRate,
      )

    /** A side job whose units are all canaries the referee confirms: gives an address a record of clean checks. */
    let warm: Job | null = null
    async function earnCleanChecks(account: PrivateKeyAccount, n: number): Promise<void> {
      warm ??= await newJob({ training: { unitsPerRound: 64 } })
      const w = warm
      for (let i = 0; i < n; i++) {
        const before = (await w.rep(account)).checksPassed
        const l = await w.lease(account)
        const u = update()
        w.referee.answer(l.unit, u, w.cls('webgpu'))
        await w.submit(l, account, u, { draws: CANARY })
        await until('a canary to pass', async () => (await w.rep(account)).checksPassed === before + 1)
      }
    }

    describe('a sampled unit', () => {
      it('is not served while its check is pending, and its round waits for the check', async () => {
        const job = await newJob()
        const alice = fresh()
        const bob = fresh()
        const a0 = await job.lease(alice)
        const ua = update()
        const { hash: ha } = await job.submit(a0, alice, ua, { draws: PEER })
        expect(await job.unit(0, 0)).toEqual({ unit: a0.unit, status: 'checking', outputHash: null, contributor: null, deviceClass: null })
        expect(await job.jobs.isUnderCheck(ha)).toBe(true)

        // The primary's own address never gets its own unit to check: alice gets the open unit, then waits.
        const a1 = await job.lease(alice)
        expect(a1.unit.unit).toBe(1)
        expect((await job.attempt(a1.id)).kind).toBe('primary')
        const { result } = await job.submit(a1, alice, update(), { draws: NOT_SAMPLED })
        expect(result.roundClosed).toBe(false)
        expect(await job.jobs.lease(job.jobId, alice.address)).toMatchObject({ status: 'wait' })

        // Every unit has an answer, but the round waits for the check, also across ticks.
        await job.jobs.tick()
        let progress = await job.progress()
        expect(progress).toMatchObject({ round: 0, acceptedThisRound: 1, history: [] })
        expect(progress.verification).toMatchObject({ checksPending: 1, checksPassed: 0 })

        // Bob's lease is the check: it looks exactly like alice's lease of the same unit.
        job.clock.t += 1000
        const check = await job.lease(bob)
        expect((await job.attempt(check.id)).kind).toBe('check')
        expect(Object.keys(check).sort()).toEqual(Object.keys(a0).sort())
        expect(check.unit).toEqual(a0.unit)
        expect(check.unit.inputHash).toBe(job.spec.model.initialWeights)
        expect(check.expiresAt - job.clock.t).toBe(a0.expiresAt - T0)
        expect(check.contributor).toBe(bob.address)
        expect(await job.unit(0, 0)).toMatchObject({ status: 'checking', outputHash: null })

        // The check agrees; bob has no record, so the referee confirms, and then the round closes.
        job.referee.answer(a0.unit, ua, job.cls('cpu'))
        await job.submit(check, bob, ua)
        await until('the round to close', async () => (await job.progress()).round === 1)
        expect(await job.unit(0, 0)).toEqual({ unit: a0.unit, status: 'accepted', outputHash: ha, contributor: alice.address, deviceClass: job.cls('webgpu') })
        expect(await job.jobs.isUnderCheck(ha)).toBe(false)
        progress = await job.progress()
        expect(progress.verification).toMatchObject({ checksPending: 0, checksPassed: 1, checksFailed: 0, banned: [] })
      })

      it('passes when two answers of one class have equal hashes; a checker without a record is confirmed by the referee first', async () => {
        const job = await newJob()
        const voucher = fresh()
        await earnCleanChecks(voucher, VOUCHING_CHECKS)
        expect((await job.rep(voucher)).checksPassed).toBe(VOUCHING_CHECKS)

        // Round 0: the checker has a record, its agreement alone passes the unit.
        const alice = fresh()
        const carol = fresh()
        const a = await job.lease(alice)
        const c = await job.lease(carol)
        const ua = update()
        const { hash: ha } = await job.submit(a, alice, ua, { draws: PEER })
        await job.submit(c, carol, update(), { draws: NOT_SAMPLED })
        const check = await job.lease(voucher)
        expect(check.unit).toEqual(a.unit)
        await job.submit(check, voucher, ua)
        expect((await job.progress()).round).toBe(1)
        expect(job.referee.calls).toEqual([])
        expect((await job.rep(alice)).checksPassed).toBe(1)
        expect((await job.rep(voucher)).checksPassed).toBe(VOUCHING_CHECKS + 1)
        expect(await job.unit(0, 0)).toMatchObject({ status: 'accepted', outputHash: ha })
        expect((await job.progress()).round).toBe(1)

        // Round 1: the same agreement from a checker without a record goes to the referee, which passes both.
        const dave = fresh()
        const erin = fresh()
        const d = await job.lease(dave)
        const c1 = await job.lease(carol)
        const ud = update()
        await job.submit(d, dave, ud, { draws: PEER })
        await job.submit(c1, carol, update(), { draws: NOT_SAMPLED })
        const check1 = await job.lease(erin)
        expect(check1.unit).toEqual(d.unit)
        job.referee.answer(d.unit, ud, job.cls('cpu'))
        expect((await job.submit(check1, erin, ud)).result.roundClosed).toBe(false)
        await until('the round to close', async () => (await job.progress()).round === 2)
        expect(job.referee.callsFor(d.unit)).toBe(1)
        expect((await job.rep(dave)).checksPassed).toBe(1)
        expect((await job.rep(erin)).checksPassed).toBe(1)
        expect((await job.progress()).verification).toMatchObject({ checksPassed: 2, refereeRuns: 1, checksFailed: 0 })
      })
    })

    describe('disagreements', () => {
      it('bans a primary the referee proves wrong, files a verdict dispute and re-leases its unit to someone else', async () => {
        const job = await newJob()
        const [alice, bob, carol, dave] = [fresh(), fresh(), fresh(), fresh()]
        const a = await job.lease(alice)
        const c = await job.lease(carol)
        const lie = update()
        const honest = update()
        await job.submit(a, alice, lie, { draws: PEER })
        const uc = update()
        await job.submit(c, carol, uc, { draws: NOT_SAMPLED })
        const check = await job.lease(bob)
        job.referee.answer(a.unit, honest, job.cls('webgpu'))
        await job.submit(check, bob, honest)
        await until('alice to be banned', () => job.banned(alice))

        const rep = await job.rep(alice)
        expect(rep).toMatchObject({ banned: true, checksFailed: 1 })
        expect(rep.bannedReason).toMatch(/round 0 unit 0/)
        const [dispute, ...more] = await job.disputes(alice)
        expect(more).toEqual([])
        expect(dispute).toMatchObject({ id: `verdict:${a.id}`, kind: 'verdict', lease_id: a.id, round: 0, unit: 0, referee_hash: hashTensorList(honest).hash })
        expect((await job.attempt(a.id)).verdict).toBe('rejected')
        await until('bob to pass', async () => (await job.rep(bob)).checksPassed === 1)
        expect((await job.rep(bob)).banned).toBe(false)
        expect(job.referee.callsFor(a.unit)).toBe(1)

        // The unit is open again and goes to the next asker; alice gets no more units.
        expect(await job.unit(0, 0)).toMatchObject({ status: 'open', outputHash: null })
        await expect(job.jobs.lease(job.jobId, alice.address)).rejects.toMatchObject({ code: 'address_banned', status: 403 })
        const d = await job.lease(dave)
        expect(d.unit).toEqual(a.unit)
        const ud = update()
        const { result } = await job.submit(d, dave, ud, { draws: NOT_SAMPLED })
        expect(result.roundClosed).toBe(true)
        const progress = await job.progress()
        expect(progress.checkpoint).toBe(hashTensorList(step(job.spec, base.initial, [ud, uc])).hash)
        expect(progress.verification).toMatchObject({ checksFailed: 1, banned: [alice.address] })
      })

      it("sends a re-answered unit's check to the referee when nobody takes it, whatever checked the unit before", async () => {
        const job = await newJob()
        const [alice, bob, carol, dave] = [fresh(), fresh(), fresh(), fresh()]
        const a = await job.lease(alice)
        const c = await job.lease(carol)
        const honest = update()
        await job.submit(a, alice, update(), { draws: PEER })
        await job.submit(c, carol, update(), { draws: NOT_SAMPLED })
        const check = await job.lease(bob)
        job.referee.answer(a.unit, honest, job.cls('webgpu'))
        await job.submit(check, bob, honest)
        await until('alice to be banned', () => job.banned(alice))
        await until('bob to pass', async () => (await job.rep(bob)).checksPassed === 1)

        // Dave answers the reopened unit and is sampled; bob already answered this unit, alice is banned: nobody checks it.
        const d = await job.lease(dave)
        const ud = update()
        job.referee.answer(d.unit, ud, job.cls('webgpu'))
        const { hash: hd } = await job.submit(d, dave, ud, { draws: PEER })
        expect(await job.jobs.lease(job.jobId, bob.address)).toMatchObject({ status: 'wait' })
        job.clock.t += PEER_CHECK_WAIT_MS - 1
        await job.jobs.tick()
        expect(job.referee.callsFor(d.unit)).toBe(1)
        expect(await job.unit(0, 0)).toMatchObject({ status: 'checking' })
        job.clock.t += 1
        await job.jobs.tick()
        expect(job.referee.callsFor(d.unit)).toBe(2)
        expect(await job.rep(dave)).toMatchObject({ checksPassed: 1, banned: false })
        expect((await job.progress()).round).toBe(1)
        expect(await job.unit(0, 0)).toMatchObject({ status: 'accepted', outputHash: hd, contributor: dave.address })
      })

      it('judges a check answered after its primary was removed by the referee alone, and it holds nothing up', async () => {
        const job = await newJob()
        const [alice, bob, dave] = [fresh(), fresh(), fresh()]
        const a0 = await job.lease(alice)
        const a1 = await job.lease(alice)
        const ua = update()
        await job.submit(a0, alice, ua, { draws: PEER })
        const check = await job.lease(bob)
        expect(check.unit).toEqual(a0.unit)
        // Alice is caught on her other unit (a canary) while bob holds the check of her first.
        job.referee.answer(a1.unit, update(), job.cls('webgpu'))
        await job.submit(a1, alice, update(), { draws: CANARY })
        await until('alice to be banned', () => job.banned(alice))
        expect(await job.unit(0, 0)).toMatchObject({ status: 'open' })

        // Nothing to compare bob's answer with: the referee judges it alone (a liar checking a liar is not
        // paid unjudged). It agrees, so bob's answer passes.
        job.referee.answer(a0.unit, ua, job.cls('webgpu'))
        const { hash: hb } = await job.submit(check, bob, ua)
        await until("bob's answer to be judged", async () => (await job.attempt(check.id)).verdict === 'passed')
        expect(await job.jobs.isUnderCheck(hb)).toBe(false)
        expect(await job.rep(bob)).toMatchObject({ banned: false, checksFailed: 0, checksPassed: 1 })

        // The unit's next answer is checked as usual: by the referee once nobody else takes the check.
        const d = await job.lease(dave)
        expect(d.unit).toEqual(a0.unit)
        const ud = update()
        job.referee.answer(d.unit, ud, job.cls('webgpu'))
        await job.submit(d, dave, ud, { draws: PEER })
        job.clock.t += PEER_CHECK_WAIT_MS
        await job.jobs.tick()
        expect(await job.rep(dave)).toMatchObject({ checksPassed: 1 })
        expect(await job.unit(0, 0)).toMatchObject({ status: 'accepted', contributor: dave.address })
      })
    })

    describe('device classes', () => {
      it('passes answers of different classes within the tolerance and sends farther ones to the referee (default bundle)', async () => {
        const job = await newJob()
        const voucher = fresh()
        await earnCleanChecks(voucher, VOUCHING_CHECKS)
        const tolerance = DEFAULT_VERIFICATION.crossClassTolerance
        expect((await job.jobs.policy(job.jobId)).crossClassTolerance).toBe(tolerance)

        // 1% apart (relative L2 0.0099 < 0.04): the checker's agreement passes without the referee.
        const [alice, carol] = [fresh(), fresh()]
        const a = await job.lease(alice)
        const c = await job.lease(carol)
        const ua = update()
        await job.submit(a, alice, ua, { draws: PEER, backend: 'webgpu' })
        await job.submit(c, carol, update(), { draws: NOT_SAMPLED })
        const check = await job.lease(voucher)
        await job.submit(check, voucher, scaled(ua, 1.01), { backend: 'wasm' })
        expect((await job.progress()).round).toBe(1)
        expect(job.referee.calls).toEqual([])
        expect((await job.rep(alice)).checksPassed).toBe(1)

        // 10% apart (0.091 > 0.04): the referee decides. Its class (cpu) is not dave's (webgpu), and an honest
        // answer may fall in the calibration's tail, so it convicts nobody by itself: a third run in dave's
        // class does. Alice's last answer was webgpu, so the run goes to her and to nobody of another class.
        const dave = fresh()
        const d = await job.lease(dave)
        const c1 = await job.lease(carol)
        const honest = update()
        await job.submit(d, dave, scaled(honest, 1.1), { draws: PEER, backend: 'webgpu' })
        // A millisecond later, so that carol's latest answer is this wasm one (the store orders by time).
        job.clock.t += 1
        await job.submit(c1, carol, update(), { draws: NOT_SAMPLED, backend: 'wasm' })
        const check1 = await job.lease(voucher)
        job.referee.answer(d.unit, honest, job.cls('cpu'))
        await job.submit(check1, voucher, honest, { backend: 'wasm' })
        await until('a third run in webgpu to be asked for', async () =>
          (await db.query(`SELECT 1 FROM units WHERE job_id = $1 AND check_kind = 'class' AND check_status = 'wanted'`, [job.jobId])).length === 1,
        )
        expect((await job.unit(1, d.unit.unit)).status).toBe('checking')
        expect(await job.banned(dave)).toBe(false)
        expect(await job.jobs.lease(job.jobId, carol.address)).toMatchObject({ status: 'wait' })
        const third = await job.lease(alice)
        expect(third.unit).toEqual(d.unit)
        await job.submit(third, alice, honest, { backend: 'webgpu' })
        await until('dave to be banned', () => job.banned(dave))
        expect(job.referee.callsFor(d.unit)).toBe(1)
        expect((await job.rep(dave)).bannedReason).toMatch(/different bits from another answer of its own device class \(webgpu\|/)
        await until('the voucher to pass', async () => (await job.rep(voucher)).checksPassed === VOUCHING_CHECKS + 2)
        expect((await job.rep(voucher)).banned).toBe(false)
        expect((await job.rep(alice)).banned).toBe(false)
      })

      it('settles as inconclusive, flagging nobody, a disagreement with a referee of another class that nobody of the class can settle', async () => {
        const job = await newJob()
        const [dave, carol] = [fresh(), fresh()]
        const d = await job.lease(dave)
        const c = await job.lease(carol)
        const honest = update()
        // A canary: the referee computes the unit itself, in its class (cpu); dave answered 10% off in webgpu.
        await job.submit(d, dave, scaled(honest, 1.1), { draws: [0.99, 0], backend: 'webgpu' })
        await job.submit(c, carol, update(), { draws: NOT_SAMPLED, backend: 'wasm' })
        job.referee.answer(d.unit, honest, job.cls('cpu'))
        await job.jobs.tick()
        await until('a third run to be asked for', async () => (await db.query(`SELECT 1 FROM units WHERE job_id = $1 AND check_kind = 'class'`, [job.jobId])).length === 1)
        // Nobody of dave's class asks within the wait: the answer is neither averaged nor paid, the unit is
        // computed again, and nobody is flagged.
        job.clock.t += CLASS_CHECK_WAIT_MS
        await job.jobs.tick()
        expect((await job.attempt(d.id)).verdict).toBe('inconclusive')
        expect(await job.rep(dave)).toMatchObject({ banned: false, checksFailed: 0 })
        expect(await job.unit(0, d.unit.unit)).toMatchObject({ status: 'open', outputHash: null })
        expect((await job.progress()).acceptedThisRound).toBe(1)
        expect(await job.disputes(dave)).toEqual([])
      })

      it('in exact mode sends any hash difference across classes to the referee', async () => {
        const job = await newJob({ kernelBundle: EXACT_KERNEL_BUNDLE })
        expect(job.cls('webgpu').endsWith(`|${EXACT_KERNEL_BUNDLE}`)).toBe(true)
        const voucher = fresh()
        await earnCleanChecks(voucher, VOUCHING_CHECKS)
        const [alice, carol] = [fresh(), fresh()]
        const a = await job.lease(alice)
        const c = await job.lease(carol)
        const honest = update()
        // About 1e-7 apart: far inside the tolerance, but exact mode promises the same bits everywhere.
        await job.submit(a, alice, nudged(honest), { draws: PEER, backend: 'webgpu' })
        await job.submit(c, carol, update(), { draws: NOT_SAMPLED })
        const check = await job.lease(voucher)
        job.referee.answer(a.unit, honest, job.cls('webgpu'))
        await job.submit(check, voucher, honest, { backend: 'wasm' })
        await until('alice to be banned', () => job.banned(alice))
        expect(job.referee.callsFor(a.unit)).toBe(1)
        expect((await job.rep(alice)).bannedReason).toMatch(/same bits are required/)
        await until('the voucher to pass', async () => (await job.rep(voucher)).checksPassed === VOUCHING_CHECKS + 1)
      })
    })

    /**
     * Rounds 0 and 1 closed with the liar's unchecked update in unit 0 and an honest one in unit 1; round 2
     * leased to both, the liar's answer sampled. Returns the updates and the checkpoints by hand.
     */
    async function liarInTwoRounds(job: Job) {
      const liar = fresh()
      const honest = fresh()
      const lies: TensorList[] = []
      const goods: TensorList[] = []
      let checkpoint = base.initial
      for (let round = 0; round < 2; round++) {
        const l = await job.lease(liar)
        const h = await job.lease(honest)
        expect([l.unit.unit, h.unit.unit]).toEqual([0, 1])
        lies.push(scaled(update(), 30))
        goods.push(update())
        await job.submit(l, liar, lies[round]!, { draws: NOT_SAMPLED })
        expect((await job.submit(h, honest, goods[round]!, { draws: NOT_SAMPLED })).result.roundClosed).toBe(true)
        checkpoint = step(job.spec, checkpoint, [lies[round]!, goods[round]!])
      }
      const progress = await job.progress()
      // The lies are in the model until someone finds out.
      expect(progress.checkpoint).toBe(hashTensorList(checkpoint).hash)
      const l2 = await job.lease(liar)
      const h2 = await job.lease(honest)
      const issued = l2.unit.inputHash
      expect(issued).toBe(progress.checkpoint)
      const honestRound2 = update()
      job.referee.answer(l2.unit, update(), job.cls('webgpu'))
      await job.submit(l2, liar, scaled(update(), 30), { draws: PEER })
      await job.submit(h2, honest, honestRound2, { draws: NOT_SAMPLED })
      const c1 = step(job.spec, base.initial, [goods[0]!])
      const c2 = step(job.spec, c1, [goods[1]!])
      return { liar, honest, lies, goods, issued, honestRound2, rebuilt: [hashTensorList(c1).hash, hashTensorList(c2).hash], c2 }
    }

    describe('rebuilds', () => {
      it("drops a convicted liar's unchecked updates and rebuilds the rounds that averaged them", async () => {
        const job = await newJob({ training: { rounds: 4 } })
        const s = await liarInTwoRounds(job)
        const before = await job.progress()
        expect(before.history.map((h) => h.rebuilds)).toEqual([0, 0])

        // Nobody takes the check; after the wait the referee computes the unit and proves the liar wrong.
        job.clock.t += PEER_CHECK_WAIT_MS
        await job.jobs.tick()
        await until('the liar to be banned', () => job.banned(s.liar))
        await until('the rebuild', async () => (await job.progress()).verification.roundsRebuilt.length === 2)

        const progress = await job.progress()
        expect(progress.history.map((h) => h.rebuilds)).toEqual([1, 1])
        expect(progress.history.map((h) => h.outputHash)).toEqual(s.rebuilt)
        expect(progress.history.map((h) => h.units)).toEqual([1, 1])
        expect(progress.history.map((h) => h.inputHash)).toEqual(before.history.map((h) => h.inputHash))
        expect(progress.verification.roundsRebuilt).toEqual([0, 1])
        expect(progress.verification.unitsRejected).toBe(3)
        expect(await job.rep(s.liar)).toMatchObject({ banned: true, unitsRejected: 3 })
        // The current round keeps the checkpoint it was issued; its reopened unit starts from it again.
        expect(progress.round).toBe(2)
        expect(progress.checkpoint).toBe(s.issued)
        expect((await job.unit(2, 0)).unit.inputHash).toBe(s.issued)
        expect(await job.unit(2, 0)).toMatchObject({ status: 'open' })
        // The dropped answers stay on record as rejected; the honest ones stand.
        for (const round of [0, 1]) {
          expect(await job.unit(round, 0)).toMatchObject({ status: 'rejected', outputHash: hashTensorList(s.lies[round]!).hash, contributor: s.liar.address })
          expect(await job.unit(round, 1)).toMatchObject({ status: 'accepted', outputHash: hashTensorList(s.goods[round]!).hash })
        }

        // The round closes onto the rebuilt chain.
        const other = fresh()
        const o = await job.lease(other)
        expect(o.unit).toMatchObject({ round: 2, unit: 0, inputHash: s.issued })
        const uo = update()
        expect((await job.submit(o, other, uo, { draws: NOT_SAMPLED })).result.roundClosed).toBe(true)
        const after = await job.progress()
        expect(after.history[2]).toMatchObject({ inputHash: s.issued, rebuilds: 0 })
        expect(after.checkpoint).toBe(hashTensorList(step(job.spec, s.c2, [uo, s.honestRound2])).hash)
      })

      it('a coordinator restarted with a round still marked dirty rebuilds it in recover()', async () => {
        const crashing = new CrashingBlobStore(blobDir)
        const job = await newJob({ training: { rounds: 4 }, blobs: crashing })
        const s = await liarInTwoRounds(job)

        // The conviction is recorded, then the rebuild dies reading round 0's base.
        crashing.crashOn = job.spec.model.initialWeights
        job.clock.t += PEER_CHECK_WAIT_MS
        await job.jobs.tick()
        expect(await job.banned(s.liar)).toBe(true)
        expect((await job.progress()).history.map((h) => h.rebuilds)).toEqual([0, 0])
        const dirty = await db.query<{ round: number; dirty: boolean }>(`SELECT round, dirty FROM rounds WHERE job_id = $1 ORDER BY round`, [job.jobId])
        expect(dirty.map((r) => [Number(r.round), r.dirty])).toEqual([[0, true], [1, true]])

        const restarted = job.service({ blobs: new BlobStore(blobDir) })
        await restarted.recover()
        const progress = await restarted.progress(job.jobId)
        expect(progress.history.map((h) => h.rebuilds)).toEqual([1, 1])
        expect(progress.history.map((h) => h.outputHash)).toEqual(s.rebuilt)
        expect(progress.verification.roundsRebuilt).toEqual([0, 1])
        expect(progress.checkpoint).toBe(s.issued)
        // Recovering again changes nothing.
        await restarted.recover()
        expect((await restarted.progress(job.jobId)).history).toEqual(progress.history)
      })
    })

    describe('convicted checkers', () => {
      it.each([
        ['right', true],
        ['wrong', false],
      ])('re-examine the units they vouched for: a primary that was %s', async (_, right) => {
        const job = await newJob()
        const voucher = fresh()
        await earnCleanChecks(voucher, VOUCHING_CHECKS)
        const [alice, carol] = [fresh(), fresh()]
        const a = await job.lease(alice)
        const c = await job.lease(carol)
        const ua = update()
        const uc = update()
        const { hash: ha } = await job.submit(a, alice, ua, { draws: PEER })
        await job.submit(c, carol, uc, { draws: NOT_SAMPLED })
        const check = await job.lease(voucher)
        await job.submit(check, voucher, ua)
        expect((await job.progress()).round).toBe(1)
        expect(job.referee.calls).toEqual([])
        expect((await job.rep(alice)).checksPassed).toBe(1)
        const round0 = (await job.progress()).history[0]!

        // The voucher is caught on a unit of its own in round 1 (a canary).
        job.referee.answer(a.unit, right ? ua : update(), job.cls('webgpu'))
        const v = await job.lease(voucher)
        job.referee.answer(v.unit, update(), job.cls('webgpu'))
        await job.submit(v, voucher, update(), { draws: CANARY })
        await until('the voucher to be banned', () => job.banned(voucher))

        // The unit it vouched for goes to the referee.
        await until('the referee to look at alice’s unit', async () => job.referee.callsFor(a.unit) === 1)
        if (right) {
          await until('alice to pass again', async () => (await job.rep(alice)).checksPassed === 2)
          expect(await job.rep(alice)).toMatchObject({ banned: false, checksFailed: 0, unitsRejected: 0 })
          expect(await job.attempt(a.id)).toMatchObject({ verdict: 'passed', verdict_reason: 'agreed with the referee' })
          expect(await job.unit(0, 0)).toMatchObject({ status: 'accepted', outputHash: ha })
          expect((await job.progress()).history[0]).toEqual(round0)
        } else {
          await until('alice to be banned', () => job.banned(alice))
          await until('round 0 to be rebuilt', async () => (await job.progress()).history[0]!.rebuilds === 1)
          expect((await job.progress()).history[0]!.outputHash).toBe(hashTensorList(step(job.spec, base.initial, [uc])).hash)
          expect(await job.disputes(alice)).toMatchObject([{ kind: 'verdict', lease_id: a.id }])
          // Its answer stays on record as rejected evidence, also after the periodic work.
          await job.jobs.tick()
          expect(await job.unit(0, 0)).toMatchObject({ status: 'rejected', outputHash: ha, contributor: alice.address })
        }
        expect(await job.rep(carol)).toMatchObject({ banned: false })
      })
    })

    describe('double signing', () => {
      /** Alice's lease of unit 0 runs out and the unit comes back to her; returns both leases. */
      async function releasedToSameAddress(job: Job) {
        const [alice, bob] = [fresh(), fresh()]
        const first = await job.lease(alice)
        const b = await job.lease(bob)
        expect([first.unit.unit, b.unit.unit]).toEqual([0, 1])
        job.clock.t = first.expiresAt
        const second = await job.lease(alice)
        expect(second.unit).toEqual(first.unit)
        expect((await job.attempt(first.id)).status).toBe('expired')
        return { alice, first, second }
      }

      it.each([
        ['after', false],
        ['before', true],
      ])('convicts an address that signs two outputs for one unit and input in one class (the late claim %s the other)', async (_, lateFirst) => {
        const job = await newJob()
        const { alice, first, second } = await releasedToSameAddress(job)
        const late = await makeSubmission({ lease: first, account: alice, update: update(), shapes: base.shapes, claim: { deviceClass: job.cls('webgpu') } })
        const sendLate = () => expect(job.jobs.submit(first.id, late.body)).rejects.toMatchObject({ code: 'lease_expired' })
        if (lateFirst) await sendLate()
        expect(await job.banned(alice)).toBe(false)
        await job.submit(second, alice, update(), { draws: NOT_SAMPLED })
        if (!lateFirst) await sendLate()

        const rep = await job.rep(alice)
        expect(rep.banned).toBe(true)
        expect(rep.bannedReason).toMatch(/signed two different outputs for the same unit and input in one device class/)
        const [convicted, other] = lateFirst ? [second, first] : [first, second]
        expect(await job.disputes(alice)).toMatchObject([
          { kind: 'double_sign', lease_id: convicted.id, other_lease_id: other.id, round: 0, unit: 0, referee_hash: null },
        ])
        expect((await job.attempt(second.id)).verdict).toBe('rejected')
        expect(await job.unit(0, 0)).toMatchObject({ status: 'open' })
        await expect(job.jobs.lease(job.jobId, alice.address)).rejects.toMatchObject({ code: 'address_banned' })
      })

      it('is not two outputs from different device classes in the default bundle', async () => {
        const job = await newJob()
        const { alice, first, second } = await releasedToSameAddress(job)
        const { hash } = await job.submit(second, alice, update(), { draws: NOT_SAMPLED, backend: 'webgpu' })
        const late = await makeSubmission({ lease: first, account: alice, update: update(), shapes: base.shapes, claim: { deviceClass: job.cls('wasm') } })
        await expect(job.jobs.submit(first.id, late.body)).rejects.toMatchObject({ code: 'lease_expired' })
        expect((await job.attempt(first.id)).status).toBe('late')
        expect(await job.rep(alice)).toMatchObject({ banned: false, checksFailed: 0 })
        expect(await job.disputes(alice)).toEqual([])
        expect(await job.unit(0, 0)).toMatchObject({ status: 'accepted', outputHash: hash })
      })
    })

    describe('check rate', () => {
      const initial = DEFAULT_VERIFICATION.initialCheckRate
      const eps = 1e-9

      it('samples a fresh address at the initial rate; with stake the rate falls as checks pass, without it stays', async () => {
        const staked = new Set<string>()
        const minStake = BigInt(DEFAULT_VERIFICATION.minStake)
        const stakes: StakeOracle = { stakeOf: async (address) => (staked.has(address) ? minStake : minStake - 1n), formatAmount: String, slashBps: async () => 5000 }
        const job = await newJob({ training: { unitsPerRound: 4 }, stakes })
        const [newcomer, regular] = [fresh(), fresh()]
        staked.add(newcomer.address)
        staked.add(regular.address)
        await earnCleanChecks(regular, 3)
        expect((await job.rep(regular)).consecutiveClean).toBe(3)
        const lowered = checkRate(DEFAULT_VERIFICATION, { consecutiveClean: 3, staked: true, checksFailed: 0 })
        expect(lowered).toBeCloseTo(initial / 2, 12)
        expect((await job.rep(regular)).checkRate).toBe(lowered)

        const n0 = await job.lease(newcomer)
        const n1 = await job.lease(newcomer)
        const r2 = await job.lease(regular)
        const r3 = await job.lease(regular)
        await job.submit(n0, newcomer, update(), { draws: [initial + eps, 0.99] })
        await job.submit(n1, newcomer, update(), { draws: [initial - eps] })
        await job.submit(r2, regular, update(), { draws: [lowered + eps, 0.99] })
        await job.submit(r3, regular, update(), { draws: [lowered - eps] })
        expect((await Promise.all([0, 1, 2, 3].map((u) => job.unit(0, u)))).map((u) => u.status)).toEqual(['accepted', 'checking', 'accepted', 'checking'])

        // The same record without stake at risk: the initial rate, whether nobody says (no oracle) or the stake is short.
        for (const [name, oracle] of [['no stakes oracle', undefined], ['a stake below the minimum', { stakeOf: async () => minStake - 1n, formatAmount: String, slashBps: async () => 5000 }]] as const) {
          const unstaked = await newJob({ stakes: oracle })
          const u0 = await unstaked.lease(regular)
          const u1 = await unstaked.lease(regular)
          await unstaked.submit(u0, regular, update(), { draws: [initial + eps, 0.99] })
          await unstaked.submit(u1, regular, update(), { draws: [initial - eps] })
          expect([(await unstaked.unit(0, 0)).status, (await unstaked.unit(0, 1)).status], name).toEqual(['accepted', 'checking'])
        }
      })
    })

    describe('abandoned leases', () => {
      it('count as abandoned and nothing else; beyond the slack the address is on probation', async () => {
        const job = await newJob()
        const [alice, bob] = [fresh(), fresh()]
        for (let round = 0; round < 2; round++) {
          const a0 = await job.lease(alice)
          const a1 = await job.lease(alice)
          // Within the slack: the normal share and lease time.
          expect(a0.expiresAt - job.clock.t).toBe(TTL_MS)
          expect([a0.unit.unit, a1.unit.unit]).toEqual([0, 1])
          job.clock.t = a1.expiresAt
          const b0 = await job.lease(bob)
          const b1 = await job.lease(bob)
          expect([b0.unit.unit, b1.unit.unit]).toEqual([0, 1])
          expect((await job.attempt(a0.id)).status).toBe('expired')
          await job.submit(b0, bob, update(), { draws: NOT_SAMPLED })
          expect((await job.submit(b1, bob, update(), { draws: NOT_SAMPLED })).result.roundClosed).toBe(true)
          expect(await job.rep(alice)).toMatchObject({ leasesAbandoned: 2 * (round + 1), checksFailed: 0, unitsRejected: 0, banned: false })
        }
        const progress = await job.progress()
        expect(progress.verification).toMatchObject({ checksFailed: 0, unitsRejected: 0, banned: [] })
        expect(await job.disputes(alice)).toEqual([])

        // 4 abandoned > 0 accepted + 2: one live lease, a quarter of the lease time.
        const p = await job.lease(alice)
        expect(p.expiresAt - job.clock.t).toBe(TTL_MS / 4)
        await expect(job.jobs.lease(job.jobId, alice.address)).rejects.toMatchObject({ code: 'too_many_leases', status: 429 })
        // An address that answers keeps its normal share.
        const b = await job.lease(bob)
        expect(b.expiresAt - job.clock.t).toBe(TTL_MS)
      })
    })
  })
}
