import { z } from 'zod'
import { getAddress, hashTypedData, recoverTypedDataAddress, type Address, type Hex, type TypedDataDomain } from 'viem'
import { addressSchema } from './address.ts'
import { hashSchema, type Hash } from './hash.ts'

/**
 * The EIP-712 claim a contributor signs over one unit. Contracts (slashing by conflicting claims) and
 * the coordinator verify the same struct, so its field order and types are part of the protocol:
 * changing them changes every digest, which the pinned digest test catches.
 */
export const workClaimTypes = {
  WorkClaim: [
    { name: 'jobId', type: 'bytes32' },
    { name: 'round', type: 'uint32' },
    { name: 'unit', type: 'uint32' },
    { name: 'inputHash', type: 'bytes32' },
    { name: 'outputHash', type: 'bytes32' },
    { name: 'contributor', type: 'address' },
    { name: 'deviceClass', type: 'string' },
  ],
} as const

export const CLAIM_DOMAIN_NAME = 'TabTrain'
export const CLAIM_DOMAIN_VERSION = '1'

export interface ClaimDomainParams {
  chainId: number
  verifyingContract: Address
}

export function claimDomain({ chainId, verifyingContract }: ClaimDomainParams) {
  return {
    name: CLAIM_DOMAIN_NAME,
    version: CLAIM_DOMAIN_VERSION,
    chainId,
    verifyingContract,
  } as const satisfies TypedDataDomain
}

const u32 = z.number().int().min(0).max(0xffff_ffff)

export const workClaimSchema = z.object({
  jobId: hashSchema,
  round: u32,
  unit: u32,
  inputHash: hashSchema,
  outputHash: hashSchema,
  contributor: addressSchema,
  deviceClass: z.string().min(1).max(256),
})

export type WorkClaim = z.infer<typeof workClaimSchema>

export const signatureSchema = z
  .string()
  .regex(/^0x[0-9a-fA-F]{130}$/, 'expected a 65-byte hex signature')
  .transform((s) => s as Hex)

export const signedClaimSchema = z.object({ claim: workClaimSchema, signature: signatureSchema })
export type SignedClaim = z.infer<typeof signedClaimSchema>

function typedData(claim: WorkClaim, domain: ClaimDomainParams) {
  return {
    domain: claimDomain(domain),
    types: workClaimTypes,
    primaryType: 'WorkClaim',
    message: claim,
  } as const
}

/** The EIP-712 digest that is signed: keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(claim)). */
export function workClaimDigest(claim: WorkClaim, domain: ClaimDomainParams): Hash {
  return hashTypedData(typedData(claim, domain)) as Hash
}

/** Anything that can sign typed data: a viem local account, a wallet client bound to an account. */
export interface TypedDataSigner {
  address: Address
  signTypedData: (args: ReturnType<typeof typedData>) => Promise<Hex>
}

export async function signWorkClaim(signer: TypedDataSigner, claim: WorkClaim, domain: ClaimDomainParams): Promise<SignedClaim> {
  if (getAddress(signer.address) !== getAddress(claim.contributor)) {
    throw new Error(`signer ${signer.address} cannot sign a claim for contributor ${claim.contributor}`)
  }
  const signature = await signer.signTypedData(typedData(claim, domain))
  return { claim, signature }
}

/** The address that signed, or null when the signature is malformed beyond recovery. */
export async function recoverClaimSigner(signed: SignedClaim, domain: ClaimDomainParams): Promise<Address | null> {
  try {
    return await recoverTypedDataAddress({ ...typedData(signed.claim, domain), signature: signed.signature })
  } catch {
    return null
  }
}
