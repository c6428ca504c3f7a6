import { concat, encodeAbiParameters, getAddress, keccak256, toHex, type Address, type Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import {
  CLAIM_DOMAIN_NAME,
  CLAIM_DOMAIN_VERSION,
  claimDomain,
  recoverClaimSigner,
  signWorkClaim,
  signedClaimSchema,
  workClaimDigest,
  workClaimSchema,
  type ClaimDomainParams,
  type WorkClaim,
} from './claim.ts'
import type { Hash } from './hash.ts'

// Anvil's well-known development keys (accounts #1 and #2): never hold anything of value.
const KEY_A = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d'
const KEY_B = '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a'
const accountA = privateKeyToAccount(KEY_A)
const accountB = privateKeyToAccount(KEY_B)

const DOMAIN: ClaimDomainParams = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' }

const h = (byte: string) => `0x${byte.repeat(32)}` as Hash

function fixedClaim(): WorkClaim {
  return {
    jobId: h('11'),
    round: 3,
    unit: 5,
    inputHash: h('22'),
    outputHash: h('33'),
    contributor: accountA.address,
    deviceClass: 'webgpu|nvidia/ampere|chrome-130|bundle',
  }
}

/**
 * Pinned: the EIP-712 digest of `fixedClaim()` under the anvil domain. The contracts verify the same
 * struct; a change of field order, type, or domain name/version changes this value.
 */
const FIXED_CLAIM_DIGEST = '0x3fdd1746395e7cb8a9bb9ff3458466ef59bf34b92dc14d8ae19937bbc5a633c2'

/** The digest computed from the EIP-712 definition with nothing but keccak256 and ABI encoding. */
function digestByHand(claim: WorkClaim, domain: ClaimDomainParams): Hex {
  const text = (s: string) => keccak256(toHex(s))
  const domainTypeHash = text('EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)')
  const domainSeparator = keccak256(
    encodeAbiParameters(
      [{ type: 'bytes32' }, { type: 'bytes32' }, { type: 'bytes32' }, { type: 'uint256' }, { type: 'address' }],
      [domainTypeHash, text('TabTrain'), text('1'), BigInt(domain.chainId), domain.verifyingContract],
    ),
  )
  const claimTypeHash = text(
    'WorkClaim(bytes32 jobId,uint32 round,uint32 unit,bytes32 inputHash,bytes32 outputHash,address contributor,string deviceClass)',
  )
  const structHash = keccak256(
    encodeAbiParameters(
      [
        { type: 'bytes32' },
        { type: 'bytes32' },
        { type: 'uint32' },
        { type: 'uint32' },
        { type: 'bytes32' },
        { type: 'bytes32' },
        { type: 'address' },
        { type: 'bytes32' },
      ],
      [claimTypeHash, claim.jobId, claim.round, claim.unit, claim.inputHash, claim.outputHash, claim.contributor, text(claim.deviceClass)],
    ),
  )
  return keccak256(concat(['0x1901', domainSeparator, structHash]))
}

describe('EIP-712 work claims', () => {
  it('uses the documented domain', () => {
    expect(CLAIM_DOMAIN_NAME).toBe('TabTrain')
    expect(CLAIM_DOMAIN_VERSION).toBe('1')
    expect(claimDomain(DOMAIN)).toEqual({ name: 'TabTrain', version: '1', ...DOMAIN })
  })

  it('pins the digest of a fixed claim', () => {
    expect(accountA.address).toBe('0x70997970C51812dc3A010C7d01b50e0d17dc79C8')
    expect(workClaimDigest(fixedClaim(), DOMAIN)).toBe(FIXED_CLAIM_DIGEST)
  })

  it('matches the digest computed by hand from the EIP-712 definition', () => {
    expect(digestByHand(fixedClaim(), DOMAIN)).toBe(FIXED_CLAIM_DIGEST)
    const other = { ...fixedClaim(), round: 0xffff_ffff, unit: 0, deviceClass: 'ünïcode ✓' }
    const domain = { chainId: 1, verifyingContract: accountB.address }
    expect(workClaimDigest(other, domain)).toBe(digestByHand(other, domain))
  })

  it('changes the digest when the chain id or verifying contract changes', () => {
    const claim = fixedClaim()
    const digests = [
      workClaimDigest(claim, DOMAIN),
      workClaimDigest(claim, { ...DOMAIN, chainId: 1 }),
      workClaimDigest(claim, { ...DOMAIN, verifyingContract: '0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512' }),
    ]
    expect(new Set(digests).size).toBe(3)
  })

  it('changes the digest when any field of the claim changes', () => {
    const base = workClaimDigest(fixedClaim(), DOMAIN)
    const variants: Partial<WorkClaim>[] = [
      { jobId: h('12') },
      { round: 4 },
      { unit: 6 },
      { inputHash: h('23') },
      { outputHash: h('34') },
      { contributor: accountB.address },
      { deviceClass: 'webgpu|other' },
    ]
    const digests = variants.map((v) => workClaimDigest({ ...fixedClaim(), ...v }, DOMAIN))
    expect(digests).not.toContain(base)
    expect(new Set(digests).size).toBe(variants.length)
  })

  it('signs and recovers the signer (round trip)', async () => {
    const signed = await signWorkClaim(accountA, fixedClaim(), DOMAIN)
    expect(signed.claim).toEqual(fixedClaim())
    expect(signed.signature).toMatch(/^0x[0-9a-f]{130}$/)
    expect(await recoverClaimSigner(signed, DOMAIN)).toBe(accountA.address)
    // Deterministic (RFC 6979) signatures: the same claim signs to the same bytes.
    expect((await signWorkClaim(accountA, fixedClaim(), DOMAIN)).signature).toBe(signed.signature)
    // And what it signs is exactly the digest.
    expect(await accountA.sign({ hash: workClaimDigest(fixedClaim(), DOMAIN) })).toBe(signed.signature)
  })

  it('recovers a different address under another chain id or verifying contract', async () => {
    const signed = await signWorkClaim(accountA, fixedClaim(), DOMAIN)
    const otherChain = await recoverClaimSigner(signed, { ...DOMAIN, chainId: 1 })
    const otherContract = await recoverClaimSigner(signed, { ...DOMAIN, verifyingContract: accountB.address })
    for (const recovered of [otherChain, otherContract]) {
      expect(recovered).not.toBeNull()
      expect(recovered).not.toBe(accountA.address)
    }
    expect(otherChain).not.toBe(otherContract)
  })

  it('recovers a different address when the claim is altered after signing', async () => {
    const signed = await signWorkClaim(accountA, fixedClaim(), DOMAIN)
    const tampered = { ...signed, claim: { ...signed.claim, outputHash: h('44') } }
    const recovered = await recoverClaimSigner(tampered, DOMAIN)
    expect(recovered).not.toBe(accountA.address)
  })

  it('recovers the real signer of a claim made in someone else\'s name', async () => {
    // A signer that pretends to be A but signs with B's key.
    const impostor = { address: accountA.address, signTypedData: accountB.signTypedData }
    const forged = await signWorkClaim(impostor, fixedClaim(), DOMAIN)
    expect(await recoverClaimSigner(forged, DOMAIN)).toBe(accountB.address)
  })

  it('refuses to sign a claim for another contributor', async () => {
    await expect(signWorkClaim(accountB, fixedClaim(), DOMAIN)).rejects.toThrow(/cannot sign a claim for contributor/)
  })

  it('returns null for a signature that cannot be recovered', async () => {
    const signed = await signWorkClaim(accountA, fixedClaim(), DOMAIN)
    const zero = { ...signed, signature: `0x${'00'.repeat(65)}` as Hex }
    expect(await recoverClaimSigner(zero, DOMAIN)).toBeNull()
  })
})

describe('claim schemas', () => {
  const json = () => JSON.parse(JSON.stringify(fixedClaim())) as Record<string, unknown>

  it('accepts a claim and normalises the contributor to its checksummed form', () => {
    const parsed = workClaimSchema.parse({ ...json(), contributor: accountA.address.toLowerCase() })
    expect(parsed.contributor).toBe(accountA.address)
    expect(parsed.contributor).toBe(getAddress(accountA.address.toLowerCase() as Address))
  })

  it.each([
    ['jobId', { jobId: '0x1234' }],
    ['jobId', { jobId: h('AB') }],
    ['round', { round: -1 }],
    ['round', { round: 1.5 }],
    ['round', { round: 2 ** 32 }],
    ['unit', { unit: '3' }],
    ['inputHash', { inputHash: undefined }],
    ['outputHash', { outputHash: 7 }],
    ['contributor', { contributor: '0x1234' }],
    ['contributor', { contributor: 'not an address' }],
    ['deviceClass', { deviceClass: '' }],
    ['deviceClass', { deviceClass: 'x'.repeat(257) }],
  ])('rejects a bad %s', (field, patch) => {
    const result = workClaimSchema.safeParse({ ...json(), ...patch })
    expect(result.success).toBe(false)
    expect(result.error!.issues.map((i) => i.path.join('.'))).toEqual([field])
  })

  it('signedClaimSchema requires a 65-byte hex signature', async () => {
    const signed = JSON.parse(JSON.stringify(await signWorkClaim(accountA, fixedClaim(), DOMAIN)))
    expect(signedClaimSchema.parse(signed).signature).toBe(signed.signature)
    for (const signature of ['0x1234', signed.signature.slice(0, -2), `${signed.signature}00`, signed.signature.slice(2), 42]) {
      const result = signedClaimSchema.safeParse({ ...signed, signature })
      expect(result.success).toBe(false)
      expect(result.error!.issues[0]!.path).toEqual(['signature'])
    }
  })
})
