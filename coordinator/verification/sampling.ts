import { getAddress } from 'viem'
import { verificationPolicy, type JobSpec } from '../../src/protocol/index.ts'
import type { JobContext } from '../context.ts'
import { rateFor, readReputation, type ReputationRow } from './reputation.ts'

/** What a freshly accepted primary gets: no check, a check by another address, or a canary. */
export type CheckDecision = 'unchecked' | 'peer' | 'referee'

/**
 * Samples a primary for checking, BOINC-style: by the address's own check rate (fresh, unstaked and
 * recently failed addresses most), and independently by the job's canary rate. Drawn with the context's
 * randomness at acceptance time, after the answer is in, so nobody can know beforehand.
 */
export async function decideCheck(ctx: JobContext, spec: JobSpec, contributor: string, known?: ReputationRow): Promise<CheckDecision> {
  const policy = verificationPolicy(spec)
  // `known`: the contributor's row as its submission read it (submissions.ts), instead of a second read.
  const reputation = known ?? (await readReputation(ctx.db, contributor))
  const staked = await hasStake(ctx, spec, contributor)
  if (ctx.random() < rateFor(reputation, policy, staked)) return 'peer'
  if (ctx.random() < policy.canaryRate) return 'referee'
  return 'unchecked'
}

async function hasStake(ctx: JobContext, spec: JobSpec, contributor: string): Promise<boolean> {
  // A paid job's contributors were checked for the minimum stake when they leased.
  if (spec.payment) return true
  if (!ctx.stakes) return false
  return (await ctx.stakes.stakeOf(getAddress(contributor))) >= BigInt(verificationPolicy(spec).minStake)
}
