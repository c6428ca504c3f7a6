/**
 * `npm run bench` (verification part): what spot checks cost and what they catch, measured on real runs.
 * Writes bench/results/verification.md and verification.json.
 *
 * One coordinator in this process with its own local chain (anvil); every job is paid (1 token per unit,
 * escrowed on-chain by the local requester) and runs under DEFAULT_VERIFICATION. Contributors are
 * coordinator/testing/adversaries.ts: the real unit runner and pull loop a tab uses (tfjs cpu backend in
 * Node), each staked by the local faucet, the liars lying as a function of the honest answer.
 *
 * 1. Warm-up: four honest addresses train a job until each has enough consecutive clean checks for its
 *    check rate to reach the floor (a record, as on a mostly honest network).
 * 2. Steady state: the same four train a fresh job of BENCH_VERIFY_WINDOW primaries; verification overhead =
 *    extra compute (check units + the coordinator's referee runs) / useful compute (primary units).
 * 3. Adversaries: per kind, BENCH_VERIFY_REPEATS jobs with three of the honest addresses plus one adversary on
 *    a fresh key (two for the colluding pair), until the adversary is banned or has submitted a cap of
 *    units: units until caught, tokens its answers had earned just before the ban, rounds rebuilt, honest
 *    addresses flagged. Then epochs are posted and disputes sent, and each liar's stake is read again.
 * 4. Cross-class false positives from bench/results/calibration.json, and the analytic escape/stake tables.
 *
 * The jobs are a lighter variant of the MNIST preset (same model, data and policy): BENCH_VERIFY_INNER_STEPS
 * (3) Adam steps per unit instead of 10 and 8 units per round instead of 4, so that the runs fit a few
 * minutes on two cores. Checks compare whole units, so neither changes what is sampled or caught; every
 * answer here comes from one device class (Node cpu), so comparisons are exact (equal hashes).
 *
 * Knobs: BENCH_VERIFY_REPEATS (4), BENCH_VERIFY_WINDOW (400), BENCH_VERIFY_INNER_STEPS (3),
 * BENCH_VERIFY_KINDS (comma-separated adversary kinds, default all), BENCH_VERIFY_LOG (a file for the coordinator's log).
 * About 5 minutes on two cores.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { getAddress, type Address, type Hex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { DEFAULT_DEPLOY_PARAMETERS } from '../contracts/deploy.ts'
import { stakeManagerAbi } from '../contracts/generated/index.ts'
import { DEFAULT_VERIFICATION, parseJobSpec, type Hash, type JobSpec } from '../src/protocol/index.ts'
import { LOCAL_PRESET_REQUESTER, buildMnistPreset } from '../coordinator/presets/mnist.ts'
import { createAdversary, type LiarKind, type LiarStats } from '../coordinator/testing/adversaries.ts'
import { startTemporaryCoordinator } from '../coordinator/testing/inProcess.ts'
import { ROOT } from '../coordinator/testing/spawnCoordinator.ts'

const RESULTS = join(ROOT, 'bench/results')
const REPEATS = Number(process.env.BENCH_VERIFY_REPEATS ?? 4)
const WINDOW = Number(process.env.BENCH_VERIFY_WINDOW ?? 400)
const INNER_STEPS = Number(process.env.BENCH_VERIFY_INNER_STEPS ?? 3)
const UNITS_PER_ROUND = 8
const HONEST = 4
const HONEST_PER_ATTACK = 3
const PRICE = 10n ** 18n
const TOKEN = 1e18
const WARMUP_LIMIT_MS = 240_000
const RUN_LIMIT_MS = 180_000
const POLL_MS = 150
/** Comma-separated adversary kinds to run (default: all), and a file for the coordinator's log (default: none). */
const ONLY_KINDS = process.env.BENCH_VERIFY_KINDS?.split(',').map((k) => k.trim())
const LOG_FILE = process.env.BENCH_VERIFY_LOG

/** The kinds measured, in table order; `colluder` runs as a pair. */
const KINDS: Array<{ kind: LiarKind; label: string; count: number; cap: number }> = [
  { kind: 'scaled', label: 'scaled ×100', count: 1, cap: 40 },
  { kind: 'random', label: 'random noise', count: 1, cap: 40 },
  { kind: 'zero', label: 'zero update', count: 1, cap: 40 },
  { kind: 'stale', label: 'stale checkpoint', count: 1, cap: 40 },
  { kind: 'copy', label: 'copies other answers', count: 1, cap: 40 },
  { kind: 'sometimes', label: '5% faker (1 unit in 20)', count: 1, cap: 45 },
  { kind: 'colluder', label: 'colluding pair', count: 2, cap: 40 },
  { kind: 'copying-checker', label: 'copying checker', count: 1, cap: 15 },
]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const median = (xs: number[]) => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const fmt = (x: number, digits = 1) => (Number.isInteger(x) ? String(x) : x.toFixed(digits))

function table(header: string[], rows: (string | number)[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

interface AdversaryResult {
  kind: LiarKind
  address: Address
  caught: boolean
  /** Answers (primaries and checks) it submitted up to and including the one that got it banned; all of them if never caught. */
  unitsUntilCaught: number
  /** Its answers up to and including the first one found wrong (the lie the check caught); null if none was. */
  unitsUntilCaughtAnswer: number | null
  /** Its payable answers (submitted, unchecked or passed) at the last look before the ban: tokens at 1 per unit. */
  tokensBeforeCaught: number
  lies: number
  copied: number
  copyRefused: number
  stakeBefore: string
  stakeAfter?: string
}

interface RunResult {
  kind: LiarKind
  repeat: number
  jobId: Hash
  seconds: number
  rounds: number
  adversaries: AdversaryResult[]
  rejected: number
  dropped: number
  roundsRebuilt: number
  honestChecked: number
  honestFlagged: number
}

async function main() {
  const started = performance.now()
  const logLines: string[] = []
  const coordinator = await startTemporaryCoordinator(LOG_FILE ? { log: (m) => logLines.push(`${((performance.now() - started) / 1000).toFixed(2)} ${m}`) } : {})
  const { db } = coordinator
  const settlement = coordinator.settlement!
  const chain = coordinator.chain!
  const preset = await buildMnistPreset({ paid: true })
  let jobCounter = 0

  const benchSpec = (name: string, rounds: number): JobSpec =>
    parseJobSpec({
      ...preset.spec,
      name: `bench verification: ${name} ${++jobCounter}`,
      training: { ...preset.spec.training, innerSteps: INNER_STEPS, unitsPerRound: UNITS_PER_ROUND, rounds, leaseTtlSeconds: 30 },
      payment: { pricePerUnit: String(PRICE), budget: String(100_000n * PRICE), requester: LOCAL_PRESET_REQUESTER },
      verification: DEFAULT_VERIFICATION,
    })

  const createFundedJob = async (spec: JobSpec): Promise<Hash> => {
    const jobId = (await coordinator.jobs.createJob(spec, preset.blobs.values())) as Hash
    await chain.fundJob!(jobId, spec.payment!)
    await settlement.escrow.sync()
    return jobId
  }

  const stakeOf = async (address: Address): Promise<bigint> => {
    const [active, pending] = await chain.publicClient.readContract({
      address: settlement.chain.contracts.stakeManager,
      abi: stakeManagerAbi,
      functionName: 'stakeOf',
      args: [address],
    })
    return active + pending
  }

  const one = async <T extends object>(sql: string, params: unknown[]): Promise<T> => (await db.query<T>(sql, params))[0]!
  const count = async (sql: string, params: unknown[]) => Number((await one<{ n: string }>(sql, params)).n)
  const bannedAt = async (address: Address): Promise<number | null> => {
    const [row] = await db.query<{ banned_at: string | null }>(`SELECT banned_at FROM reputation WHERE address = $1`, [address])
    return row?.banned_at == null ? null : Number(row.banned_at)
  }
  const jobState = (jobId: Hash) => one<{ status: string; round: number }>(`SELECT status, round FROM jobs WHERE id = $1`, [jobId])

  // The honest network: fixed keys, staked once.
  const honestKeys: Hex[] = Array.from({ length: HONEST }, () => generatePrivateKey())
  const honestAddresses: Address[] = []
  for (const key of honestKeys) {
    const address = privateKeyToAccount(key).address
    honestAddresses.push(address)
    await settlement.drip(address)
  }

  const startParties = (jobId: Hash, parties: Array<{ kind: LiarKind | 'honest'; privateKey?: Hex }>) =>
    parties.map(({ kind, privateKey }) => {
      const adversary = createAdversary({ kind, coordinatorUrl: coordinator.url, jobId, ...(privateKey ? { privateKey } : {}) })
      return { kind, address: getAddress(adversary.address), stats: adversary.stats, scheduler: adversary.scheduler }
    })

  // 1. Warm-up: until every honest address's rate is at the floor.
  const policy = DEFAULT_VERIFICATION
  const cleanForFloor = Math.ceil(policy.halvingChecks * Math.log2(policy.initialCheckRate / policy.floorCheckRate))
  console.log(`warm-up: ${HONEST} honest addresses until each has ${cleanForFloor} consecutive clean checks…`)
  const warmStart = performance.now()
  const warmJob = await createFundedJob(benchSpec('warm-up', 10_000))
  const warmParties = startParties(warmJob, honestKeys.map((privateKey) => ({ kind: 'honest' as const, privateKey })))
  for (const p of warmParties) p.scheduler.start()
  const cleanOf = async () =>
    (await db.query<{ address: string; consecutive_clean: number }>(`SELECT address, consecutive_clean FROM reputation WHERE address = ANY($1::text[])`, [honestAddresses])).map((r) =>
      Number(r.consecutive_clean),
    )
  for (;;) {
    const clean = await cleanOf()
    if ((clean.length === HONEST && clean.every((c) => c >= cleanForFloor)) || performance.now() - warmStart > WARMUP_LIMIT_MS) break
    await sleep(500)
  }
  await Promise.all(warmParties.map((p) => p.scheduler.stop()))
  const warmUnits = await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND status = 'submitted'`, [warmJob])
  const warmClean = await cleanOf()
  const warmSeconds = (performance.now() - warmStart) / 1000
  console.log(`  ${warmUnits} answers in ${warmSeconds.toFixed(0)} s; consecutive clean checks ${warmClean.join(', ')}`)

  // 2. Steady state: a fresh job of WINDOW primaries trained by the warmed-up addresses.
  console.log(`steady state: ${WINDOW} primaries…`)
  const steadyStart = performance.now()
  const steadyJob = await createFundedJob(benchSpec('steady state', Math.ceil(WINDOW / UNITS_PER_ROUND)))
  const steadyParties = startParties(steadyJob, honestKeys.map((privateKey) => ({ kind: 'honest' as const, privateKey })))
  for (const p of steadyParties) p.scheduler.start()
  while ((await jobState(steadyJob)).status !== 'finished' && performance.now() - steadyStart < RUN_LIMIT_MS * 2) await sleep(500)
  await Promise.all(steadyParties.map((p) => p.scheduler.stop()))
  const steadySeconds = (performance.now() - steadyStart) / 1000
  const primaries = await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND kind = 'primary' AND status = 'submitted'`, [steadyJob])
  const checks = await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND kind = 'check' AND status = 'submitted'`, [steadyJob])
  const canaries = await count(`SELECT count(*) AS n FROM units WHERE job_id = $1 AND check_kind = 'referee' AND referee_hash IS NOT NULL`, [steadyJob])
  const refereeOfPeer = await count(`SELECT count(*) AS n FROM units WHERE job_id = $1 AND check_kind = 'peer' AND referee_hash IS NOT NULL`, [steadyJob])
  const steadyFlagged = await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND verdict IN ('rejected', 'dropped')`, [steadyJob])
  const extra = checks + canaries + refereeOfPeer
  const ratio = extra / primaries
  const expectedRatio = policy.floorCheckRate + (1 - policy.floorCheckRate) * policy.canaryRate
  const overhead = { primaries, checks, canaries, refereeOfPeer, extra, ratio, expectedRatio, target: 0.1, met: ratio <= 0.1, seconds: steadySeconds, flagged: steadyFlagged }
  console.log(`  overhead ${(100 * ratio).toFixed(1)}% (${checks} checks + ${canaries} canaries + ${refereeOfPeer} referee runs for disagreements / ${primaries} primaries) in ${steadySeconds.toFixed(0)} s`)

  // 3. Adversaries.
  const runs: RunResult[] = []
  const kindsToRun = KINDS.filter((k) => !ONLY_KINDS || ONLY_KINDS.includes(k.kind))
  for (const { kind, label, count: liars, cap } of kindsToRun) {
    for (let repeat = 0; repeat < REPEATS; repeat++) {
      const runStart = performance.now()
      const jobId = await createFundedJob(benchSpec(`${kind} ${repeat}`, 10_000))
      const adversaryKeys = Array.from({ length: liars }, () => generatePrivateKey())
      const parties = startParties(jobId, [
        ...honestKeys.slice(0, HONEST_PER_ATTACK).map((privateKey) => ({ kind: 'honest' as const, privateKey })),
        ...adversaryKeys.map((privateKey) => ({ kind, privateKey })),
      ])
      const bad = parties.filter((p) => p.kind !== 'honest')
      if (LOG_FILE) logLines.push(`--- ${kind} #${repeat + 1}: job ${jobId.slice(0, 10)}, adversaries ${bad.map((p) => p.address).join(', ')}`)
      const stakeBefore = new Map<Address, bigint>()
      for (const p of bad) {
        await settlement.drip(p.address)
        stakeBefore.set(p.address, await stakeOf(p.address))
      }
      for (const p of parties) p.scheduler.start()
      // Watch each adversary: its payable answers until the moment it is banned.
      const watch = new Map<Address, { payable: number; submitted: number; banned: boolean; stats: LiarStats; lies: number }>(
        bad.map((p) => [p.address, { payable: 0, submitted: 0, banned: false, stats: p.stats, lies: 0 }]),
      )
      for (;;) {
        for (const [address, w] of watch) {
          if (w.banned) continue
          if ((await bannedAt(address)) !== null) {
            w.banned = true
            continue
          }
          const row = await one<{ submitted: string; payable: string }>(
            `SELECT count(*) FILTER (WHERE status = 'submitted') AS submitted,
                    count(*) FILTER (WHERE status = 'submitted' AND verdict IN ('unchecked', 'passed')) AS payable
               FROM attempts WHERE job_id = $1 AND contributor = $2`,
            [jobId, address],
          )
          // Read again after the counts: a ban between the two reads must not count the dropped answers' state.
          if ((await bannedAt(address)) !== null) {
            w.banned = true
            continue
          }
          w.payable = Number(row.payable)
          w.submitted = Number(row.submitted)
          w.lies = w.stats.lies
        }
        const done = [...watch.values()].every((w) => w.banned || w.submitted >= cap)
        if (done || performance.now() - runStart > RUN_LIMIT_MS) break
        await sleep(POLL_MS)
      }
      await Promise.all(parties.map((p) => p.scheduler.stop()))
      const adversaries: AdversaryResult[] = []
      for (const p of bad) {
        const w = watch.get(p.address)!
        const at = await bannedAt(p.address)
        const unitsUntilCaught =
          at === null
            ? await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = $2 AND status = 'submitted'`, [jobId, p.address])
            : await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = $2 AND status = 'submitted' AND submitted_at <= $3`, [jobId, p.address, at])
        const caughtAnswer = await one<{ n: string; first: string | null }>(
          `SELECT count(*) AS n, (SELECT min(submitted_at) FROM attempts WHERE job_id = $1 AND contributor = $2 AND verdict = 'rejected') AS first
             FROM attempts WHERE job_id = $1 AND contributor = $2 AND status = 'submitted'
              AND submitted_at <= (SELECT min(submitted_at) FROM attempts WHERE job_id = $1 AND contributor = $2 AND verdict = 'rejected')`,
          [jobId, p.address],
        )
        adversaries.push({
          kind,
          address: p.address,
          caught: at !== null,
          unitsUntilCaught,
          unitsUntilCaughtAnswer: caughtAnswer.first === null ? null : Number(caughtAnswer.n),
          tokensBeforeCaught: at === null ? await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = $2 AND status = 'submitted' AND verdict IN ('unchecked', 'passed')`, [jobId, p.address]) : w.payable,
          lies: at === null ? p.stats.lies : w.lies,
          copied: p.stats.copied,
          copyRefused: p.stats.copyRefused,
          stakeBefore: String(stakeBefore.get(p.address)),
        })
      }
      const honestInRun = parties.filter((p) => p.kind === 'honest').map((p) => p.address)
      const run: RunResult = {
        kind,
        repeat,
        jobId,
        seconds: (performance.now() - runStart) / 1000,
        rounds: (await jobState(jobId)).round,
        adversaries,
        rejected: await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND verdict = 'rejected'`, [jobId]),
        dropped: await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND verdict = 'dropped'`, [jobId]),
        roundsRebuilt: await count(`SELECT coalesce(sum(rebuilds), 0) AS n FROM rounds WHERE job_id = $1`, [jobId]),
        honestChecked: await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = ANY($2::text[]) AND verdict = 'passed'`, [jobId, honestInRun]),
        honestFlagged: await count(`SELECT count(*) AS n FROM attempts WHERE job_id = $1 AND contributor = ANY($2::text[]) AND verdict IN ('rejected', 'dropped')`, [jobId, honestInRun]),
      }
      runs.push(run)
      console.log(
        `  ${label} #${repeat + 1}: ${adversaries.map((a) => (a.caught ? `caught after ${a.unitsUntilCaught} units, ${a.tokensBeforeCaught} tokens` : `not caught in ${a.unitsUntilCaught} units (${a.lies} lies)`)).join('; ')} · ${run.rounds} rounds, ${run.roundsRebuilt} rebuilt, ${run.seconds.toFixed(0)} s`,
      )
    }
  }

  // Slashing: post epochs and send the evidence until every dispute is settled (or 90 s have passed).
  console.log('settling disputes on-chain…')
  const settleStart = performance.now()
  for (;;) {
    await settlement.closeEpoch()
    await settlement.disputes.tick()
    const open = await count(`SELECT count(*) AS n FROM disputes WHERE status NOT IN ('done', 'failed')`, [])
    if (open === 0 || performance.now() - settleStart > 90_000) break
    await sleep(500)
  }
  const disputeRows = await db.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM disputes GROUP BY status`)
  for (const run of runs) for (const a of run.adversaries) a.stakeAfter = String(await stakeOf(a.address))
  const settleSeconds = (performance.now() - settleStart) / 1000

  // Honest addresses over every job: never flagged.
  const honestRecords = await db.query<{ address: string; checks_passed: number; checks_failed: number; units_rejected: number; banned_at: string | null }>(
    `SELECT address, checks_passed, checks_failed, units_rejected, banned_at FROM reputation WHERE address = ANY($1::text[])`,
    [honestAddresses],
  )
  const honestStakes = await Promise.all(honestAddresses.map(stakeOf))

  // 4. Cross-class false positives from the calibration runs.
  const calibration = JSON.parse(await readFile(join(RESULTS, 'calibration.json'), 'utf8')) as {
    honestPairs: Array<{ pair: string; all: { n: number; max: number } }>
  }
  const tolerance = DEFAULT_VERIFICATION.crossClassTolerance
  const crossClass = calibration.honestPairs.map((p) => ({ pair: p.pair, n: p.all.n, max: p.all.max, above: p.all.max > tolerance ? null : 0 }))

  // Analytic tables.
  const slashBps = DEFAULT_DEPLOY_PARAMETERS.slashBps
  const price = 1
  const minStakeTokens = Number(BigInt(DEFAULT_VERIFICATION.minStake) / 10n ** 14n) / 1e4
  const rates = [
    { label: 'initial 1/3', p: policy.initialCheckRate },
    { label: 'floor 1/20', p: policy.floorCheckRate },
    { label: 'floor 1/20 + canary 1/50', p: policy.floorCheckRate + (1 - policy.floorCheckRate) * policy.canaryRate },
  ]
  const escapeN = [1, 2, 3, 5, 10, 20, 50]
  const stakeRows = rates.map(({ label, p }) => {
    const lies = (1 - p) / p
    const needed = (price * lies) / (slashBps / 10_000)
    return { label, p, expectedLies: lies, stakeNeeded: needed, minStakeEnough: minStakeTokens >= needed }
  })
  const breakEvenRate = 1 / (1 + (minStakeTokens * slashBps) / 10_000 / price)

  // Per-kind summary.
  const summary = kindsToRun.map(({ kind, label, cap }) => {
    const all = runs.filter((r) => r.kind === kind).flatMap((r) => r.adversaries)
    const caught = all.filter((a) => a.caught)
    const slashed = caught.filter((a) => a.stakeAfter !== undefined && BigInt(a.stakeAfter) < BigInt(a.stakeBefore))
    return {
      kind,
      label,
      cap,
      adversaries: all.length,
      caught: caught.length,
      unitsMedian: median(caught.map((a) => a.unitsUntilCaught)),
      unitsMax: caught.length ? Math.max(...caught.map((a) => a.unitsUntilCaught)) : NaN,
      caughtAnswerMedian: median(caught.flatMap((a) => (a.unitsUntilCaughtAnswer === null ? [] : [a.unitsUntilCaughtAnswer]))),
      tokensMedian: median(caught.map((a) => a.tokensBeforeCaught)),
      tokensMax: caught.length ? Math.max(...caught.map((a) => a.tokensBeforeCaught)) : NaN,
      uncaughtUnits: all.filter((a) => !a.caught).map((a) => a.unitsUntilCaught),
      uncaughtLies: all.filter((a) => !a.caught).map((a) => a.lies),
      uncaughtTokens: all.filter((a) => !a.caught).map((a) => a.tokensBeforeCaught),
      slashed: slashed.length,
      stakeLostTokens: median(slashed.map((a) => Number(BigInt(a.stakeBefore) - BigInt(a.stakeAfter!)) / TOKEN)),
      copied: all.reduce((n, a) => n + a.copied, 0),
      copyRefused: all.reduce((n, a) => n + a.copyRefused, 0),
    }
  })
  const totalRejected = runs.reduce((n, r) => n + r.rejected, 0)
  const totalRebuilt = runs.reduce((n, r) => n + r.roundsRebuilt, 0)
  const totalDropped = runs.reduce((n, r) => n + r.dropped, 0)
  const honestChecked = runs.reduce((n, r) => n + r.honestChecked, 0)
  const honestFlagged = runs.reduce((n, r) => n + r.honestFlagged, 0) + steadyFlagged
  const honestBadRecords = honestRecords.filter((r) => Number(r.checks_failed) > 0 || Number(r.units_rejected) > 0 || r.banned_at !== null).length
  const totalSeconds = (performance.now() - started) / 1000
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`

  const pct = (x: number) => `${(100 * x).toFixed(1)}%`
  const md = [
    '# Verification: what spot checks catch and what they cost',
    '',
    `Run ${new Date().toISOString()} on ${machine}, ${totalSeconds.toFixed(0)} s in all. Reproduce with \`npm run bench\` (or \`npx tsx bench/verification.ts\`).`,
    '',
    `Real runs on a local chain: paid jobs (1 token per unit) under DEFAULT_VERIFICATION (initial check rate 1/3, floor 1/20, ${policy.halvingChecks} clean checks halve it, canary 1/50), contributors running the real worker code in Node (coordinator/testing/adversaries.ts), each staked ${minStakeTokens} tokens by the local faucet. Job variant: the MNIST preset with ${INNER_STEPS} Adam steps per unit instead of 10 and ${UNITS_PER_ROUND} units per round instead of 4, so the runs fit two cores; checks compare whole units, so this changes nothing that is sampled or caught. All answers come from one device class (Node cpu): comparisons are exact.`,
    '',
    '## Adversaries: units until caught, tokens earned before',
    '',
    `${REPEATS} jobs per kind, each with ${HONEST_PER_ATTACK} honest addresses that already have a record (at the floor rate) and one adversary on a fresh key (two for the colluding pair), until the adversary is banned or has submitted the cap of units. Units until caught: its answers (primaries and the checks it was given) up to and including the one that got it banned. Tokens: its payable answers (unchecked or passed) just before the ban, at 1 token each; the ban drops them all, and a banned address gets no reward leaf. Slashed: stake lost on-chain after the coordinator posted the epochs and sent the verdicts.`,
    '',
    table(
      ['adversary', 'caught', 'units until caught (median / max)', 'caught answer was its n-th (median)', 'tokens before caught (median / max)', 'slashed', 'notes'],
      summary.map((s) => [
        s.label,
        `${s.caught} / ${s.adversaries}`,
        s.caught ? `${fmt(s.unitsMedian)} / ${s.unitsMax}` : '–',
        s.caught ? fmt(s.caughtAnswerMedian) : '–',
        s.caught ? `${fmt(s.tokensMedian)} / ${s.tokensMax}` : '–',
        s.caught ? `${s.slashed} / ${s.caught} (${fmt(s.stakeLostTokens)} tokens each)` : '–',
        [
          s.uncaughtUnits.length ? `not caught within ${s.cap} units: ${s.uncaughtUnits.length} of ${s.adversaries} (${s.uncaughtLies.join(', ')} lies, none caught, in ${s.uncaughtUnits.join(', ')} answers; payable ${s.uncaughtTokens.join(', ')} tokens, honest work included)` : '',
          s.kind === 'copying-checker' ? `answers copied ${s.copied}, refused ${s.copyRefused}: it never got one, so it computed honestly` : '',
          s.kind === 'stale' ? 'honest in round 0 (no older checkpoint)' : '',
        ]
          .filter(Boolean)
          .join('; '),
      ]),
    ),
    '',
    `Expected for a liar on a fresh address (every unit a lie): each primary is checked with 1/3 + 2/3 × 1/50 = ${pct(rates[0]!.p + (1 - rates[0]!.p) * policy.canaryRate)}, so its first sampled lie is on average its answer number ${(1 / (rates[0]!.p + (1 - rates[0]!.p) * policy.canaryRate)).toFixed(1)}, with ${((1 - (rates[0]!.p + (1 - rates[0]!.p) * policy.canaryRate)) / (rates[0]!.p + (1 - rates[0]!.p) * policy.canaryRate)).toFixed(1)} unchecked ones before it (a check lease it is given is always compared, which catches it sooner). The ban comes later than the sampled answer: the sample waits for another address to compute the unit and for the referee to recompute it after the disagreement, and meanwhile the liar keeps answering (up to ${policy.maxLiveLeases} live leases). Those answers count in "units until caught" and in the tokens, and are all dropped at the ban.`,
    '',
    `Rounds rebuilt per rejected unit: ${totalRebuilt} round rebuilds for ${totalRejected} rejected answers (${totalRejected ? (totalRebuilt / totalRejected).toFixed(2) : '–'} per rejected unit; ${totalDropped} more answers of caught addresses dropped unverified).`,
    '',
    '## Verification overhead at the steady state',
    '',
    `${HONEST} honest addresses first trained a warm-up job until each had ${cleanForFloor} consecutive clean checks (rate at the floor 1/20): ${warmUnits} answers, ${warmSeconds.toFixed(0)} s; consecutive clean checks then ${warmClean.join(', ')}. Then a fresh job of ${primaries} primaries (${steadySeconds.toFixed(0)} s):`,
    '',
    table(
      ['primaries (useful)', 'peer checks', 'canaries (referee)', 'referee runs after a disagreement', 'extra / useful', 'expected (1/20 + 19/20 × 1/50)', 'target ≤ 10%'],
      [[primaries, checks, canaries, refereeOfPeer, `**${pct(ratio)}**`, pct(expectedRatio), ratio <= 0.1 ? 'met' : '**not met**']],
    ),
    '',
    'Compute counted in units: a check and a referee run each compute one whole unit, as a primary does.',
    '',
    '## False positives',
    '',
    table(
      ['honest comparisons', 'flagged', 'expected'],
      [
        ...crossClass.map((c) => [`cross-class ${c.pair} (calibration, distance > ${tolerance}; max ${c.max.toExponential(2)})`, `${c.above ?? '≥ 1'} / ${c.n}`, 0]),
        [`same class (Node cpu), honest answers checked in the adversary runs`, `${honestFlagged} / ${honestChecked}`, 0],
        [`honest addresses with a failed check, a rejected unit, a ban or lost stake (all runs)`, `${honestBadRecords + honestStakes.filter((s) => s < BigInt(DEFAULT_VERIFICATION.minStake)).length} / ${HONEST}`, 0],
      ],
    ),
    '',
    '## Analytic: escape probability and the stake for which cheating does not pay',
    '',
    'P(a liar escapes detection after n lies) = (1 − p)^n:',
    '',
    table(['n lies', ...rates.map((r) => `p = ${r.label}`)], escapeN.map((n) => [n, ...rates.map((r) => (1 - r.p) ** n).map((x) => (x < 1e-4 ? x.toExponential(1) : x.toFixed(4)))])),
    '',
    `A liar earns the price (${price} token) per unchecked lie and loses slashBps = ${slashBps} (contracts/deploy.ts DEFAULT_DEPLOY_PARAMETERS) of its stake when caught; it expects (1 − p)/p lies before capture at rate p. Cheating does not pay when stake × ${slashBps}/10000 ≥ price × (1 − p)/p:`,
    '',
    table(
      ['check rate', 'expected lies before capture', 'stake needed (price 1 token)', `minStake ${minStakeTokens} tokens enough?`],
      stakeRows.map((r) => [r.label, r.expectedLies.toFixed(1), `${fmt(r.stakeNeeded)} tokens`, r.minStakeEnough ? 'yes' : '**no**']),
    ),
    '',
    minStakeTokens >= stakeRows[1]!.stakeNeeded
      ? `**DEFAULT_VERIFICATION.minStake (${minStakeTokens} tokens) is enough at the floor rate for a price of up to ${fmt(minStakeTokens / stakeRows[1]!.stakeNeeded, 2)} token per unit** (${fmt(stakeRows[1]!.stakeNeeded)} tokens needed at 1 token per unit; ${fmt(stakeRows[2]!.stakeNeeded)} counting canaries): it deters at every check rate ≥ ${breakEvenRate.toFixed(3)} (1 in ${fmt(1 / breakEvenRate)}). The bound scales with the price: a job paying more than that per unit needs minStake ≥ ${fmt(stakeRows[1]!.stakeNeeded)} × pricePerUnit. (10 tokens would deter only at p ≥ ${(1 / (1 + (10 * slashBps) / 10_000 / price)).toFixed(3)}, i.e. 1 in ${fmt(1 + (10 * slashBps) / 10_000 / price)}: not past an address's first clean checks.)`
      : `**DEFAULT_VERIFICATION.minStake (${minStakeTokens} tokens) is not enough at the floor rate**: it deters only while an address is checked at p ≥ ${breakEvenRate.toFixed(3)} (1 in ${fmt(1 / breakEvenRate)}). At the floor 1/20 the stake should be at least ${fmt(stakeRows[1]!.stakeNeeded)} × pricePerUnit (${fmt(stakeRows[1]!.stakeNeeded)} tokens for the preset's 1 token per unit), or ${fmt(stakeRows[2]!.stakeNeeded)} × price counting canaries.`,
    '',
    'This bound is conservative: it ignores the earnings a caught liar also forfeits (its unpaid answers are dropped and a banned address gets no reward leaf).',
    '',
    `Runtimes: warm-up ${warmSeconds.toFixed(0)} s, steady state ${steadySeconds.toFixed(0)} s, adversary runs ${runs.reduce((n, r) => n + r.seconds, 0).toFixed(0)} s, disputes ${settleSeconds.toFixed(0)} s (${disputeRows.map((d) => `${d.n} ${d.status}`).join(', ')}). Knobs: BENCH_VERIFY_REPEATS (${REPEATS}), BENCH_VERIFY_WINDOW (${WINDOW}), BENCH_VERIFY_INNER_STEPS (${INNER_STEPS}).`,
    '',
  ].join('\n')

  await mkdir(RESULTS, { recursive: true })
  await writeFile(join(RESULTS, 'verification.md'), md)
  await writeFile(
    join(RESULTS, 'verification.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        seconds: totalSeconds,
        policy,
        job: { innerSteps: INNER_STEPS, unitsPerRound: UNITS_PER_ROUND, pricePerUnit: String(PRICE) },
        warmup: { answers: warmUnits, seconds: warmSeconds, consecutiveClean: warmClean, cleanForFloor },
        overhead,
        summary,
        runs,
        rebuilds: { rejected: totalRejected, dropped: totalDropped, roundsRebuilt: totalRebuilt },
        falsePositives: { crossClass, sameClass: { flagged: honestFlagged, checked: honestChecked }, honestRecords, honestStakes: honestStakes.map(String) },
        disputes: disputeRows,
        analytic: { slashBps, escape: escapeN.map((n) => ({ n, ...Object.fromEntries(rates.map((r) => [r.label, (1 - r.p) ** n])) })), stake: stakeRows, minStakeTokens, breakEvenRate },
      },
      null,
      2,
    ),
  )
  console.log(md)
  if (LOG_FILE) await writeFile(LOG_FILE, logLines.join('\n'))
  await coordinator.dispose()
}

await main()
process.exit(0)
