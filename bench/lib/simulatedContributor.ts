/**
 * Simulated contributors for the claim-path benchmarks (bench/throughput.ts, bench/replicas.ts): what a page
 * does on the wire, without training. Each makes up its update.
 */
import { secp256k1 } from '@noble/curves/secp256k1'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import {
  DEFAULT_VERIFICATION,
  decodeTensorList,
  encodeSubmission,
  encodeUpdate,
  sha256Hex,
  signLeaseRequest,
  signWorkClaim,
  type ClaimDomainParams,
  type Hash,
  type LeaseResponse,
  type TensorList,
  type UpdateCompression,
  type VerificationPolicy,
  type WorkClaim,
} from '../../src/protocol/index.ts'
import { fastWorkClaimDigest } from '../../coordinator/verification/signerKeys.ts'
import type { CoordinatorProcess } from './coordinatorProcess.ts'

/** Sign every lease request instead of using sessions (the coordinator's path before sessions). */
const SIGN_EVERY_LEASE = process.env.BENCH_SIGN_EVERY_LEASE === '1'
export const INT8: UpdateCompression = { kind: 'int8', blockSize: 256 }

/**
 * The updates are made up (one fixed update for every unit), so spot checks and canaries would catch
 * them: the jobs run with the smallest positive check rate and no canaries (bench/verification.ts
 * measures the checks).
 */
export const NO_CHECKS: VerificationPolicy = { ...DEFAULT_VERIFICATION, initialCheckRate: 1e-9, floorCheckRate: 1e-9, canaryRate: 0 }


/**
 * A contributor as a page is one: a burner key, a signed lease request for its first lease and the
 * session after that, a signed claim per unit. Claims are signed with noble directly over the EIP-712
 * digest: the same deterministic (RFC 6979) signature bytes viem's signTypedData makes (checked once at
 * start), at half the client CPU, which here is taken from the coordinator's share of the machine.
 */
export class Contributor {
  private session: string | null = null
  private readonly key: Uint8Array

  constructor(
    readonly account: PrivateKeyAccount,
    privateKey: Hash,
    private readonly target: { url: string; domain: ClaimDomainParams; coordinatorId: string },
  ) {
    this.key = Uint8Array.from(Buffer.from(privateKey.slice(2), 'hex'))
  }

  signClaim(claim: WorkClaim): Hash {
    const digest = fastWorkClaimDigest(claim, this.target.domain)
    const sig = secp256k1.sign(digest.slice(2), this.key, { lowS: true })
    return `0x${sig.toCompactHex()}${(27 + sig.recovery).toString(16)}` as Hash
  }

  /** `url`: the coordinator to ask (a replica), the target's by default. */
  async lease(jobId: Hash, url = this.target.url): Promise<LeaseResponse> {
    const body = this.session
      ? { session: this.session }
      : await signLeaseRequest(this.account, { jobId, audience: this.target.coordinatorId, domain: this.target.domain })
    const response = await fetch(`${url}/api/jobs/${jobId}/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const json = (await response.json()) as LeaseResponse & { session?: { token: string }; code?: string; message?: string }
    if (!response.ok) {
      if (this.session && json.code === 'stale_lease_request') {
        this.session = null
        return this.lease(jobId, url)
      }
      throw new Error(`lease refused: ${json.code}: ${json.message}`)
    }
    if (json.session && !SIGN_EVERY_LEASE) this.session = json.session.token
    return json
  }

  /** Hands a lease back (a refused answer leaves its lease live until it expires, holding a slot). */
  async release(leaseId: string): Promise<void> {
    await fetch(`${this.target.url}/api/leases/${leaseId}/release`, { method: 'POST' }).then((r) => r.body?.cancel())
  }

  async submit(lease: Extract<LeaseResponse, { status: 'leased' }>['lease'], update: { bytes: Uint8Array; hash: Hash }, url = this.target.url): Promise<{ ok: boolean; code?: string }> {
    const claim: WorkClaim = { ...lease.unit, jobId: lease.unit.jobId as Hash, outputHash: update.hash, contributor: this.account.address, deviceClass: 'bench' }
    const body = encodeSubmission({ claim, signature: this.signClaim(claim), trainLoss: 1 }, update.bytes)
    const response = await fetch(`${url}/api/leases/${lease.id}/submission`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: body as BodyInit })
    const json = (await response.json()) as { code?: string }
    return response.ok ? { ok: true } : { ok: false, code: json.code }
  }
}

export async function contributors(n: number, target: Pick<CoordinatorProcess, 'url' | 'domain' | 'coordinatorId'>): Promise<Contributor[]> {
  return Array.from({ length: n }, () => {
    const key = generatePrivateKey()
    return new Contributor(privateKeyToAccount(key), key, target)
  })
}

/** The made-up update every unit answers with: the model's shapes, small values, encoded as the job says. */
export function madeUpUpdate(initialWeights: Uint8Array, compression: UpdateCompression): { bytes: Uint8Array; hash: Hash } {
  const initial = decodeTensorList(initialWeights)
  const update: TensorList = { shapes: initial.shapes, values: initial.values.map((v) => v.map((_, i) => ((i % 7) - 3) * 1e-4)) }
  const bytes = encodeUpdate(compression, update)
  return { bytes, hash: sha256Hex(bytes) }
}

/** int8 when this coordinator takes int8 updates, else float32 (and the table says which). */
export async function probeCompression(server: CoordinatorProcess): Promise<UpdateCompression> {
  const { jobId, initialWeights } = await server.createJob('bench: compression probe', { unitsPerRound: 100, compression: INT8 }, NO_CHECKS)
  const [c] = await contributors(1, server)
  const response = await c!.lease(jobId)
  if (response.status !== 'leased') throw new Error(`probe: expected a lease, got ${response.status}`)
  const result = await c!.submit(response.lease, madeUpUpdate(Uint8Array.from(initialWeights), INT8))
  if (!result.ok) console.log(`  int8 updates refused (${result.code}): measuring float32 updates`)
  return result.ok ? INT8 : undefined
}

export const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN
}

export function table(header: string[], rows: (string | number)[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

export async function checkSigningMatchesViem(domain: ClaimDomainParams): Promise<void> {
  const key = generatePrivateKey()
  const c = new Contributor(privateKeyToAccount(key), key, { url: '', domain, coordinatorId: '' })
  const claim: WorkClaim = { jobId: `0x${'ab'.repeat(32)}`, round: 3, unit: 7, inputHash: `0x${'cd'.repeat(32)}`, outputHash: `0x${'ef'.repeat(32)}`, contributor: c.account.address, deviceClass: 'bench' }
  const viem = await signWorkClaim(c.account, claim, domain)
  if (viem.signature !== c.signClaim(claim)) throw new Error('the bench signs claims differently from viem')
}
