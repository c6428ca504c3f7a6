import { privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { expect } from 'vitest'
import { CoordinatorRequestError, type CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import { encodeIdx } from '../../src/data/idx.ts'
import {
  DEFAULT_VERIFICATION,
  decodeTensorList,
  encodeSubmission,
  encodeTensorList,
  parseJobSpec,
  sha256Hex,
  signLeaseRequest,
  signWorkClaim,
  type ClaimDomainParams,
  type Hash,
  type JobSpec,
  type Lease,
  type LeaseRequestSigner,
  type LeaseResponse,
  type TensorList,
  type TrainingConfig,
  type TypedDataSigner,
  type VerificationPolicy,
  type WorkClaim,
} from '../../src/protocol/index.ts'
import { buildMnistPreset } from '../presets/mnist.ts'

/** Anvil's well-known development keys (accounts #1 to #4): never hold anything of value. */
export const TEST_KEYS = [
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
] as const

export const [alice, bob, carol, dave] = TEST_KEYS.map((key) => privateKeyToAccount(key)) as [
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
  PrivateKeyAccount,
]

export const TEST_DOMAIN: ClaimDomainParams = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }

export interface TestJobBase {
  spec: JobSpec
  /** Every blob the spec references. */
  blobs: Uint8Array[]
  initial: TensorList
  shapes: number[][]
}

/** Held-out examples kept for the tests: evaluation at each round close runs on these. */
export const TEST_HELD_OUT_COUNT = 200

let base: Promise<TestJobBase> | null = null

/**
 * The MNIST preset with a 200-example held-out split (evaluation is most of a round close's time), two
 * units per round, three rounds and a 10-second lease. Built once per test file.
 */
export function testJobBase(): Promise<TestJobBase> {
  base ??= (async () => {
    const preset = await buildMnistPreset({ paid: false })
    const n = TEST_HELD_OUT_COUNT
    const images = encodeIdx({ shape: [n, 28, 28], data: preset.heldOut.images.subarray(0, n * preset.heldOut.exampleSize) })
    const labels = encodeIdx({ shape: [n], data: preset.heldOut.labels.subarray(0, n) })
    const spec = parseJobSpec({
      ...preset.spec,
      data: { ...preset.spec.data, heldOut: { images: sha256Hex(images), labels: sha256Hex(labels), count: n } },
      training: { ...preset.spec.training, unitsPerRound: 2, rounds: 3, leaseTtlSeconds: 10 },
    })
    const initial = decodeTensorList(preset.blobs.get(spec.model.initialWeights)!)
    return { spec, blobs: [...preset.blobs.values(), images, labels], initial, shapes: initial.shapes.map((s) => [...s]) }
  })()
  return base
}

/**
 * The least checking a job can ask for: rates must stay positive (no address is ever exempt), so one unit
 * in a billion. For tests that exercise leases, rounds and settlement with made-up updates, which any
 * honest re-execution would (rightly) reject; verification has suites of its own.
 */
export const BARELY_CHECKED: VerificationPolicy = { ...DEFAULT_VERIFICATION, initialCheckRate: 1e-9, floorCheckRate: 1e-9, canaryRate: 0 }

/**
 * The base spec under another name (so another job id) and with training settings overridden. Unless
 * `training` says otherwise the variant runs synchronous rounds, float32 updates, plain averaging and a fixed
 * H, whatever the base runs (the running coordinator's preset is asynchronous, int8 and Nesterov): tests of
 * leases and submissions send made-up float32 updates and count on exactly K units a round.
 */
export function jobVariant(spec: JobSpec, name: string, training: Partial<TrainingConfig> = {}): JobSpec {
  const { maxStaleness: _s, compression: _c, outerMomentum: _m, maxInnerSteps: _h, ...inner } = spec.training
  return parseJobSpec({ ...spec, name, training: { ...inner, outerOptimizer: 'average', outerLearningRate: 1, ...training } })
}

/** An update with the model's shapes, filled with small deterministic values that depend on `seed`. */
export function testUpdate(shapes: readonly (readonly number[])[], seed = 1): TensorList {
  return {
    shapes: shapes.map((s) => [...s]),
    values: shapes.map((shape, t) => {
      const size = shape.reduce((a, b) => a * b, 1)
      const out = new Float32Array(size)
      for (let i = 0; i < size; i++) out[i] = 1e-3 * seed * Math.sin(i * 0.37 + t + seed)
      return out
    }),
  }
}

export function leased(response: LeaseResponse): Lease {
  if (response.status !== 'leased') throw new Error(`expected a lease, got ${JSON.stringify(response)}`)
  return response.lease
}

/**
 * Asks `client`'s coordinator for a unit of `jobId` as a page does: a lease request signed by `account` for
 * this coordinator (its `coordinatorId` and domain from `/api/info`), issued at `now` (default: the clock).
 */
export async function signedLease(
  client: CoordinatorClient,
  account: LeaseRequestSigner,
  jobId: Hash,
  options: { now?: number } = {},
): Promise<LeaseResponse> {
  const info = await client.info()
  return client.lease(jobId, await signLeaseRequest(account, { jobId, audience: info.coordinatorId, domain: info, now: options.now }))
}

export interface SubmissionOptions {
  lease: Lease
  account: PrivateKeyAccount
  domain?: ClaimDomainParams
  /** The update; defaults to `testUpdate(shapes, seed)`. */
  update?: TensorList
  /** Raw update bytes, overriding `update`. */
  updateBytes?: Uint8Array
  shapes?: readonly (readonly number[])[]
  seed?: number
  /** Fields of the claim to override (defaults: the lease's unit, the update's hash, the account). */
  claim?: Partial<WorkClaim>
  /** Signs in place of `account` (for forged signatures). */
  signer?: TypedDataSigner
  trainLoss?: number
}

export interface TestSubmission {
  body: Uint8Array
  claim: WorkClaim
  updateBytes: Uint8Array
  outputHash: Hash
}

/** A signed submission for `lease`: valid unless an option says otherwise. */
export async function makeSubmission(options: SubmissionOptions): Promise<TestSubmission> {
  const { lease, account } = options
  let updateBytes = options.updateBytes
  if (!updateBytes) {
    const update = options.update ?? testUpdate(options.shapes ?? [], options.seed ?? 1)
    updateBytes = encodeTensorList(update)
  }
  const claim: WorkClaim = {
    jobId: lease.unit.jobId,
    round: lease.unit.round,
    unit: lease.unit.unit,
    inputHash: lease.unit.inputHash,
    outputHash: sha256Hex(updateBytes),
    contributor: account.address,
    deviceClass: 'test',
    ...options.claim,
  }
  const signed = await signWorkClaim(options.signer ?? account, claim, options.domain ?? TEST_DOMAIN)
  const body = encodeSubmission({ ...signed, trainLoss: options.trainLoss ?? 1 }, updateBytes)
  return { body, claim, updateBytes, outputHash: sha256Hex(updateBytes) }
}

/** The coordinator's refusal `promise` ends in, as the typed client throws it; fails the test if it succeeded. */
export async function refusal(promise: Promise<unknown>): Promise<CoordinatorRequestError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(CoordinatorRequestError)
  return error as CoordinatorRequestError
}
