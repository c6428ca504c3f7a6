import { createPublicClient, getAddress, http, type Address } from 'viem'
import { jobEscrowAbi, rewardDistributorAbi } from '../../contracts/generated/index.ts'
import type { ContractAddresses, Hash } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'

/** A submission the coordinator answered "accepted" to, as its contributor saw it. */
export interface Acknowledged {
  contributor: Address
  round: number
  unit: number
  outputHash: Hash
}

/** What the store holds after the job, checked against what contributors were told and what the job is. */
export interface StoreAudit {
  rounds: number
  /** Answers averaged into rounds (one per unit slot) and answered checks, all accepted. */
  primaries: number
  checks: number
  /** Acknowledged answers the store does not hold as accepted (or, for a unit's answer, did not average). */
  lost: string[]
  /** Answers counted more than once: a slot with two accepted primaries, a unit averaged by a round not its own, a round whose count is off. */
  doubleCounted: string[]
  /** Anything else out of line: missing rounds, a broken chain of checkpoints, payable work left out of every epoch. */
  inconsistencies: string[]
  /** Payable answers (primaries and checks) per address. */
  payable: Map<Address, number>
  /** The store's epochs, oldest first. */
  epochs: Array<{ epoch: number; root: Hash; status: string; totalCumulative: bigint; txHash: Hash | null }>
  /** The round outputs, in order: the checkpoint after each round. */
  outputs: Hash[]
}

/**
 * Reads a finished synchronous job out of the store and checks it: every round 0..R-1 closed once with exactly K
 * units; every unit slot accepted once, by one primary, averaged by its own round; the rounds chained (each
 * applied to the one before's output); every acknowledged answer held as accepted (and, for a primary, being
 * its unit's averaged answer); every payable answer committed to an epoch.
 */
export async function auditStore(
  db: Queryable,
  job: { id: Hash; rounds: number; unitsPerRound: number; initialWeights: Hash },
  acknowledged: Acknowledged[],
): Promise<StoreAudit> {
  const lost: string[] = []
  const doubleCounted: string[] = []
  const inconsistencies: string[] = []
  const K = job.unitsPerRound

  const rounds = await db.query<{ round: number; input_hash: Hash; base_hash: Hash; output_hash: Hash; units: number }>(
    `SELECT round, input_hash, base_hash, output_hash, units FROM rounds WHERE job_id = $1 ORDER BY round`,
    [job.id],
  )
  if (rounds.length !== job.rounds) inconsistencies.push(`${rounds.length} rounds closed, the job has ${job.rounds}`)
  rounds.forEach((r, i) => {
    if (Number(r.round) !== i) inconsistencies.push(`round ${r.round} closed in position ${i}`)
    const base = i === 0 ? job.initialWeights : rounds[i - 1]!.output_hash
    if (r.base_hash !== base || r.input_hash !== base) inconsistencies.push(`round ${r.round} applied to ${r.base_hash}, not the round before's output ${base}`)
  })

  const units = await db.query<{ round: number; unit: number; status: string; lease_id: string | null; output_hash: Hash | null; applied_round: number | null }>(
    `SELECT round, unit, status, lease_id, output_hash, applied_round FROM units WHERE job_id = $1 ORDER BY round, unit`,
    [job.id],
  )
  const slot = (round: number, unit: number) => `${round}/${unit}`
  const unitBySlot = new Map(units.map((u) => [slot(Number(u.round), Number(u.unit)), u]))
  for (let round = 0; round < job.rounds; round++) {
    for (let unit = 0; unit < K; unit++) {
      const u = unitBySlot.get(slot(round, unit))
      if (!u || u.status !== 'accepted') inconsistencies.push(`unit ${slot(round, unit)} is ${u ? u.status : 'missing'} in a finished job`)
      else if (u.applied_round === null || Number(u.applied_round) !== round) doubleCounted.push(`unit ${slot(round, unit)} averaged by round ${u.applied_round}`)
    }
  }
  if (units.length !== job.rounds * K) inconsistencies.push(`${units.length} unit rows for ${job.rounds} rounds of ${K}`)
  const averagedBy = new Map<number, number>()
  for (const u of units) if (u.applied_round !== null) averagedBy.set(Number(u.applied_round), (averagedBy.get(Number(u.applied_round)) ?? 0) + 1)
  for (const r of rounds) {
    if (Number(r.units) !== K || averagedBy.get(Number(r.round)) !== K) {
      doubleCounted.push(`round ${r.round} counts ${r.units} units and ${averagedBy.get(Number(r.round)) ?? 0} are marked averaged by it; K = ${K}`)
    }
  }

  const attempts = await db.query<{
    lease_id: string
    round: number
    unit: number
    contributor: string
    kind: 'primary' | 'check'
    status: string
    output_hash: Hash | null
    verdict: string | null
    epoch: number | null
  }>(`SELECT lease_id, round, unit, contributor, kind, status, output_hash, verdict, epoch FROM attempts WHERE job_id = $1`, [job.id])
  const accepted = attempts.filter((a) => a.status === 'submitted' && ['unchecked', 'pending', 'passed'].includes(a.verdict ?? ''))
  const primariesBySlot = new Map<string, typeof accepted>()
  for (const a of accepted.filter((a) => a.kind === 'primary')) {
    const key = slot(Number(a.round), Number(a.unit))
    primariesBySlot.set(key, [...(primariesBySlot.get(key) ?? []), a])
  }
  for (const [key, list] of primariesBySlot) {
    if (list.length > 1) doubleCounted.push(`unit ${key} has ${list.length} accepted primaries (${list.map((a) => a.lease_id).join(', ')})`)
    const u = unitBySlot.get(key)
    if (list.length === 1 && (u?.lease_id !== list[0]!.lease_id || u?.output_hash !== list[0]!.output_hash)) {
      inconsistencies.push(`unit ${key} holds lease ${u?.lease_id}, its accepted primary is ${list[0]!.lease_id}`)
    }
  }

  for (const ack of acknowledged) {
    const held = accepted.find(
      (a) => getAddress(a.contributor) === getAddress(ack.contributor) && Number(a.round) === ack.round && Number(a.unit) === ack.unit && a.output_hash === ack.outputHash,
    )
    if (!held) {
      lost.push(`${ack.contributor.slice(0, 8)} unit ${slot(ack.round, ack.unit)} ${ack.outputHash.slice(0, 10)}: acknowledged, not held as accepted`)
      continue
    }
    if (held.kind === 'primary' && unitBySlot.get(slot(ack.round, ack.unit))?.lease_id !== held.lease_id) {
      lost.push(`${ack.contributor.slice(0, 8)} unit ${slot(ack.round, ack.unit)}: acknowledged, but the round averaged another answer`)
    }
  }

  const payable = new Map<Address, number>()
  for (const a of accepted) {
    if (a.verdict === 'pending') {
      inconsistencies.push(`attempt ${a.lease_id} of a finished job still awaits its check`)
      continue
    }
    if (a.epoch === null) inconsistencies.push(`payable attempt ${a.lease_id} is in no epoch`)
    payable.set(getAddress(a.contributor), (payable.get(getAddress(a.contributor)) ?? 0) + 1)
  }

  const epochs = (
    await db.query<{ epoch: number; root: Hash; status: string; total_cumulative: string; tx_hash: Hash | null }>(
      `SELECT epoch, root, status, total_cumulative, tx_hash FROM epochs ORDER BY epoch`,
    )
  ).map((e) => ({ epoch: Number(e.epoch), root: e.root, status: e.status, totalCumulative: BigInt(e.total_cumulative), txHash: e.tx_hash }))

  return {
    rounds: rounds.length,
    primaries: accepted.filter((a) => a.kind === 'primary').length,
    checks: accepted.filter((a) => a.kind === 'check').length,
    lost,
    doubleCounted,
    inconsistencies,
    payable,
    epochs,
    outputs: rounds.map((r) => r.output_hash),
  }
}

/** What the chain says about the epochs and the job's escrow. */
export interface ChainAudit {
  epochCount: number
  /** RootPosted events per epoch number: each root is posted once when every entry is 1. */
  postsPerEpoch: Map<number, number>
  roots: Map<number, Hash>
  /** What JobEscrow charged the job's escrow: the rewards the job paid for. */
  charged: bigint
}

export async function auditChain(rpcUrl: string, contracts: ContractAddresses, jobId: Hash, requester: Address): Promise<ChainAudit> {
  const client = createPublicClient({ transport: http(rpcUrl) })
  const epochCount = Number(await client.readContract({ address: contracts.rewardDistributor, abi: rewardDistributorAbi, functionName: 'epochCount' }))
  const events = await client.getContractEvents({ address: contracts.rewardDistributor, abi: rewardDistributorAbi, eventName: 'RootPosted', fromBlock: 0n })
  const postsPerEpoch = new Map<number, number>()
  const roots = new Map<number, Hash>()
  for (const event of events) {
    const epoch = Number(event.args.epoch)
    postsPerEpoch.set(epoch, (postsPerEpoch.get(epoch) ?? 0) + 1)
    roots.set(epoch, event.args.root!)
  }
  const [, , , , charged] = await client.readContract({ address: contracts.jobEscrow, abi: jobEscrowAbi, functionName: 'jobs', args: [jobId, requester] })
  return { epochCount, postsPerEpoch, roots, charged }
}
