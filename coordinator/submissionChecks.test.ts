import { beforeAll, describe, expect, it } from 'vitest'
import {
  decodeSubmission,
  decodeTensorList,
  encodeTensorList,
  recoverClaimSigner,
  sha256Hex,
  type Hash,
  type Lease,
  type TensorList,
  type TypedDataSigner,
} from '../src/protocol/index.ts'
import { CoordinatorError, ERROR_STATUS, type ErrorCode } from './errors.ts'
import type { AttemptRow } from './rows.ts'
import { checkSubmission, type SubmissionFacts } from './submissionChecks.ts'
import { TEST_DOMAIN, alice, bob, makeSubmission, testUpdate } from './testing/fixtures.ts'

/**
 * `checkSubmission` on facts built by hand: no store, no server, no clock. Every submission here is really
 * signed (EIP-712, TEST_DOMAIN) and decoded from its wire bytes; only the lease row, the job's state and
 * the time are made up.
 */

const JOB = `0x${'1a'.repeat(32)}` as Hash
const OTHER_JOB = `0x${'2b'.repeat(32)}` as Hash
const CHECKPOINT = `0x${'3c'.repeat(32)}` as Hash
const OTHER_CHECKPOINT = `0x${'4d'.repeat(32)}` as Hash
const ROUND = 3
const UNIT = 1
const LEASE_ID = 'lease-under-test'
const NOW = 1_800_000_000_000
const EXPIRES_AT = NOW + 10_000
/** A small model: the checks only compare shapes, they never run it. */
const SHAPES = [[3, 2], [2]]

const LEASE: Lease = { id: LEASE_ID, contributor: alice.address, expiresAt: EXPIRES_AT, unit: { jobId: JOB, round: ROUND, unit: UNIT, inputHash: CHECKPOINT } }

/** Alice's live primary lease on (JOB, ROUND, UNIT), as the store returns it. */
function attemptRow(overrides: Partial<AttemptRow> = {}): AttemptRow {
  return {
    lease_id: LEASE_ID,
    job_id: JOB,
    round: ROUND,
    unit: UNIT,
    contributor: alice.address,
    kind: 'primary',
    status: 'leased',
    issued_at: NOW - 5_000,
    expires_at: EXPIRES_AT,
    input_hash: CHECKPOINT,
    output_hash: null,
    device_class: null,
    claim: null,
    signature: null,
    claim_digest: null,
    examples: null,
    train_loss: null,
    submitted_at: null,
    verdict: null,
    verdict_reason: null,
    epoch: null,
    ...overrides,
  }
}

/** Facts of a real signed submission for LEASE as the coordinator would gather them: valid unless `options` break it. */
async function factsFor(options: Omit<Parameters<typeof makeSubmission>[0], 'lease' | 'account' | 'shapes'> = {}): Promise<SubmissionFacts> {
  const submission = await makeSubmission({ lease: LEASE, account: alice, shapes: SHAPES, domain: TEST_DOMAIN, ...options })
  const { signed, update } = decodeSubmission(submission.body)
  return {
    leaseId: LEASE_ID,
    signed,
    update,
    signer: await recoverClaimSigner(signed, TEST_DOMAIN),
    attempt: attemptRow(),
    job: { id: JOB, round: ROUND, checkpoint: CHECKPOINT, status: 'active' },
    maxStaleness: 0,
    shapes: SHAPES,
    now: NOW,
  }
}

/** An update with one value replaced. */
function withValue(value: number, tensor = 1, index = 1): TensorList {
  const update = testUpdate(SHAPES, 1)
  update.values[tensor]![index] = value
  return update
}

/** The refusal checkSubmission throws, as a client would see it: code, HTTP status, message. */
function refusal(facts: SubmissionFacts): { code: ErrorCode; status: number; message: string } {
  try {
    checkSubmission(facts)
  } catch (error) {
    expect(error).toBeInstanceOf(CoordinatorError)
    const { code, status, message } = error as CoordinatorError
    expect(status).toBe(ERROR_STATUS[code])
    return { code, status, message }
  }
  throw new Error('expected checkSubmission to refuse the submission')
}

/** Signs in Bob's key a claim that names Alice as its contributor: what a forger without Alice's key can make. */
const forgerForAlice: TypedDataSigner = { address: alice.address, signTypedData: (args) => bob.signTypedData(args) }

/** A copy of `bytes` with its last byte changed: still a tensor list, no longer what the claim hashed. */
function flipLast(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice()
  copy[copy.length - 1]! ^= 0x01
  return copy
}

describe('checkSubmission', () => {
  let valid: SubmissionFacts
  let forged: SubmissionFacts
  let notTensors: SubmissionFacts
  let withNaN: SubmissionFacts

  beforeAll(async () => {
    valid = await factsFor()
    forged = await factsFor({ signer: forgerForAlice })
    notTensors = await factsFor({ updateBytes: new TextEncoder().encode('not a tensor list, just some bytes') })
    withNaN = await factsFor({ update: withValue(Number.NaN) })
  })

  it('accepts a valid submission and returns its decoded tensors and output hash', () => {
    const checked = checkSubmission(valid)
    expect(checked.attempt).toBe(valid.attempt)
    expect(checked.outputHash).toBe(valid.signed.claim.outputHash)
    expect(checked.outputHash).toBe(sha256Hex(encodeTensorList(testUpdate(SHAPES, 1))))
    expect(checked.tensors.shapes).toEqual(SHAPES)
    expect(checked.tensors).toEqual(decodeTensorList(valid.update))
    expect(Array.from(checked.tensors.values[0]!)).toEqual(Array.from(testUpdate(SHAPES, 1).values[0]!))
  })

  it('accepts a lease one millisecond before it expires', () => {
    expect(() => checkSubmission({ ...valid, now: EXPIRES_AT - 1 })).not.toThrow()
  })

  describe('refusals, in the documented order', () => {
    it('bad_signature: a signature that does not recover', () => {
      const answer = refusal({ ...valid, signer: null })
      expect(answer).toMatchObject({ code: 'bad_signature', status: 401 })
      expect(answer.message).toContain('cannot be recovered')
    })

    it('bad_signature: a signature by another key than the claimed contributor', () => {
      expect(forged.signer).toBe(bob.address)
      expect(forged.signed.claim.contributor).toBe(alice.address)
      const answer = refusal(forged)
      expect(answer).toMatchObject({ code: 'bad_signature', status: 401 })
      expect(answer.message).toContain(`recovers to ${bob.address}`)
      expect(answer.message).toContain(`claimed contributor ${alice.address}`)
    })

    it('lease_not_found: no such lease was ever issued', () => {
      const answer = refusal({ ...valid, attempt: null })
      expect(answer).toMatchObject({ code: 'lease_not_found', status: 404 })
      expect(answer.message).toContain(LEASE_ID)
    })

    it.each([
      ['job', { job_id: OTHER_JOB }],
      ['round', { round: ROUND + 1 }],
      ['unit', { unit: UNIT + 1 }],
    ] as const)('claim_mismatch: the lease is for another %s than the claim', (_what, overrides) => {
      const answer = refusal({ ...valid, attempt: attemptRow(overrides) })
      expect(answer).toMatchObject({ code: 'claim_mismatch', status: 400 })
      expect(answer.message).toContain(`the claim names job ${JOB} round ${ROUND} unit ${UNIT}`)
    })

    it("lease_not_yours: a correctly signed claim on someone else's lease", () => {
      const answer = refusal({ ...valid, attempt: attemptRow({ contributor: bob.address }) })
      expect(answer).toMatchObject({ code: 'lease_not_yours', status: 403 })
      expect(answer.message).toContain(`not a lease of ${alice.address}`)
      // Nothing about the lease itself: not its owner, not its unit.
      expect(answer.message).not.toContain(bob.address)
      expect(answer.message).not.toContain(`unit ${UNIT}`)
    })

    it.each(['submitted', 'late'] as const)('already_submitted: the lease already has an answer (%s)', (status) => {
      const answer = refusal({ ...valid, attempt: attemptRow({ status }) })
      expect(answer).toMatchObject({ code: 'already_submitted', status: 409 })
      expect(answer.message).toContain('replayed')
    })

    it('stale_round: the job moved on to the next round', () => {
      const answer = refusal({ ...valid, job: { ...valid.job, round: ROUND + 1 } })
      expect(answer).toMatchObject({ code: 'stale_round', status: 409 })
      expect(answer.message).toBe(`the claim is for round ${ROUND}, the job is at round ${ROUND + 1}`)
    })

    it('an asynchronous job takes an answer up to maxStaleness rounds old, and no older', () => {
      const behind = (rounds: number, maxStaleness: number) => ({ ...valid, maxStaleness, job: { ...valid.job, round: ROUND + rounds } })
      expect(checkSubmission(behind(1, 1)).outputHash).toBe(valid.signed.claim.outputHash)
      expect(checkSubmission(behind(2, 2)).outputHash).toBe(valid.signed.claim.outputHash)
      const answer = refusal(behind(3, 2))
      expect(answer).toMatchObject({ code: 'stale_round', status: 409 })
      expect(answer.message).toBe(`the claim is for round ${ROUND}, the job is at round ${ROUND + 3} and averages answers at most 2 round(s) old`)
    })

    it('stale_round: a finished job takes no more answers, however recent', () => {
      const answer = refusal({ ...valid, maxStaleness: 4, job: { ...valid.job, round: ROUND + 1, status: 'finished' } })
      expect(answer).toMatchObject({ code: 'stale_round', status: 409 })
      expect(answer.message).toContain('the job has finished')
    })

    it('lease_expired: past its expiry', () => {
      const answer = refusal({ ...valid, now: EXPIRES_AT + 1 })
      expect(answer).toMatchObject({ code: 'lease_expired', status: 410 })
      expect(answer.message).toContain(new Date(EXPIRES_AT).toISOString())
      expect(answer.message).toContain('went back to the queue')
    })

    it('lease_expired: exactly at its expiry', () => {
      expect(refusal({ ...valid, now: EXPIRES_AT })).toMatchObject({ code: 'lease_expired', status: 410 })
    })

    it('lease_expired: marked expired by the store (its unit was leased again), though the clock says otherwise', () => {
      expect(refusal({ ...valid, attempt: attemptRow({ status: 'expired' }) })).toMatchObject({ code: 'lease_expired', status: 410 })
    })

    it('lease_expired: revoked because its holder was caught submitting wrong work, and says so', () => {
      const answer = refusal({ ...valid, attempt: attemptRow({ status: 'revoked' }) })
      expect(answer).toMatchObject({ code: 'lease_expired', status: 410 })
      expect(answer.message).toContain('revoked')
    })

    it("wrong_input: the claim's input is not the checkpoint its lease was issued with", () => {
      const answer = refusal({ ...valid, attempt: attemptRow({ input_hash: OTHER_CHECKPOINT }) })
      expect(answer).toMatchObject({ code: 'wrong_input', status: 409 })
      expect(answer.message).toContain(CHECKPOINT)
      expect(answer.message).toContain(OTHER_CHECKPOINT)
    })

    it('hash_mismatch: the bytes sent are not the ones the claim hashed', () => {
      const update = flipLast(valid.update)
      const answer = refusal({ ...valid, update })
      expect(answer).toMatchObject({ code: 'hash_mismatch', status: 400 })
      expect(answer.message).toBe(`the update hashes to ${sha256Hex(update)}, the claim says ${valid.signed.claim.outputHash}`)
    })

    it('malformed_submission: bytes that are not a tensor list (though the claim hashes them correctly)', () => {
      const answer = refusal(notTensors)
      expect(answer).toMatchObject({ code: 'malformed_submission', status: 400 })
      expect(answer.message).toMatch(/^update: /)
    })

    it("wrong_shapes: a tensor list that is not the model's", () => {
      const answer = refusal({ ...valid, shapes: [[2, 3], [2]] })
      expect(answer).toMatchObject({ code: 'wrong_shapes', status: 422 })
      expect(answer.message).toContain('[[3,2],[2]]')
      expect(answer.message).toContain('[[2,3],[2]]')
    })

    it.each([
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['-Infinity', Number.NEGATIVE_INFINITY],
    ])('non_finite_update: %s', async (name, value) => {
      const answer = refusal(await factsFor({ update: withValue(value, 1, 1) }))
      expect(answer).toMatchObject({ code: 'non_finite_update', status: 422 })
      expect(answer.message).toBe(`update tensor 1 holds ${name} at index 1`)
    })
  })

  describe('precedence', () => {
    /**
     * How to make each check fail, in the documented order. Applied from the last to the first, so each
     * breakage may build on the facts the later ones left (e.g. lease_not_found drops the mismatched row).
     */
    const breakages: [ErrorCode, (f: SubmissionFacts) => SubmissionFacts][] = [
      ['bad_signature', (f) => ({ ...f, signed: forged.signed, signer: forged.signer })],
      ['lease_not_found', (f) => ({ ...f, attempt: null })],
      ['lease_not_yours', (f) => ({ ...f, attempt: { ...f.attempt!, contributor: bob.address } })],
      ['claim_mismatch', (f) => ({ ...f, attempt: { ...f.attempt!, unit: UNIT + 1 } })],
      ['already_submitted', (f) => ({ ...f, attempt: { ...f.attempt!, status: 'submitted' } })],
      ['stale_round', (f) => ({ ...f, job: { ...f.job, round: ROUND + 1 } })],
      ['lease_expired', (f) => ({ ...f, now: EXPIRES_AT + 60_000 })],
      ['wrong_input', (f) => ({ ...f, attempt: { ...f.attempt!, input_hash: OTHER_CHECKPOINT } })],
      ['hash_mismatch', (f) => ({ ...f, update: flipLast(f.update) })],
      ['malformed_submission', (f) => ({ ...f, signed: notTensors.signed, update: notTensors.update })],
      ['wrong_shapes', (f) => ({ ...f, shapes: [[4], [2]] })],
      ['non_finite_update', (f) => ({ ...f, signed: withNaN.signed, update: withNaN.update })],
    ]

    it('every breakage fails its own check alone', () => {
      for (const [code, breakIt] of breakages) expect(refusal(breakIt(valid)).code).toBe(code)
    })

    it.each(breakages.map(([code], i) => [code, i] as const))('%s is reported even when every later check fails too', (code, i) => {
      let facts = valid
      for (let j = breakages.length - 1; j >= i; j--) facts = breakages[j]![1](facts)
      expect(refusal(facts).code).toBe(code)
    })

    it("a forged signature is refused before the lease is looked at: a stranger learns nothing about other people's leases", () => {
      // Bob forges Alice's claim on Alice's lease, on no lease at all, and on Carol's expired lease for another unit.
      const onAlicesLease = refusal(forged)
      const onNoLease = refusal({ ...forged, attempt: null })
      const onOtherLease = refusal({ ...forged, attempt: attemptRow({ contributor: bob.address, unit: 7, status: 'expired' }) })
      expect(onAlicesLease).toEqual(onNoLease)
      expect(onOtherLease).toEqual(onNoLease)
      expect(onNoLease.code).toBe('bad_signature')
      expect(onNoLease.message).not.toContain(LEASE_ID)
    })

    it('an expired lease whose claim also has a wrong input hash says lease_expired: the cause the contributor can act on', () => {
      const answer = refusal({ ...valid, now: EXPIRES_AT + 1, attempt: attemptRow({ input_hash: OTHER_CHECKPOINT }) })
      expect(answer.code).toBe('lease_expired')
    })

    it("a claim for a round that closed says stale_round, not wrong_input (the old round's checkpoint is no longer current)", () => {
      const answer = refusal({ ...valid, job: { ...valid.job, round: ROUND + 1, checkpoint: OTHER_CHECKPOINT } })
      expect(answer.code).toBe('stale_round')
    })

    it('a replayed submission says already_submitted, even after its round closed and its lease ran out', () => {
      const answer = refusal({ ...valid, attempt: attemptRow({ status: 'submitted' }), job: { ...valid.job, round: ROUND + 1, checkpoint: OTHER_CHECKPOINT }, now: EXPIRES_AT + 1 })
      expect(answer.code).toBe('already_submitted')
    })

    it('a tampered update is reported as hash_mismatch before its bytes are parsed', () => {
      expect(refusal({ ...notTensors, update: flipLast(notTensors.update) }).code).toBe('hash_mismatch')
    })
  })
})
