import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { signWorkClaim, type SignedClaim, type WorkClaim } from './claim.ts'
import type { Hash } from './hash.ts'
import {
  MAX_CLAIM_JSON_BYTES,
  SUBMISSION_MAGIC,
  SubmissionFormatError,
  decodeSubmission,
  encodeSubmission,
} from './submission.ts'
import { decodeTensorList, hashTensorList } from './tensorBytes.ts'
import { leaseSchema, workUnitSchema } from './unit.ts'

const account = privateKeyToAccount('0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d')
const DOMAIN = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' } as const
const h = (byte: string) => `0x${byte.repeat(32)}` as Hash

const update = hashTensorList({ shapes: [[2, 2], [2]], values: [new Float32Array([0.5, -0.25, 1e-3, 0]), new Float32Array([3, 4])] })

async function signed(): Promise<SignedClaim> {
  const claim: WorkClaim = {
    jobId: h('11'),
    round: 0,
    unit: 1,
    inputHash: h('22'),
    outputHash: update.hash,
    contributor: account.address,
    deviceClass: 'test',
  }
  return signWorkClaim(account, claim, DOMAIN)
}

/** An envelope with the given JSON text (not necessarily valid) and update bytes. */
function envelope(jsonText: string, updateBytes = update.bytes, magic = SUBMISSION_MAGIC, declaredLength?: number): Uint8Array {
  const json = new TextEncoder().encode(jsonText)
  const out = new Uint8Array(8 + json.byteLength + updateBytes.byteLength)
  const view = new DataView(out.buffer)
  view.setUint32(0, magic, true)
  view.setUint32(4, declaredLength ?? json.byteLength, true)
  out.set(json, 8)
  out.set(updateBytes, 8 + json.byteLength)
  return out
}

function formatError(bytes: Uint8Array): SubmissionFormatError {
  try {
    decodeSubmission(bytes)
  } catch (error) {
    expect(error).toBeInstanceOf(SubmissionFormatError)
    return error as SubmissionFormatError
  }
  throw new Error('decodeSubmission accepted the input')
}

describe('submission envelope', () => {
  it("starts with 'TTS1' and the little-endian JSON length", async () => {
    const s = await signed()
    const body = encodeSubmission(s, update.bytes)
    expect(String.fromCharCode(...body.subarray(0, 4))).toBe('TTS1')
    const jsonLength = new DataView(body.buffer).getUint32(4, true)
    expect(jsonLength).toBe(new TextEncoder().encode(JSON.stringify(s)).byteLength)
    expect(body.byteLength).toBe(8 + jsonLength + update.bytes.byteLength)
  })

  it('round-trips the signed claim, the train loss and the update bytes', async () => {
    const s = await signed()
    const decoded = decodeSubmission(encodeSubmission({ ...s, trainLoss: 1.25 }, update.bytes))
    expect(decoded.signed).toEqual({ ...s, trainLoss: 1.25 })
    expect(decoded.update).toEqual(update.bytes)
    expect(decodeTensorList(decoded.update)).toEqual(decodeTensorList(update.bytes))
  })

  it('treats the train loss as optional', async () => {
    const s = await signed()
    const decoded = decodeSubmission(encodeSubmission(s, update.bytes))
    expect(decoded.signed).toEqual(s)
    expect(decoded.signed.trainLoss).toBeUndefined()
  })

  it('decodes from a view inside a larger buffer', async () => {
    const body = encodeSubmission(await signed(), update.bytes)
    const backing = new Uint8Array(body.byteLength + 5)
    backing.set(body, 3)
    const decoded = decodeSubmission(backing.subarray(3, 3 + body.byteLength))
    expect(decoded.update).toEqual(update.bytes)
    expect(decoded.signed.claim.unit).toBe(1)
  })

  it('allows an empty update (the coordinator rejects it later, as a tensor list)', async () => {
    const decoded = decodeSubmission(encodeSubmission(await signed(), new Uint8Array()))
    expect(decoded.update.byteLength).toBe(0)
  })

  it('rejects a body shorter than the header', () => {
    expect(formatError(new Uint8Array(7)).message).toMatch(/shorter than its 8-byte header/)
    expect(formatError(new Uint8Array()).message).toMatch(/shorter than its 8-byte header/)
  })

  it('rejects a bad magic number', async () => {
    const body = encodeSubmission(await signed(), update.bytes)
    body[3] = 0x32 // 'TTS2'
    expect(formatError(body).message).toMatch(/does not start with 'TTS1'/)
    // Tensor bytes sent without the envelope are refused too.
    expect(formatError(update.bytes).message).toMatch(/does not start with 'TTS1'/)
  })

  it('rejects a claim JSON length above the limit, even when the bytes are there', async () => {
    const text = JSON.stringify({ ...(await signed()), padding: 'x'.repeat(MAX_CLAIM_JSON_BYTES) })
    expect(text.length).toBeGreaterThan(MAX_CLAIM_JSON_BYTES)
    expect(formatError(envelope(text)).message).toMatch(/claim JSON length \d+ is out of range/)
    expect(formatError(envelope('{}', new Uint8Array(), SUBMISSION_MAGIC, 0xffff_ffff)).message).toMatch(
      /claim JSON length 4294967295 is out of range/,
    )
  })

  it('rejects a claim JSON length beyond the end of the body', async () => {
    const text = JSON.stringify(await signed())
    const body = envelope(text, new Uint8Array())
    const truncated = body.subarray(0, body.byteLength - 1)
    expect(formatError(truncated).message).toMatch(/out of range/)
  })

  it('rejects JSON that does not parse or is not UTF-8', () => {
    expect(formatError(envelope('{"claim":')).message).toMatch(/not valid UTF-8 JSON/)
    const bad = envelope('{"a":"xx"}')
    bad[8 + 6] = 0xff // invalid UTF-8 inside the string
    expect(formatError(bad).message).toMatch(/not valid UTF-8 JSON/)
  })

  it('rejects malformed claim fields, naming each one', async () => {
    const s = JSON.parse(JSON.stringify(await signed()))
    const cases: Array<[string, unknown]> = [
      ['claim.jobId', { ...s, claim: { ...s.claim, jobId: '0x12' } }],
      ['claim.round', { ...s, claim: { ...s.claim, round: -1 } }],
      ['claim.contributor', { ...s, claim: { ...s.claim, contributor: '0xnope' } }],
      ['claim.outputHash', { ...s, claim: { ...s.claim, outputHash: s.claim.outputHash.toUpperCase() } }],
      ['signature', { ...s, signature: '0x00' }],
      ['trainLoss', { ...s, trainLoss: 'low' }],
      ['claim', { signature: s.signature }],
    ]
    for (const [field, value] of cases) {
      const message = formatError(envelope(JSON.stringify(value))).message
      expect(message, field).toMatch(/^malformed claim: /)
      expect(message, field).toContain(`${field}: `)
    }
    expect(formatError(envelope('[]')).message).toMatch(/^malformed claim: \(root\): /)
  })
})

describe('unit and lease schemas', () => {
  const unit = { jobId: h('11'), round: 2, unit: 0, inputHash: h('22') }

  it('parse a valid unit and lease', () => {
    expect(workUnitSchema.parse(unit)).toEqual(unit)
    const lease = { id: 'lease-1', contributor: account.address, expiresAt: 123, unit }
    expect(leaseSchema.parse(lease)).toEqual(lease)
  })

  it('reject negative or fractional rounds and units, and an empty lease id', () => {
    expect(workUnitSchema.safeParse({ ...unit, round: -1 }).success).toBe(false)
    expect(workUnitSchema.safeParse({ ...unit, unit: 0.5 }).success).toBe(false)
    expect(workUnitSchema.safeParse({ ...unit, inputHash: 'x' }).success).toBe(false)
    expect(leaseSchema.safeParse({ id: '', contributor: account.address, expiresAt: 1, unit }).success).toBe(false)
  })
})
