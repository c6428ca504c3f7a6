import { seededU32Stream } from '../../src/protocol/index.ts'

/**
 * Where a kill is aimed, once the job has reached its milestone:
 * - `unit`: a random moment (0–400 ms) later, which mostly lands while units are leased, computed and handed in;
 * - `close`: as soon as the round has all its units in, while it is being aggregated and closed;
 * - `epoch`: as soon as the coordinator reports an epoch built, while its root is being posted.
 */
export type KillAim = 'unit' | 'close' | 'epoch'

export interface PlannedKill {
  /** The kill waits until the job has accepted at least this many units (over all rounds), after the restart before it. */
  afterUnits: number
  aim: KillAim
  /** For `unit`: how long after the milestone. */
  delayMs: number
}

/**
 * `kills` kills at seeded random milestones spread over the first 70% of a job of `totalUnits` accepted units, half aimed at units, a quarter each at closes and at epoch posts,
 * in a seeded random order. Milestones rather than times: every kill then finds the job further on than the
 * one before, which contributors can only have brought about by themselves, and the plan is the same on a fast
 * machine and a slow one.
 */
export function planKills(seed: string, kills: number, totalUnits: number): PlannedKill[] {
  const next = seededU32Stream(`tabtrain/test/crash/${seed}`)
  const uniform = () => next() / 0x1_0000_0000
  // Over the first 70%: a kill aimed at a close or an epoch lets the job run on a little before it lands.
  const span = Math.floor(totalUnits * 0.7)
  if (span < kills) throw new Error(`${kills} kills need a job of at least ${Math.ceil(kills / 0.7)} units, not ${totalUnits}`)
  // Distinct milestones in [1, span], sorted.
  const milestones = new Set<number>()
  while (milestones.size < kills) milestones.add(1 + Math.floor(uniform() * span))
  const aims: KillAim[] = Array.from({ length: kills }, (_, i) => (i < kills / 2 ? 'unit' : i < (3 * kills) / 4 ? 'close' : 'epoch'))
  for (let i = aims.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1))
    ;[aims[i], aims[j]] = [aims[j]!, aims[i]!]
  }
  return [...milestones]
    .sort((a, b) => a - b)
    .map((afterUnits, i) => ({ afterUnits, aim: aims[i]!, delayMs: Math.floor(uniform() * 400) }))
}
