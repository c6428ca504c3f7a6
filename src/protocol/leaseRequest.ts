import { z } from 'zod'
import { getAddress, hashTypedData, recoverTypedDataAddress, zeroAddress, type Address, type Hex } from 'viem'
import { addressSchema } from './address.ts'
import { claimDomain, signatureSchema, type ClaimDomainParams } from './claim.ts'
import { hashSchema, type Hash } from './hash.ts'

/**
 * A lease costs the coordinator a unit's slot for the lease's lifetime, so it is granted only to an
 * address that signs for it. EIP-712 in the claims' domain (same chain, same DisputeResolver), with a
 * primary type of its own, so a lease request can never be replayed as a claim or the other way round.
 *
 * Replay protection: `nonce` is 32 random bytes the coordinator remembers until `issuedAt` falls out of
 * the freshness window; `audience` names the coordinator (its `coordinatorId` in `/api/info`), so a request
 * signed for one coordinator cannot be replayed at another one that shares the chain.
 *
 * `referrer` is the site whose embedded widget the contributor trains from (`REFERRER_SHARE_BPS` of each
 * unit's price goes to it, out of the contributor's pay). It is part of what the contributor signs, so the
 * share leaves the contributor's reward only with the contributor's own consent: neither the host page nor
 * anyone between the tab and the coordinator can add or swap it. The zero address means no referrer, and a
 * request that leaves the field out is signed and checked with the zero address.
 *
 * `innerSteps` is the H the contributor asks for, sized to its device (src/worker/unitSizing.ts). The
 * coordinator clamps it to the job's [innerSteps, maxInnerSteps] and pay follows the examples trained, so
 * it is signed like the rest: nobody between the tab and the coordinator can inflate a unit. 0, or a
 * request that leaves the field out, asks for the job's own H.
 */
export const leaseRequestTypes = {
  LeaseRequest: [
    { name: 'jobId', type: 'bytes32' },
    { name: 'contributor', type: 'address' },
    { name: 'nonce', type: 'bytes32' },
    { name: 'issuedAt', type: 'uint64' },
    { name: 'audience', type: 'string' },
    { name: 'referrer', type: 'address' },
    { name: 'innerSteps', type: 'uint32' },
  ],
} as const

/**
 * How far `issuedAt` (ms since the epoch) may be from the coordinator's clock. Wide enough for a laptop
 * whose clock drifts by a minute or two, narrow enough that the nonce table stays small.
 */
export const LEASE_REQUEST_MAX_SKEW_MS = 5 * 60_000

export const leaseRequestSchema = z.object({
  jobId: hashSchema,
  contributor: addressSchema,
  nonce: hashSchema,
  issuedAt: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  audience: z.string().min(1).max(100),
  /** Omitted or the zero address: no referrer. */
  referrer: addressSchema.optional(),
  /** Omitted or 0: the job's H (`training.innerSteps`). */
  innerSteps: z.number().int().min(0).max(0xffff_ffff).optional(),
})
export type LeaseRequest = z.infer<typeof leaseRequestSchema>

/** Body of `POST /api/jobs/:jobId/leases`. */
export const signedLeaseRequestSchema = z.object({ request: leaseRequestSchema, signature: signatureSchema })
export type SignedLeaseRequest = z.infer<typeof signedLeaseRequestSchema>

function typedData(request: LeaseRequest, domain: ClaimDomainParams) {
  return {
    domain: claimDomain(domain),
    types: leaseRequestTypes,
    primaryType: 'LeaseRequest',
    message: { ...request, issuedAt: BigInt(request.issuedAt), referrer: request.referrer ?? zeroAddress, innerSteps: request.innerSteps ?? 0 },
  } as const
}

export function leaseRequestDigest(request: LeaseRequest, domain: ClaimDomainParams): Hash {
  return hashTypedData(typedData(request, domain)) as Hash
}

/** Anything that signs EIP-712 typed data: a viem local account or a wallet client bound to one. */
export interface LeaseRequestSigner {
  address: Address
  signTypedData: (args: ReturnType<typeof typedData>) => Promise<Hex>
}

function randomNonce(): Hash {
  const bytes = new Uint8Array(32)
  crypto.getRandomValues(bytes)
  return `0x${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}` as Hash
}

/** Signs a fresh lease request for `jobId` at time `now` (ms since the epoch). */
export async function signLeaseRequest(
  signer: LeaseRequestSigner,
  params: { jobId: Hash; audience: string; domain: ClaimDomainParams; now?: number; nonce?: Hash; referrer?: Address | null; innerSteps?: number | null },
): Promise<SignedLeaseRequest> {
  const request: LeaseRequest = {
    jobId: params.jobId,
    contributor: getAddress(signer.address),
    nonce: params.nonce ?? randomNonce(),
    issuedAt: Math.floor(params.now ?? Date.now()),
    audience: params.audience,
    ...(params.referrer && params.referrer !== zeroAddress ? { referrer: getAddress(params.referrer) } : {}),
    ...(params.innerSteps ? { innerSteps: params.innerSteps } : {}),
  }
  const signature = await signer.signTypedData(typedData(request, params.domain))
  return { request, signature }
}

/** The address that signed, or null when the signature does not recover. */
export async function recoverLeaseRequestSigner(signed: SignedLeaseRequest, domain: ClaimDomainParams): Promise<Address | null> {
  try {
    return await recoverTypedDataAddress({ ...typedData(signed.request, domain), signature: signed.signature })
  } catch {
    return null
  }
}

/** The referrer a verified request names, or null for none (left out or the zero address). */
export function referrerOf(request: LeaseRequest): Address | null {
  return request.referrer && request.referrer !== zeroAddress ? request.referrer : null
}

/** The H a verified request asks for, or null for the job's own (left out or 0). */
export function requestedInnerSteps(request: LeaseRequest): number | null {
  return request.innerSteps ? request.innerSteps : null
}
