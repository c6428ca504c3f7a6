import { z } from 'zod'
import { amountSchema } from './amount.ts'
import { promisesSameBitsEverywhere } from './deviceClass.ts'
import type { TensorList } from './tensorBytes.ts'

/**
 * How a job's units are checked (docs/verification.md has the argument behind every default). Optional in
 * a spec: a job without it is checked with `DEFAULT_VERIFICATION`.
 */
export const verificationSchema = z
  .object({
    /** Chance that a unit of a new, unstaked or recently failed address is re-executed by someone else. */
    initialCheckRate: z.number().gt(0).max(1),
    /** What the chance falls to with consecutive clean checks. Positive: no address is ever unchecked. */
    floorCheckRate: z.number().gt(0).max(1),
    /** Consecutive clean checks that halve the chance (from initialCheckRate towards floorCheckRate). */
    halvingChecks: z.number().int().min(1).max(1000),
    /** Chance that a unit is also computed by the coordinator itself (a canary), whoever computed it. */
    canaryRate: z.number().min(0).max(1),
    /**
     * Largest relative L2 distance ‖a − b‖ / max(‖a‖, ‖b‖) between two updates of the same unit computed in
     * different device classes with a bundle that does not promise the same bits everywhere. Calibrated
     * from real runs on WebGPU, wasm and cpu (docs/verification.md).
     */
    crossClassTolerance: z.number().gt(0).max(1),
    /** Stake (token base units) an address must hold in StakeManager to lease units of a paid job. */
    minStake: amountSchema,
    /** Live leases one address may hold in one job at a time. */
    maxLiveLeases: z.number().int().min(1).max(64),
  })
  .refine((v) => v.floorCheckRate <= v.initialCheckRate, { message: 'floorCheckRate must not exceed initialCheckRate', path: ['floorCheckRate'] })

export type VerificationPolicy = z.infer<typeof verificationSchema>

/**
 * - 1 in 3 of a new address's units is checked, as BOINC's adaptive replication starts: a cheater with
 *   fresh addresses is caught within a few units each (P(undetected after n lies) = (2/3)^n).
 * - 1 in 20 at the floor: 5% extra compute on a mostly honest network, under the 10% target.
 * - 3 clean checks halve the rate, so an honest address reaches the floor after about 8 clean checks.
 * - 1 in 50 units is also computed by the coordinator: colluding pairs that vouch for each other cannot
 *   vouch for a canary. Cheap because the coordinator computes it on the cpu backend off its event loop.
 * - cross-class tolerance 0.04 (bench/calibration.ts, docs/verification.md): on the MNIST preset the largest
 *   honest distance between cpu, wasm and WebGPU answers was 1.24e-2 (1 unit in 600; p99 2.7e-3), every
 *   liar tried was at least 0.44 away (copying, stale checkpoint, 10% of values forged, half the steps, zero,
 *   ×100, noise), so 0.04 sits 11× below the liars and 3.2× above the honest maximum (15× above its p99).
 *   A unit one inner step short (0.09) is still caught, by 2.2×. Cross-class verdicts go to the referee.
 * - the stake: docs/verification.md (the stake for which cheating does not pay at the floor rate).
 */
export const DEFAULT_VERIFICATION: VerificationPolicy = {
  initialCheckRate: 1 / 3,
  floorCheckRate: 1 / 20,
  halvingChecks: 3,
  canaryRate: 1 / 50,
  crossClassTolerance: 0.04,
  minStake: '40000000000000000000',
  maxLiveLeases: 2,
}

/**
 * The stake an address must hold to lease units of a paid job: the policy's `minStake`, or more when the
 * price asks for it. An address at the floor rate p that starts lying is paid (1 − p)/p lies on average
 * before a check catches it, and a slash takes `slashBps`/10,000 of its stake; cheating does not pay when
 * stake × slashBps/10,000 ≥ price × (1 − p)/p (docs/verification.md).
 */
export function stakeNeeded(policy: VerificationPolicy, pricePerUnit: bigint, slashBps: number): bigint {
  const minimum = BigInt(policy.minStake)
  if (slashBps <= 0) return minimum
  // (1 − p)/p in millionths, rounded up, so the rational floor rates (1/20) give exact integers.
  const liesPerMillion = BigInt(Math.ceil(((1 - policy.floorCheckRate) / policy.floorCheckRate) * 1e6 - 1e-6))
  const denominator = BigInt(slashBps) * 1_000_000n
  const priced = (pricePerUnit * liesPerMillion * 10_000n + denominator - 1n) / denominator
  return priced > minimum ? priced : minimum
}

export function verificationPolicy(spec: { verification?: VerificationPolicy | undefined }): VerificationPolicy {
  return spec.verification ?? DEFAULT_VERIFICATION
}

/** What the check rate depends on: the address's record, and whether it has stake at risk. */
export interface CheckRateInput {
  /** Clean checks since the address's last failed one (or since it first appeared). */
  consecutiveClean: number
  /** False for an address with less than the job's minimum stake (volunteer jobs only). */
  staked: boolean
  /** Failed checks ever: a failure puts the address back at the initial rate for good measure. */
  checksFailed: number
}

/**
 * The chance that the next unit of an address is re-executed: the initial rate for an unstaked address
 * (nothing to slash, so nothing but checks deters it), otherwise halving every `halvingChecks` clean
 * checks down to the floor, never below it.
 */
export function checkRate(policy: VerificationPolicy, input: CheckRateInput): number {
  if (!input.staked) return policy.initialCheckRate
  const decayed = policy.initialCheckRate * 2 ** (-input.consecutiveClean / policy.halvingChecks)
  return Math.max(policy.floorCheckRate, decayed)
}

/** ‖a − b‖₂ / max(‖a‖₂, ‖b‖₂), summed in float64 over every tensor; 0 when both are zero. */
export function relativeL2(a: TensorList, b: TensorList): number {
  let diff = 0
  let na = 0
  let nb = 0
  for (let t = 0; t < a.values.length; t++) {
    const x = a.values[t]!
    const y = b.values[t]!
    if (x.length !== y.length) return Number.POSITIVE_INFINITY
    for (let i = 0; i < x.length; i++) {
      const d = x[i]! - y[i]!
      diff += d * d
      na += x[i]! * x[i]!
      nb += y[i]! * y[i]!
    }
  }
  if (a.values.length !== b.values.length) return Number.POSITIVE_INFINITY
  const scale = Math.sqrt(Math.max(na, nb))
  return scale === 0 ? 0 : Math.sqrt(diff) / scale
}

/** The kernel bundle named at the end of a device class (`backend|vendor/arch|engine|bundle`). */
export function bundleOfDeviceClass(deviceClass: string): string {
  return deviceClass.slice(deviceClass.lastIndexOf('|') + 1)
}

/**
 * How two answers for one unit must agree, by the rules of docs/verification.md:
 * - `exact`: exact mode, or the same device class with a deterministic bundle: equal hashes;
 * - `tolerance`: different classes on a bundle that only promises the same bits within a class.
 */
export function comparisonRule(kernelBundle: string, classA: string, classB: string): 'exact' | 'tolerance' {
  if (promisesSameBitsEverywhere(kernelBundle)) return 'exact'
  return classA === classB ? 'exact' : 'tolerance'
}

export type Agreement = { agree: true; distance: number } | { agree: false; distance: number; why: string }

/**
 * Whether two answers for the same unit agree. `a` and `b` are decoded updates; hashes are compared first,
 * so the tensors are only read when they differ.
 */
export function compareAnswers(params: {
  kernelBundle: string
  tolerance: number
  a: { hash: string; deviceClass: string; update: () => TensorList }
  b: { hash: string; deviceClass: string; update: () => TensorList }
}): Agreement {
  const { a, b } = params
  if (a.hash === b.hash) return { agree: true, distance: 0 }
  const rule = comparisonRule(params.kernelBundle, a.deviceClass, b.deviceClass)
  const distance = relativeL2(a.update(), b.update())
  if (rule === 'exact') {
    return { agree: false, distance, why: `different hashes where the same bits are required (${a.deviceClass} and ${b.deviceClass})` }
  }
  if (distance <= params.tolerance) return { agree: true, distance }
  return { agree: false, distance, why: `relative L2 distance ${distance.toPrecision(3)} exceeds the tolerance ${params.tolerance} between ${a.deviceClass} and ${b.deviceClass}` }
}
