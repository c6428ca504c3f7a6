import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  decodeUpdate,
  encodeUpdate,
  encodedUpdateSize,
  parseJobSpec,
  sha256Hex,
  type JobSpec,
  type Lease,
} from '../src/protocol/index.ts'
import { mapBlobSource } from '../src/worker/blobSource.ts'
import { useCpuKernelsFor } from '../src/worker/cpuKernels.ts'
import { nodeDeviceClass } from '../src/worker/nodeDeviceClass.ts'
import { createUnitRunner } from '../src/worker/unitRunner.ts'
import { BlobStore } from './blobs.ts'
import { migrate, openPglite, type Database } from './db.ts'
import { CoordinatorError } from './errors.ts'
import { JobService } from './jobs.ts'
import type { AttemptRow } from './rows.ts'
import { TEST_DOMAIN, leased, makeSubmission, testJobBase, type TestJobBase } from './testing/fixtures.ts'
import { createThreadReferee, type Referee } from './verification/referee.ts'

/**
 * A job whose updates travel as int8 (`training.compression`), end to end through the coordinator with
 * real units on the CPU backend: what is stored and signed, that a re-execution by another address and by
 * the coordinator's referee gives the very same bytes, and that tampered int8 bodies are refused.
 */

const INT8 = { kind: 'int8', blockSize: 256 } as const
const T0 = 1_800_000_000_000

/** decideCheck draws once against the check rate (below it: a peer check), then once against the canary rate. */
const PEER = [0]
const NOT_SAMPLED = [0.99, 0.99]

let base: TestJobBase
let spec: JobSpec
let db: Database
let blobDir: string
let blobs: BlobStore
let referee: Referee
let jobs: JobService
let jobId: string
const clock = { t: T0 }
const draws: number[] = []
/** A contributor's own unit runner (its own caches), over the job's blobs. */
const runner = () => createUnitRunner(mapBlobSource(new Map(base.blobs.map((b) => [sha256Hex(b), b])), 'test job blobs'))
let honestRunner: ReturnType<typeof createUnitRunner>

const fresh = (): PrivateKeyAccount => privateKeyToAccount(generatePrivateKey())

/** What an honest Node contributor sends for a lease: the unit trained on the CPU backend. */
async function compute(lease: Lease) {
  await useCpuKernelsFor(spec, 'cpu')
  return honestRunner.run(spec, lease.unit)
}

async function submit(lease: Lease, account: PrivateKeyAccount, updateBytes: Uint8Array, scripted: readonly number[] = []) {
  draws.push(...scripted)
  const submission = await makeSubmission({ lease, account, updateBytes, claim: { deviceClass: nodeDeviceClass(spec.kernelBundle) } })
  const result = await jobs.submit(lease.id, submission.body)
  expect(draws, 'every scripted draw was used').toEqual([])
  return { result, submission }
}

const attempt = async (leaseId: string) => (await db.query<AttemptRow>(`SELECT * FROM attempts WHERE lease_id = $1`, [leaseId]))[0]!

async function until(what: string, condition: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

beforeAll(async () => {
  base = await testJobBase()
  spec = parseJobSpec({ ...base.spec, name: 'int8 updates', training: { ...base.spec.training, compression: INT8 } })
  honestRunner = runner()
  db = await openPglite()
  await migrate(db)
  blobDir = await mkdtemp(join(tmpdir(), 'tabtrain-compression-'))
  blobs = new BlobStore(blobDir)
  referee = createThreadReferee({ blob: (hash) => blobs.get(hash) })
  jobs = new JobService({
    db,
    blobs,
    domain: TEST_DOMAIN,
    now: () => clock.t,
    random: () => {
      const draw = draws.shift()
      if (draw === undefined) throw new Error('the coordinator drew a number the test did not script')
      return draw
    },
    referee,
  })
  jobId = await jobs.createJob(spec, base.blobs)
}, 120_000)

afterAll(async () => {
  await referee?.close()
  await db?.close()
  if (blobDir) await rm(blobDir, { recursive: true, force: true })
})

describe('a job with int8 updates', () => {
  const alice = fresh()
  const bob = fresh()
  const carol = fresh()

  it('stores and signs the int8 bytes, and a check by another address and the referee reproduce them bit for bit', async () => {
    const lease = leased(await jobs.lease(jobId, alice.address))
    const out = await compute(lease)

    // The answer is the int8 encoding: tagged 'TTQ8', about a quarter of the float32 size.
    expect(String.fromCharCode(...out.updateBytes.subarray(0, 4))).toBe('TTQ8')
    expect(out.updateBytes.length).toBe(encodedUpdateSize(INT8, base.shapes))
    const float32Size = encodedUpdateSize(undefined, base.shapes)
    console.log(`int8 update of the MNIST preset: ${out.updateBytes.length} bytes against ${float32Size} as float32`)
    expect(float32Size / out.updateBytes.length).toBeGreaterThan(3.9)
    expect(out.outputHash).toBe(sha256Hex(out.updateBytes))
    const decoded = decodeUpdate(INT8, out.updateBytes, base.shapes)
    expect(decoded.values.some((v) => v.some((x) => x !== 0))).toBe(true)

    const { result, submission } = await submit(lease, alice, out.updateBytes, PEER)
    expect(result).toMatchObject({ accepted: true, round: 0, unit: 0 })
    // The claim signs the hash of exactly the bytes sent, and those bytes are what the store holds.
    expect(submission.claim.outputHash).toBe(out.outputHash)
    expect((await attempt(lease.id)).output_hash).toBe(out.outputHash)
    expect(Buffer.from(await blobs.get(out.outputHash)).equals(Buffer.from(out.updateBytes))).toBe(true)

    // Bob is sent the same unit as a check; his own re-execution gives the same bytes.
    clock.t += 1000
    const check = leased(await jobs.lease(jobId, bob.address))
    expect((await attempt(check.id)).kind).toBe('check')
    expect(check.unit).toEqual(lease.unit)
    const bobs = await runner().run(spec, check.unit)
    expect(bobs.outputHash).toBe(out.outputHash)
    await submit(check, bob, bobs.updateBytes)

    // Bob has no record, so the coordinator's referee (a worker thread) re-executes the unit and passes both.
    await until('the check to pass', async () => (await attempt(lease.id)).verdict === 'passed')
    expect((await attempt(check.id)).verdict).toBe('passed')
    const [unit] = await db.query<{ referee_hash: string | null }>(`SELECT referee_hash FROM units WHERE job_id = $1 AND round = 0 AND unit = 0`, [jobId])
    expect(unit!.referee_hash).toBe(out.outputHash)
    expect((await jobs.reputation(alice.address)).checksPassed).toBe(1)
  }, 180_000)

  it('refuses tampered int8 bodies with a 4xx code and stores nothing, then takes the honest answer and closes the round', async () => {
    const lease = leased(await jobs.lease(jobId, carol.address))
    expect(lease.unit.unit).toBe(1)
    const honest = await compute(lease)
    const headerBytes = 4 * (3 + base.shapes.reduce((n, s) => n + 1 + s.length, 0))

    const nanScale = honest.updateBytes.slice()
    new DataView(nanScale.buffer).setFloat32(headerBytes, NaN, true)
    const truncated = honest.updateBytes.slice(0, honest.updateBytes.length - 100)
    const float32 = encodeUpdate(undefined, decodeUpdate(INT8, honest.updateBytes))
    const otherBlocks = encodeUpdate({ kind: 'int8', blockSize: 128 }, decodeUpdate(INT8, honest.updateBytes))

    for (const [name, bytes, code, status] of [
      ['a NaN block scale', nanScale, 'non_finite_update', 422],
      ['truncated bytes', truncated, 'malformed_submission', 400],
      ['float32 bytes for an int8 job', float32, 'malformed_submission', 400],
      ['int8 with another block size', otherBlocks, 'malformed_submission', 400],
    ] as const) {
      const error = await submit(lease, carol, bytes).catch((e: unknown) => e)
      expect(error, name).toBeInstanceOf(CoordinatorError)
      expect((error as CoordinatorError).code, name).toBe(code)
      expect((error as CoordinatorError).status, name).toBe(status)
      expect(await blobs.has(sha256Hex(bytes)), name).toBe(false)
      expect((await attempt(lease.id)).status, name).toBe('leased')
    }

    const { result } = await submit(lease, carol, honest.updateBytes, NOT_SAMPLED)
    expect(result.accepted).toBe(true)
    // Round 0 closes: the coordinator decodes both int8 answers and averages them into round 1's checkpoint.
    await until('round 0 to close', async () => (await jobs.progress(jobId)).round === 1)
    const [round1] = await db.query<{ checkpoint: string }>(`SELECT checkpoint FROM jobs WHERE id = $1`, [jobId])
    expect(round1!.checkpoint).not.toBe(spec.model.initialWeights)
  }, 180_000)
})
