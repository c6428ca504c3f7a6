import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, createWalletClient, http, toHex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, describe, expect, it } from 'vitest'
import { anvilAccount, anvilChain, startAnvil, type AnvilInstance } from '../contracts/anvil.ts'
import { DEFAULT_DEPLOY_PARAMETERS, deployTabTrain } from '../contracts/deploy.ts'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { DEFAULT_VERIFICATION, type ContractAddresses, type Hash, type JobProgress, type JobSpec } from '../src/protocol/index.ts'
import { auditChain, auditStore, type ChainAudit, type StoreAudit } from './crash/audit.ts'
import { Crew } from './crash/crew.ts'
import { CRASH_JOB_PRICE, CRASH_JOB_REQUESTER, createCrashJob, depositBudget, stakeFor } from './crash/job.ts'
import { runKills, until, type KillRecord } from './crash/killLoop.ts'
import { planKills } from './crash/killPlan.ts'
import { openPglite, openPostgres, type Database } from './db.ts'
import { startCoordinator, type RunningCoordinator } from './server.ts'
import { startTemporaryCoordinator } from './testing/inProcess.ts'
import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from './testing/postgresServer.ts'
import { prepareCoordinator, removeDataDir, spawnCoordinator, type PreparedCoordinator, type SpawnedCoordinator } from './testing/spawnCoordinator.ts'

/** SIGKILLs per setting (issue 12). */
const KILLS = 20
/**
 * Rounds of the job (K = 4 a round): enough units to spread the kills over and to spare. Each kill waits for
 * the job to move on after the restart before it and then for its aim (a close, an epoch), so on a loaded
 * machine a kill cycle can use up 5 units or more: 24 rounds (96 units) once ran out before the 20th kill.
 */
const ROUNDS = 40
const CONTRIBUTORS = 3
/** Epochs every second, so that kills land while roots are being posted. */
const COORDINATOR_ENV = { TABTRAIN_EPOCH_SECONDS: '1', TABTRAIN_LOG_FORMAT: 'json', TABTRAIN_LOG_LEVEL: 'info' }
/** CRASH_TEST_LOGS=<folder>: every coordinator process's output is written there when the test ends. */
const LOG_DIR = process.env.CRASH_TEST_LOGS
/** CRASH_TEST_VERBOSE=1 prints each kill as it happens. */
const onKill = process.env.CRASH_TEST_VERBOSE
  ? (r: KillRecord, i: number, restarted: { killedAt: number; output: string }) => {
      console.log(
        `${new Date().toISOString().slice(11, 23)} kill ${i + 1} (${r.planned.aim} after ${r.planned.afterUnits}): round ${r.before.round}, ` +
          `${r.before.acceptedThisRound} in, ${r.before.acceptedUnits} accepted${r.midClose ? ', mid-close' : ''}${r.midEpochPost ? ', mid-epoch-post' : ''}; back in ${r.restartMs} ms`,
      )
      // The restart's log, in ms since the kill.
      for (const line of restarted.output.split('\n')) {
        const record = /^\{.*"time":"([^"]+)".*"msg":"([^"]{0,100})/.exec(line)
        if (record) console.log(`  +${Date.parse(record[1]!) - restarted.killedAt} ms ${record[2]}`)
      }
    }
  : undefined

/**
 * The same job, run once without interruption in this process: its final checkpoint is what every crashed
 * run must end with, bit for bit. Computed once for the file, alongside the first crash run.
 */
let uninterrupted: Promise<{ jobId: Hash; progress: JobProgress }> | null = null
function uninterruptedRun() {
  uninterrupted ??= (async () => {
    const coordinator = await startTemporaryCoordinator({ epochSeconds: 1 })
    const client = new CoordinatorClient(coordinator.url)
    const { jobId, spec } = await createCrashJob(client, ROUNDS)
    const chain = (await client.info()).chain!
    await depositBudget(chain.rpcUrl, chain.contracts, jobId, BigInt(spec.payment!.budget))
    const keys = Array.from({ length: CONTRIBUTORS }, () => generatePrivateKey())
    for (const key of keys) await client.faucet(privateKeyToAccount(key).address)
    const crew = new Crew(jobId, keys.map((privateKey) => ({ privateKey, url: coordinator.url })))
    crew.start()
    try {
      const progress = await until(() => client.progress(jobId), (p) => p.status === 'finished', 'the uninterrupted run finishing', 180_000, 200)
      return { jobId, progress }
    } finally {
      await crew.stop()
      await coordinator.dispose()
    }
  })()
  return uninterrupted
}

/** Waits until every payable answer is in a posted root: each contributor's latest leaf is what it earned. */
/**
 * Once a job finishes, checks still pending go to the referee (a tick or two): an answer is paid only once its
 * check settles, so the audit waits for both, every check settled and every payable answer in a posted root.
 */
async function settled(client: CoordinatorClient, crew: Crew, jobId: Hash) {
  await until(() => client.progress(jobId), (p) => p.verification.checksPending === 0, 'every check of the finished job settled', 60_000, 200)
  return until(
    async () => Promise.all(crew.members.map((m) => client.rewards(m.address))),
    (views) => views.every((v) => v.latest !== null && BigInt(v.earned) > 0n && v.latest.cumulativeAmount === v.earned),
    'every payable answer in a posted root',
    60_000,
    200,
  )
}

function summarize(setting: string, records: KillRecord[], store: StoreAudit, chain: ChainAudit, crew: Crew, checkpoint: Hash): string {
  const aimed = (aim: string) => records.filter((r) => r.planned.aim === aim).length
  const restarts = records.map((r) => r.restartMs).sort((a, b) => a - b)
  const paid = [...store.payable.values()].reduce((a, b) => a + b, 0)
  return (
    `crash ${setting}: kills ${records.length} (aimed unit ${aimed('unit')}, close ${aimed('close')}, epoch ${aimed('epoch')}; ` +
    `landed mid-round ${records.filter((r) => r.midRound).length}, mid-close ${records.filter((r) => r.midClose).length}, ` +
    `mid-epoch-post ${records.filter((r) => r.midEpochPost).length}), restart median ${restarts[restarts.length >> 1]} ms (max ${restarts.at(-1)}), ` +
    `accepted ${store.primaries + store.checks} (units ${store.primaries}, checks ${store.checks}; acknowledged to contributors ${crew.acknowledged().length}), ` +
    `lost ${store.lost.length}, double-counted ${store.doubleCounted.length}, contributor retries ${crew.outages().join('/')}, ` +
    `epochs ${chain.epochCount} (roots posted twice ${[...chain.postsPerEpoch.values()].filter((n) => n > 1).length}), paid ${paid} × price, ` +
    `final checkpoint ${checkpoint.slice(0, 18)}… = uninterrupted run's`
  )
}

/** The invariants both settings share, once the job has finished and settled. */
function expectNothingLostOrPaidTwice(store: StoreAudit, chain: ChainAudit, spec: JobSpec, crew: Crew, rewards: Map<string, bigint>) {
  expect(store.lost).toEqual([])
  expect(store.doubleCounted).toEqual([])
  expect(store.inconsistencies).toEqual([])
  expect(store.rounds).toBe(ROUNDS)
  expect(store.primaries).toBe(ROUNDS * spec.training.unitsPerRound)
  // Rewards: each address's cumulative amount in the last posted root is its payable answers × price, and the
  // escrow was charged exactly their sum.
  const price = BigInt(spec.payment!.pricePerUnit)
  expect(price).toBe(CRASH_JOB_PRICE)
  for (const m of crew.members) expect(rewards.get(m.address)).toBe(BigInt(store.payable.get(m.address) ?? 0) * price)
  const total = [...store.payable.values()].reduce((a, b) => a + BigInt(b), 0n) * price
  expect(chain.charged).toBe(total)
  // Epochs: numbered 1..n in the store, all posted, each posted on the chain exactly once with the stored root.
  expect(store.epochs.map((e) => e.epoch)).toEqual(store.epochs.map((_, i) => i + 1))
  expect(store.epochs.every((e) => e.status === 'posted')).toBe(true)
  expect(store.epochs.at(-1)!.totalCumulative).toBe(total)
  expect(chain.epochCount).toBe(store.epochs.length)
  expect([...chain.postsPerEpoch.entries()].sort(([a], [b]) => a - b)).toEqual(store.epochs.map((e) => [e.epoch, 1]))
  for (const e of store.epochs) expect(chain.roots.get(e.epoch)).toBe(e.root)
  // The contributors were never restarted: none gave up, each saw the outages and finished the job by itself.
  expect(crew.gaveUp()).toEqual([])
  for (const m of crew.members) expect(m.scheduler.currentState).toBe('finished')
}

/** The job's id, pinned: the draft, the seeded weights and the CSV make the spec. */
const CRASH_JOB_ID = '0x7f0531472989b7154b568d3ad581a23b7562a8f2603f46617baebcf90f6dbf67'

/**
 * After the last kill: the job finishes and settles by itself (the contributors were never restarted), then
 * the chain and the store are audited and both settings' invariants asserted, with the summary line printed.
 */
async function auditAndExpect(p: {
  setting: string
  records: KillRecord[]
  observer: CoordinatorClient
  crew: Crew
  jobId: Hash
  spec: JobSpec
  /** The chain's RPC URL now (a local chain comes back on a new port with each restart of its coordinator). */
  rpcUrl: () => Promise<string>
  contracts: ContractAddresses
  /** Opens the store for the audit, once whatever holds it has let go. */
  openStore: () => Promise<Database>
  baseline: ReturnType<typeof uninterruptedRun>
}) {
  const { observer, crew, jobId, spec } = p
  const finished = await until(() => observer.progress(jobId), (progress) => progress.status === 'finished', 'the job finishing', 120_000, 100)
  await until(() => crew.members.map((m) => m.scheduler.currentState), (states) => states.every((s) => s === 'finished'), 'contributors finishing', 60_000, 100)
  const views = await settled(observer, crew, jobId)
  const rewards = new Map(views.map((v) => [v.address, BigInt(v.latest!.cumulativeAmount)]))
  const onChain = await auditChain(await p.rpcUrl(), p.contracts, jobId, CRASH_JOB_REQUESTER.address)
  const db = await p.openStore()
  let store: StoreAudit
  try {
    store = await auditStore(db, { id: jobId, rounds: ROUNDS, unitsPerRound: spec.training.unitsPerRound, initialWeights: spec.model.initialWeights }, crew.acknowledged())
  } finally {
    await db.close()
  }

  const reference = await p.baseline
  console.log(summarize(p.setting, p.records, store, onChain, crew, finished.checkpoint))
  expect(p.records).toHaveLength(KILLS)
  expectNothingLostOrPaidTwice(store, onChain, spec, crew, rewards)
  expect(crew.outages().every((n) => n > 0)).toBe(true)
  // The same job id, so the same spec; the same model, bit for bit, after every round.
  expect(jobId).toBe(CRASH_JOB_ID)
  expect(reference.jobId).toBe(jobId)
  expect(finished.checkpoint).toBe(reference.progress.checkpoint)
  expect(store.outputs).toEqual(reference.progress.history.map((r) => r.outputHash))
}

const postgresMissing = postgresUnavailableReason()
if (postgresMissing) console.warn(`[coordinator/crash.test.ts] the replica setting is skipped: ${postgresMissing}`)

// The two settings run side by side: most of a kill's time is waiting (a restart, contributors' back-off).
describe.concurrent('a coordinator killed with SIGKILL 20 times during a job', () => {
  const spawned: SpawnedCoordinator[] = []
  const spares: PreparedCoordinator[] = []
  const crews: Crew[] = []
  const inProcess: RunningCoordinator[] = []
  const servers: Array<PostgresServer | AnvilInstance> = []
  const dirs: string[] = []

  afterAll(async () => {
    if (LOG_DIR) {
      await mkdir(LOG_DIR, { recursive: true })
      await Promise.all(spawned.map((c, i) => writeFile(join(LOG_DIR, `${String(i).padStart(3, '0')}-${c.pid}.log`), c.output())))
    }
    await Promise.all(crews.map((c) => c.stop()))
    await Promise.all(spares.map((s) => s.discard()))
    await Promise.all(spawned.map((c) => c.kill('SIGKILL')))
    await Promise.all(inProcess.map((c) => c.close().catch(() => {})))
    await Promise.all(servers.map((s) => s.stop()))
    await Promise.all([...new Set([...spawned.map((c) => c.dataDir), ...dirs])].map(removeDataDir))
  })

  /** Prepares the next coordinator process for `dataDir` and `port` (warm), kept for clean-up until started. */
  function prepare(dataDir: string, port: number, env: Record<string, string>) {
    const spare = prepareCoordinator({ dataDir, port, env })
    void spare.then((s) => spares.push(s), () => {})
    return spare
  }
  async function startSpare(spare: Promise<PreparedCoordinator>) {
    const ready = await spare
    if (spares.includes(ready)) spares.splice(spares.indexOf(ready), 1)
    const started = await ready.start()
    spawned.push(started)
    return started
  }

  it('alone on PGlite with its local chain: loses no update, pays nothing twice, ends on the uninterrupted model', { timeout: 900_000 }, async () => {
    const baseline = uninterruptedRun()
    baseline.catch(() => {})
    let coordinator = await spawnCoordinator({ env: COORDINATOR_ENV })
    spawned.push(coordinator)
    const port = Number(new URL(coordinator.url).port)
    const client = new CoordinatorClient(coordinator.url)
    const { jobId, spec } = await createCrashJob(client, ROUNDS)
    const info = await client.info()
    const chain = info.chain!
    await depositBudget(chain.rpcUrl, chain.contracts, jobId, BigInt(spec.payment!.budget))
    const keys = Array.from({ length: CONTRIBUTORS }, () => generatePrivateKey())
    for (const key of keys) await client.faucet(privateKeyToAccount(key).address)
    // anvil writes its state to disk every second: a crash sooner could take the deposit and stakes with it.
    await new Promise((r) => setTimeout(r, 1200))
    const crew = new Crew(jobId, keys.map((privateKey) => ({ privateKey, url: coordinator.url })))
    crews.push(crew)
    crew.start()

    let spare = prepare(coordinator.dataDir, port, COORDINATOR_ENV)
    const records = await runKills({
      plan: planKills('pglite', KILLS, ROUNDS * spec.training.unitsPerRound),
      jobId,
      unitsPerRound: spec.training.unitsPerRound,
      observer: client,
      victim: () => coordinator,
      restart: async () => {
        coordinator = await startSpare(spare)
        spare = prepare(coordinator.dataDir, port, COORDINATOR_ENV)
      },
      carriedOn: (since) => crew.members.some((m) => crew.heardSince(m, since)),
      onKill,
    })
    await (await spare).discard()

    await auditAndExpect({
      setting: '(a) one coordinator on PGlite',
      records,
      observer: client,
      crew,
      jobId,
      spec,
      rpcUrl: async () => (await client.info()).chain!.rpcUrl,
      contracts: chain.contracts,
      // The store is read once the coordinator has closed it.
      openStore: async () => {
        await coordinator.kill('SIGTERM')
        return openPglite(join(coordinator.dataDir, 'pgdata'))
      },
      baseline,
    })
  })
  it.skipIf(postgresMissing)(
    'one of three replicas on PostgreSQL: loses no update, pays nothing twice, ends on the uninterrupted model',
    { timeout: 900_000 },
    async () => {
      const baseline = uninterruptedRun()
      baseline.catch(() => {})
      // One PostgreSQL and one chain the replicas share and outlive; no disk is shared (blobs in the database).
      const [postgres, anvil] = await Promise.all([startPostgresServer({ database: 'crash' }), startAnvil()])
      servers.push(postgres, anvil)
      // The local chain's roles (settlement/localChain.ts): account 0 deploys and coordinates, 1 requests, 2 is the treasury.
      const chain = anvilChain(anvil)
      const deployment = await deployTabTrain({
        walletClient: createWalletClient({ account: anvilAccount(0), chain, transport: http(anvil.rpcUrl) }),
        publicClient: createPublicClient({ chain, transport: http(anvil.rpcUrl), pollingInterval: 20 }),
        admin: anvilAccount(0).address,
        coordinator: anvilAccount(0).address,
        treasury: anvilAccount(2).address,
        ...DEFAULT_DEPLOY_PARAMETERS,
      })
      const coordinatorKey = toHex(anvilAccount(0).getHdKey().privateKey!)
      const env = {
        ...COORDINATOR_ENV,
        DATABASE_URL: postgres.url,
        TABTRAIN_BLOBS: 'postgres',
        TABTRAIN_CHAIN: 'external',
        TABTRAIN_RPC_URL: anvil.rpcUrl,
        TABTRAIN_CONTRACTS: JSON.stringify(deployment.contracts),
        TABTRAIN_COORDINATOR_KEY: coordinatorKey,
        TABTRAIN_FROM_BLOCK: String(deployment.blockNumber),
      }
      // The replica that is killed is a process of its own; the two others run in this process (as in
      // replicas.test.ts: their own servers, pools and timers, meeting the first only in PostgreSQL and on the chain).
      let victim = await spawnCoordinator({ env })
      spawned.push(victim)
      const port = Number(new URL(victim.url).port)
      for (let i = 0; i < 2; i++) {
        const dataDir = await mkdtemp(join(tmpdir(), 'tabtrain-crash-replica-'))
        dirs.push(dataDir)
        inProcess.push(
          await startCoordinator({
            host: '127.0.0.1',
            port: 0,
            dataDir,
            databaseUrl: postgres.url,
            siteDir: join(dataDir, 'no-site'),
            chain: { mode: 'external', rpcUrl: anvil.rpcUrl, contracts: deployment.contracts, coordinatorKey, fromBlock: deployment.blockNumber },
            epochSeconds: 1,
            blobs: { kind: 'postgres' },
          }),
        )
      }
      const observer = new CoordinatorClient(inProcess[0]!.url)
      const { jobId, spec } = await createCrashJob(observer, ROUNDS)
      await depositBudget(anvil.rpcUrl, deployment.contracts, jobId, BigInt(spec.payment!.budget))
      const keys = Array.from({ length: CONTRIBUTORS }, () => generatePrivateKey())
      // No faucet off the local chain: the token's owner stakes each contributor the job's minimum.
      await stakeFor(anvil.rpcUrl, deployment.contracts, keys.map((k) => privateKeyToAccount(k).address), BigInt(DEFAULT_VERIFICATION.minStake))
      // The contributors work with the replica that is killed (the others keep ticking: epochs under the
      // settlement lock, closes of settled rounds, checks for the referee), so that the job moves only while it
      // serves and the kills are spread over the job as in the single-coordinator setting.
      const crew = new Crew(jobId, keys.map((privateKey) => ({ privateKey, url: victim.url })))
      crews.push(crew)
      crew.start()

      let spare = prepare(victim.dataDir, port, env)
      const records = await runKills({
        plan: planKills('replica', KILLS, ROUNDS * spec.training.unitsPerRound),
        jobId,
        unitsPerRound: spec.training.unitsPerRound,
        observer,
        victim: () => victim,
        restart: async () => {
          victim = await startSpare(spare)
          spare = prepare(victim.dataDir, port, env)
        },
        carriedOn: (since) => crew.members.some((m) => crew.heardSince(m, since)),
        onKill,
      })
      await (await spare).discard()

      await auditAndExpect({
        setting: '(b) one of three replicas on PostgreSQL',
        records,
        observer,
        crew,
        jobId,
        spec,
        rpcUrl: async () => anvil.rpcUrl,
        contracts: deployment.contracts,
        openStore: () => openPostgres(postgres.url),
        baseline,
      })
    },
  )
})
