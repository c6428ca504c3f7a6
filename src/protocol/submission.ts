import { z } from 'zod'
import { signedClaimSchema, type SignedClaim } from './claim.ts'

/**
 * The JSON part of a submission: the signed claim, plus the mean training loss the contributor saw,
 * which is informational only (shown on curves, never trusted for acceptance, so it is not signed).
 */
export const submissionHeaderSchema = signedClaimSchema.extend({ trainLoss: z.number().optional() })
export type SubmissionHeader = z.infer<typeof submissionHeaderSchema>

/**
 * One POST carries a signed claim and the update it is about, so the coordinator checks both before it
 * records anything:
 *
 *   'TTS1' | u32 LE length of the JSON | JSON {claim, signature, trainLoss?} (UTF-8) | canonical tensor bytes of Δ
 */
export const SUBMISSION_MAGIC = 0x31535454 // 'TTS1' as a little-endian u32
export const MAX_CLAIM_JSON_BYTES = 4096

export class SubmissionFormatError extends Error {
  override name = 'SubmissionFormatError'
}

export function encodeSubmission(signed: SignedClaim | SubmissionHeader, update: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(signed))
  const out = new Uint8Array(8 + json.byteLength + update.byteLength)
  const view = new DataView(out.buffer)
  view.setUint32(0, SUBMISSION_MAGIC, true)
  view.setUint32(4, json.byteLength, true)
  out.set(json, 8)
  out.set(update, 8 + json.byteLength)
  return out
}

export function decodeSubmission(bytes: Uint8Array): { signed: SubmissionHeader; update: Uint8Array } {
  if (bytes.byteLength < 8) throw new SubmissionFormatError('submission shorter than its 8-byte header')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== SUBMISSION_MAGIC) throw new SubmissionFormatError("submission does not start with 'TTS1'")
  const jsonLength = view.getUint32(4, true)
  if (jsonLength > MAX_CLAIM_JSON_BYTES || 8 + jsonLength > bytes.byteLength) {
    throw new SubmissionFormatError(`claim JSON length ${jsonLength} is out of range`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + jsonLength)))
  } catch {
    throw new SubmissionFormatError('claim is not valid UTF-8 JSON')
  }
  const result = submissionHeaderSchema.safeParse(parsed)
  if (!result.success) {
    throw new SubmissionFormatError(
      `malformed claim: ${result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    )
  }
  return { signed: result.data, update: bytes.subarray(8 + jsonLength) }
}
