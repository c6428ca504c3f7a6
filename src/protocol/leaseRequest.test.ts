import { zeroAddress, type Address } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import type { Hash } from './hash.ts'
import { leaseRequestDigest, leaseRequestSchema, recoverLeaseRequestSigner, referrerOf, requestedInnerSteps, signLeaseRequest, type LeaseRequest } from './leaseRequest.ts'

const domain = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' as Address }
const request: LeaseRequest = {
  jobId: `0x${'11'.repeat(32)}` as Hash,
  contributor: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  nonce: `0x${'22'.repeat(32)}` as Hash,
  issuedAt: 1_780_000_000_000,
  audience: 'tabtrain-test',
}
const site: Address = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC'

describe('LeaseRequest (EIP-712)', () => {
  /**
   * Pinned: every signer (pages, Node contributors, other implementations) must hash the same struct. The
   * digests changed when `address referrer` joined the type (the widget's host site, issue 10) and again
   * when `uint32 innerSteps` did (the H a contributor sized its units to, issue 11); a change here breaks
   * every client that signs lease requests.
   */
  it('hashes to pinned digests, with and without a referrer and an asked H', () => {
    expect(leaseRequestDigest(request, domain)).toBe('0x624012656b81479720f7e978c2dbc2a5a80dbababc6468e0d60531746a071729')
    expect(leaseRequestDigest({ ...request, referrer: zeroAddress, innerSteps: 0 }, domain)).toBe('0x624012656b81479720f7e978c2dbc2a5a80dbababc6468e0d60531746a071729')
    expect(leaseRequestDigest({ ...request, referrer: site }, domain)).toBe('0x0eadc9426a90e4184b1a412ed1b8422d52509db2d147e8a52cd65c6dd271245d')
    expect(leaseRequestDigest({ ...request, innerSteps: 40 }, domain)).toBe('0xab2395c99c68cfc872158682c5142223f3d082dd6334852bf15cc5c1f5e49ab7')
  })

  it('signs the asked H, so nobody between the tab and the coordinator can change a unit\'s size', async () => {
    const account = privateKeyToAccount(generatePrivateKey())
    const signed = await signLeaseRequest(account, { jobId: request.jobId, audience: 'a', domain, innerSteps: 40 })
    expect(signed.request.innerSteps).toBe(40)
    expect(requestedInnerSteps(signed.request)).toBe(40)
    expect(await recoverLeaseRequestSigner(signed, domain)).toBe(account.address)
    expect(await recoverLeaseRequestSigner({ ...signed, request: { ...signed.request, innerSteps: 400 } }, domain)).not.toBe(account.address)
    const plain = await signLeaseRequest(account, { jobId: request.jobId, audience: 'a', domain })
    expect('innerSteps' in plain.request).toBe(false)
    expect(requestedInnerSteps(plain.request)).toBeNull()
    expect(leaseRequestSchema.safeParse({ ...request, innerSteps: 1.5 }).success).toBe(false)
  })

  it('signs the referrer, so nobody can add or swap it without the contributor', async () => {
    const account = privateKeyToAccount(generatePrivateKey())
    const signed = await signLeaseRequest(account, { jobId: request.jobId, audience: 'a', domain, referrer: site.toLowerCase() as Address })
    expect(signed.request.referrer).toBe(site)
    expect(referrerOf(signed.request)).toBe(site)
    expect(await recoverLeaseRequestSigner(signed, domain)).toBe(account.address)
    const other = privateKeyToAccount(generatePrivateKey()).address
    expect(await recoverLeaseRequestSigner({ ...signed, request: { ...signed.request, referrer: other } }, domain)).not.toBe(account.address)
    const { referrer: _dropped, ...withoutReferrer } = signed.request
    expect(await recoverLeaseRequestSigner({ ...signed, request: withoutReferrer }, domain)).not.toBe(account.address)
  })

  it('treats a left-out or zero referrer as none', async () => {
    const account = privateKeyToAccount(generatePrivateKey())
    const plain = await signLeaseRequest(account, { jobId: request.jobId, audience: 'a', domain, referrer: zeroAddress })
    expect('referrer' in plain.request).toBe(false)
    expect(referrerOf(plain.request)).toBeNull()
    expect(leaseRequestSchema.safeParse({ ...request, referrer: 'not an address' }).success).toBe(false)
  })
})
