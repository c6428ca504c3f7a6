import { invert } from '@noble/curves/abstract/modular'
import { secp256k1 } from '@noble/curves/secp256k1'
import { keccak_256 } from '@noble/hashes/sha3.js'
import { isAddress, recoverPublicKey, type Address, type Hex } from 'viem'
import { publicKeyToAddress } from 'viem/accounts'
import { claimDomain, workClaimDigest, workClaimTypes, type ClaimDomainParams, type Hash, type SignedClaim, type WorkClaim } from '../../src/protocol/index.ts'

/**
 * Signature checks without repeated public-key recovery for signers this coordinator has already seen.
 *
 * Recovering an EIP-712 signer in JS costs ~2.5 ms of CPU (plus ~0.3 ms for viem's typed-data hashing),
 * the largest single cost of a submission. A contributor signs many claims with one key, so after its
 * first recovered signature its public key Q is kept (keyed by the address it hashes to), and later
 * signatures are checked against Q with a precomputed window table: ~4× cheaper.
 *
 * Soundness: the fast check accepts a 65-byte signature (r, s, v) over digest h exactly when viem's
 * recovery of it yields Q, so it changes no verdict. With bit = v (0/1) or v − 27 (27/28), recovery
 * takes R = the curve point with x = r and y-parity bit, and returns Q' = r⁻¹(sR − hG). The fast check
 * computes R' = (h/s)G + (r/s)Q and accepts iff R' has x = r (as an integer, not mod n) and y-parity bit:
 * then R = R' and Q' = r⁻¹(s(h/s)G + s(r/s)Q − hG) = Q. Conversely, if recovery yields Q then
 * sR = hG + rQ, so R' = R and the check accepts. r and s must be in [1, n−1] as noble's Signature
 * requires; anything the fast check does not accept (another v, a bad signature, another key) goes to
 * full recovery, so a refusal still reports what the signature recovers to. The cache maps an address
 * only to a key that was recovered and hashed to that address here, so it never lets another address
 * through: a claim naming address A is checked against A's key, and a signature by any other key fails
 * the equation above (that is ECDSA's unforgeability, the same assumption recovery rests on).
 */

const Point = secp256k1.ProjectivePoint
const N = secp256k1.CURVE.n

/**
 * Window of a known key's precomputed table: 4 makes a check ~0.6 ms instead of ~1.8 ms (no table) for
 * ~6 ms once and ~100 KB per key; built only when a key is used a second time, so a crowd of one-off
 * signers costs no tables.
 */
const WINDOW = 4
const PRECOMPUTE_AT_USE = 2

/** How long a key must have gone unused before another key may take its table. */
const TABLE_IDLE_MS = 10 * 60_000

interface KnownKey {
  point: InstanceType<typeof Point>
  uses: number
  precomputed: boolean
  lastUsed: number
}

export class SignerKeys {
  /** Insertion order is recency: a hit moves the key to the end, eviction takes the front. */
  private readonly keys = new Map<Address, KnownKey>()
  /** The keys that have a table, least recently used first. */
  private readonly tabled = new Map<Address, KnownKey>()

  constructor(
    private readonly options: {
      /** Known keys kept (~200 B each without a table). */
      maxKeys: number
      /** Of those, how many keep a precomputed table (~110 KB each). */
      maxTables: number
    } = { maxKeys: 100_000, maxTables: 1_024 },
  ) {}

  get size(): number {
    return this.keys.size
  }

  /** The key of `address` if one was recovered here (and counts a use: tables are built for reused keys). */
  private use(address: Address): KnownKey | undefined {
    const known = this.keys.get(address)
    if (!known) return undefined
    this.keys.delete(address)
    this.keys.set(address, known)
    known.lastUsed = performance.now()
    if (known.precomputed) {
      this.tabled.delete(address)
      this.tabled.set(address, known)
    } else if (++known.uses >= PRECOMPUTE_AT_USE) {
      // At the table budget, a table is taken only from a key idle for a while (the least recently used
      // key with one): with more active signers than tables, taking them in turn would rebuild a table
      // (~6 ms) on every check, dearer than checking without one.
      const [idleAddress, idle] = this.tabled.entries().next().value ?? []
      if (this.tabled.size >= this.options.maxTables && idle && known.lastUsed - idle.lastUsed >= TABLE_IDLE_MS) {
        idle.point = Point.fromAffine(idle.point.toAffine())
        idle.precomputed = false
        this.tabled.delete(idleAddress!)
      }
      if (this.tabled.size < this.options.maxTables) {
        // A fresh point, so that the table (kept in noble's WeakMap by point) goes when the key does.
        known.point = Point.fromAffine(known.point.toAffine())
        known.point._setWindowSize(WINDOW)
        known.precomputed = true
        this.tabled.set(address, known)
      }
    }
    return known
  }

  private remember(address: Address, point: InstanceType<typeof Point>): void {
    if (this.keys.has(address)) return
    this.keys.set(address, { point, uses: 1, precomputed: false, lastUsed: performance.now() })
    while (this.keys.size > this.options.maxKeys) {
      const oldest = this.keys.keys().next().value as Address
      this.keys.delete(oldest)
      this.tabled.delete(oldest)
    }
  }

  /**
   * The address whose key signed `digest` (exactly what viem's recovery returns), or null when the
   * signature does not recover. `expected` is who the signature claims to be: checked against its known
   * key first, recovered in full otherwise (and its key remembered).
   */
  async signer(digest: Hash, signature: Hex, expected: Address): Promise<Address | null> {
    const known = this.use(expected)
    if (known && verifiesWithKey(known, digest, signature)) return expected
    try {
      const publicKey = await recoverPublicKey({ hash: digest, signature })
      const address = publicKeyToAddress(publicKey)
      this.remember(address, Point.fromHex(publicKey.slice(2)))
      return address
    } catch {
      return null
    }
  }

  /** The claim's signer and its EIP-712 digest (null when the claim cannot be hashed as typed data). */
  async claimSigner(signed: SignedClaim, domain: ClaimDomainParams): Promise<{ signer: Address | null; digest: Hash | null }> {
    let digest: Hash
    try {
      // The fast encoding only for a contributor whose key is known: its address is then the checksummed
      // string getAddress produced, which viem's validation would accept too. Anything else goes to viem.
      digest = this.keys.has(signed.claim.contributor) ? fastWorkClaimDigest(signed.claim, domain) : workClaimDigest(signed.claim, domain)
    } catch {
      return { signer: null, digest: null }
    }
    return { signer: await this.signer(digest, signed.signature, signed.claim.contributor), digest }
  }
}

/** One cache per process: an address's public key is a fact, the same for every job and store. */
export const signerKeys = new SignerKeys()

function verifiesWithKey(known: KnownKey, digest: Hash, signature: Hex): boolean {
  if (signature.length !== 132) return false
  const r = BigInt(`0x${signature.slice(2, 66)}`)
  const s = BigInt(`0x${signature.slice(66, 130)}`)
  const v = Number.parseInt(signature.slice(130), 16)
  const bit = v === 0 || v === 1 ? v : v === 27 || v === 28 ? v - 27 : -1
  if (bit < 0 || r < 1n || r >= N || s < 1n || s >= N) return false
  const h = BigInt(digest) % N
  const sInv = invert(s, N)
  const u1 = (h * sInv) % N
  const u2 = (r * sInv) % N
  if (u1 === 0n) return false
  // multiply(), not multiplyUnsafe(): in @noble/curves 1.9.1 multiplyUnsafe on a point with a
  // precomputed table gives wrong results for full-size scalars (signerKeys.test.ts keeps both honest).
  const rPoint = Point.BASE.multiply(u1).add(known.precomputed ? known.point.multiply(u2) : known.point.multiplyUnsafe(u2))
  if (rPoint.equals(Point.ZERO)) return false
  const { x, y } = rPoint.toAffine()
  return x === r && Number(y & 1n) === bit
}

// EIP-712 hashing of a WorkClaim without viem's generic encoder (~0.3 ms → ~0.03 ms), derived from the
// same `workClaimTypes`, and pinned equal to viem's digest in signerKeys.test.ts.

const utf8 = new TextEncoder()
const hexBytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.slice(2), 'hex'))
const word = (value: bigint): Uint8Array => hexBytes(`0x${value.toString(16).padStart(64, '0')}`)
const keccakHex = (bytes: Uint8Array): Hash => `0x${Buffer.from(keccak_256(bytes)).toString('hex')}`

function encodeField(type: string, value: unknown): Uint8Array {
  if (type === 'string') {
    if (typeof value !== 'string') throw new TypeError('expected a string')
    return keccak_256(utf8.encode(value))
  }
  if (type === 'bytes32') {
    if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(value)) throw new TypeError('expected 32 bytes')
    return hexBytes(value)
  }
  if (type === 'address') {
    if (typeof value !== 'string' || !/^0x[0-9a-fA-F]{40}$/.test(value)) throw new TypeError('expected an address')
    return word(BigInt(value))
  }
  const uint = /^uint(\d+)$/.exec(type)
  if (uint) {
    const n = BigInt(value as number | bigint)
    if (n < 0n || n >= 1n << BigInt(uint[1]!)) throw new RangeError(`${type} out of range`)
    return word(n)
  }
  throw new TypeError(`no fast encoding for ${type}`)
}

function encodeStruct(typeHash: Uint8Array, fields: readonly { name: string; type: string }[], message: Record<string, unknown>): Uint8Array {
  const out = new Uint8Array(32 * (fields.length + 1))
  out.set(typeHash, 0)
  fields.forEach((f, i) => out.set(encodeField(f.type, message[f.name]), 32 * (i + 1)))
  return out
}

const typeString = (name: string, fields: readonly { name: string; type: string }[]) => `${name}(${fields.map((f) => `${f.type} ${f.name}`).join(',')})`
const DOMAIN_FIELDS = [
  { name: 'name', type: 'string' },
  { name: 'version', type: 'string' },
  { name: 'chainId', type: 'uint256' },
  { name: 'verifyingContract', type: 'address' },
] as const
const DOMAIN_TYPE_HASH = keccak_256(utf8.encode(typeString('EIP712Domain', DOMAIN_FIELDS)))
const CLAIM_TYPE_HASH = keccak_256(utf8.encode(typeString('WorkClaim', workClaimTypes.WorkClaim)))
const separators = new Map<string, Uint8Array>()

function domainSeparator(domain: ClaimDomainParams): Uint8Array {
  const key = `${domain.chainId}:${domain.verifyingContract}`
  let separator = separators.get(key)
  if (!separator) {
    // viem refuses a domain whose contract address fails its checksum; so does this.
    if (!isAddress(domain.verifyingContract)) throw new TypeError(`invalid verifying contract ${domain.verifyingContract}`)
    separator = keccak_256(encodeStruct(DOMAIN_TYPE_HASH, DOMAIN_FIELDS, claimDomain(domain)))
    separators.set(key, separator)
  }
  return separator
}

/** Equal to `workClaimDigest(claim, domain)` for every claim that passes the claim schema. */
export function fastWorkClaimDigest(claim: WorkClaim, domain: ClaimDomainParams): Hash {
  const out = new Uint8Array(66)
  out[0] = 0x19
  out[1] = 0x01
  out.set(domainSeparator(domain), 2)
  out.set(keccak_256(encodeStruct(CLAIM_TYPE_HASH, workClaimTypes.WorkClaim, claim)), 34)
  return keccakHex(out)
}
