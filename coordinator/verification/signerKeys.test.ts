import { secp256k1 } from '@noble/curves/secp256k1'
import type { Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { describe, expect, it } from 'vitest'
import { recoverClaimSigner, signWorkClaim, workClaimDigest, type SignedClaim, type WorkClaim } from '../../src/protocol/index.ts'
import { alice, bob, TEST_DOMAIN } from '../testing/fixtures.ts'
import { fastWorkClaimDigest, SignerKeys } from './signerKeys.ts'

const claimOf = (contributor: `0x${string}`, unit: number, deviceClass = 'webgpu:test'): WorkClaim => ({
  jobId: `0x${'11'.repeat(32)}`,
  round: 7,
  unit,
  inputHash: `0x${'22'.repeat(32)}`,
  outputHash: `0x${(unit + 1).toString(16).padStart(64, '0')}`,
  contributor,
  deviceClass,
})

/** The same signature with another v byte (27/28 or 0/1). */
const withV = (signature: Hex, v: number): Hex => `${signature.slice(0, 130)}${v.toString(16).padStart(2, '0')}` as Hex

/** The malleable twin (r, n − s, other parity): recovery accepts it and yields the same key. */
function highS(signature: Hex): Hex {
  const s = BigInt(`0x${signature.slice(66, 130)}`)
  const v = Number.parseInt(signature.slice(130), 16)
  return `${signature.slice(0, 66)}${(secp256k1.CURVE.n - s).toString(16).padStart(64, '0')}${(v === 27 ? 28 : 27).toString(16)}` as Hex
}

describe('SignerKeys: signature checks against known public keys', () => {
  it('hashes claims exactly as viem does (EIP-712 digest pinned for one claim)', () => {
    const claim = claimOf(alice.address, 3, 'webgpu:apple/m2 ü')
    expect(fastWorkClaimDigest(claim, TEST_DOMAIN)).toBe(workClaimDigest(claim, TEST_DOMAIN))
    expect(fastWorkClaimDigest(claimOf(alice.address, 0), TEST_DOMAIN)).toBe('0x8465750ff971ca6ff13314ff2ff3493660ae25978c1cb9e894b62f81d92882f0')
    for (let unit = 0; unit < 20; unit++) {
      const claim = { ...claimOf(bob.address, unit * 7919), round: unit * 104_729 }
      expect(fastWorkClaimDigest(claim, TEST_DOMAIN)).toBe(workClaimDigest(claim, TEST_DOMAIN))
    }
  })

  it('returns what recovery returns, before and after the key is known and once its table is built, for good and bad signatures', async () => {
    const keys = new SignerKeys()
    const mallory = privateKeyToAccount(generatePrivateKey())
    const cases: SignedClaim[] = []
    for (let unit = 0; unit < 4; unit++) {
      const good = await signWorkClaim(alice, claimOf(alice.address, unit), TEST_DOMAIN)
      const v = Number.parseInt(good.signature.slice(130), 16)
      cases.push(
        good,
        { ...good, signature: withV(good.signature, v - 27) }, // 0/1 form: recovery takes it
        { ...good, signature: withV(good.signature, v === 27 ? 28 : 27) }, // wrong parity: recovers to someone else
        { ...good, signature: withV(good.signature, 29) }, // no such v: does not recover
        { ...good, signature: highS(good.signature) }, // the malleable twin
        // Mallory's signature over a claim that names alice: recovers to mallory, never to alice.
        { claim: claimOf(alice.address, unit), signature: (await signWorkClaim(mallory, claimOf(mallory.address, unit), TEST_DOMAIN)).signature },
        { claim: claimOf(alice.address, unit), signature: (await signWorkClaim(mallory, { ...claimOf(mallory.address, unit), contributor: mallory.address }, TEST_DOMAIN)).signature },
        // alice's own signature of another unit, replayed on this one.
        { claim: claimOf(alice.address, unit), signature: (await signWorkClaim(alice, claimOf(alice.address, unit + 100), TEST_DOMAIN)).signature },
        // r or s out of range.
        { ...good, signature: `0x${'00'.repeat(32)}${good.signature.slice(66)}` as Hex },
        { ...good, signature: `${good.signature.slice(0, 66)}${secp256k1.CURVE.n.toString(16)}${good.signature.slice(130)}` as Hex },
      )
    }
    // Three passes: key unknown, key known without a table, key known with its precomputed table.
    for (let pass = 0; pass < 3; pass++) {
      for (const signed of cases) {
        const { signer, digest } = await keys.claimSigner(signed, TEST_DOMAIN)
        expect(signer).toBe(await recoverClaimSigner(signed, TEST_DOMAIN))
        expect(digest).toBe(workClaimDigest(signed.claim, TEST_DOMAIN))
      }
    }
    const accepted = await Promise.all(cases.map(async (signed) => (await keys.claimSigner(signed, TEST_DOMAIN)).signer === alice.address))
    expect(accepted.filter(Boolean)).toHaveLength(4 * 3) // good, its 0/1 form and its high-s twin, per unit
  })

  it("a known key never lets another address through, and evicted keys and tables change no verdict", async () => {
    const keys = new SignerKeys({ maxKeys: 3, maxTables: 1 })
    const crowd = Array.from({ length: 5 }, () => privateKeyToAccount(generatePrivateKey()))
    for (let round = 0; round < 3; round++) {
      for (const [i, account] of crowd.entries()) {
        const mine = await signWorkClaim(account, claimOf(account.address, round), TEST_DOMAIN)
        expect((await keys.claimSigner(mine, TEST_DOMAIN)).signer).toBe(account.address)
        // The next contributor's signature presented as this one's: refused (recovers to the other).
        const next = crowd[(i + 1) % crowd.length]!
        const theirs = await signWorkClaim(next, claimOf(next.address, round), TEST_DOMAIN)
        expect((await keys.claimSigner({ claim: mine.claim, signature: theirs.signature }, TEST_DOMAIN)).signer).not.toBe(account.address)
      }
    }
    expect(keys.size).toBeLessThanOrEqual(3)
  })
})
