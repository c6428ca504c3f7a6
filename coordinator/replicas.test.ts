import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { toHex, type Hex } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { jobEscrowAbi, rewardDistributorAbi, disputeResolverAbi } from '../contracts/generated/index.ts'
import { startTestChain, type TestChain } from '../contracts/testing.ts'
import {
  decodeTensorList,
  encodeSubmission,
  encodeUpdate,
  sha256Hex,
  signLeaseRequest,
  signWorkClaim,
  stakeNeeded,
  type ClaimDomainParams,
  type Hash,
  type JobSpec,
  type LeaseResponse,
  type WorkClaim,
} from '../src/protocol/index.ts'
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from 'viem/accounts'
import { threadAggregator, type Aggregator } from './aggregation/aggregator.ts'
import { buildMnistPreset } from './presets/mnist.ts'
import type { Referee } from './verification/referee.ts'
import { advisoryKey, postgresLocks, SETTLEMENT_LOCK } from './replicaLocks.ts'
import { startCoordinator, type RunningCoordinator } from './server.ts'
import { BARELY_CHECKED, testUpdate } from './testing/fixtures.ts'
import { postgresUnavailableReason, startPostgresServer, type PostgresServer } from './testing/postgresServer.ts'

/**
 * Three coordinators on one PostgreSQL and one chain, sharing nothing else (each its own data folder,
 * blobs in the database), with contributors whose every request goes to the next replica round-robin (a
 * lease from one, its answer to another), as behind a load balancer without affinity. The replicas run
 * in this process through startCoordinator: each has its own HTTP server, pools, job service, settlement
 * and timers, so they meet only in PostgreSQL, as separate processes do, while the test counts each one's
 * round closes exactly (a counting aggregator) and starts in seconds. The killed-replica case runs
 * separate processes (coordinator/crash/).
 */
const REPLICAS = 3
const CONTRIBUTORS = 6
const ROUNDS = 4
const UNITS_PER_ROUND = 3
/** Short epochs, so several pass while the job runs: every replica's timer fires, one tick runs per period. */
const EPOCH_SECONDS = 1
/** A unit price small enough that the stake a barely-checked paid job asks is a few tokens. */
const PRICE = 10n ** 12n

const skipReason = postgresUnavailableReason()
if (skipReason) console.warn(`[coordinator/replicas.test.ts] skipped: ${skipReason}`)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

interface Replica {
  coordinator: RunningCoordinator
  dataDir: string
  /** Aggregations this replica computed (round closes and rebuilds). */
  aggregations: number
  /** Units this replica's referee computed. */
  refereeRuns: number
  log: string[]
}

/** A contributor as a page is one, except that its update is made up: lease, sign, submit, each to the next replica. */
async function contribute(params: {
  account: PrivateKeyAccount
  urls: string[]
  first: number
  jobId: Hash
  spec: JobSpec
  shapes: readonly (readonly number[])[]
  domain: ClaimDomainParams
  audience: string
  granted: Array<{ round: number; unit: number; leaseId: string; leasedAt: string; submittedAt: string }>
  /** Runs after every accepted answer. */
  afterAnswer: () => Promise<void>
}): Promise<void> {
  const { account, urls, jobId, spec, domain } = params
  let turn = params.first
  let session: string | null = null
  for (;;) {
    const leaseAt = urls[turn++ % urls.length]!
    const body = session ? { session } : await signLeaseRequest(account, { jobId, audience: params.audience, domain })
    const response = await fetch(`${leaseAt}/api/jobs/${jobId}/leases`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const answer = (await response.json()) as LeaseResponse & { session?: { token: string }; code?: string; message?: string }
    if (!response.ok) throw new Error(`lease refused by ${leaseAt}: ${answer.code}: ${answer.message}`)
    if (answer.session) session = answer.session.token
    if (answer.status === 'finished') return
    if (answer.status === 'wait') {
      await sleep(Math.min(answer.retryAfterMs, 200))
      continue
    }
    const { lease } = answer as Extract<LeaseResponse, { status: 'leased' }>
    // Deterministic per unit, so the final checkpoint does not depend on who computed what.
    const update = encodeUpdate(spec.training.compression, testUpdate(params.shapes, 1 + ((lease.unit.round * UNITS_PER_ROUND + lease.unit.unit) % 5)))
    const claim: WorkClaim = { ...lease.unit, jobId: lease.unit.jobId as Hash, outputHash: sha256Hex(update), contributor: account.address, deviceClass: 'replicas-test' }
    const { signature } = await signWorkClaim(account, claim, domain)
    const submitAt = urls[turn++ % urls.length]!
    const submitted = await fetch(`${submitAt}/api/leases/${lease.id}/submission`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: encodeSubmission({ claim, signature, trainLoss: 1 }, update) as BodyInit,
    })
    if (!submitted.ok) throw new Error(`submission refused by ${submitAt}: ${await submitted.text()}`)
    await submitted.body?.cancel()
    params.granted.push({ round: lease.unit.round, unit: lease.unit.unit, leaseId: lease.id, leasedAt: leaseAt, submittedAt: submitAt })
    await params.afterAnswer()
  }
}

describe.skipIf(skipReason)('three coordinator replicas on one PostgreSQL and one chain', () => {
  let postgres: PostgresServer
  let chain: TestChain
  const replicas: Replica[] = []
  let jobId: Hash
  let spec: JobSpec
  const granted: Parameters<typeof contribute>[0]['granted'] = []

  beforeAll(async () => {
    ;[postgres, chain] = await Promise.all([startPostgresServer({ database: 'replicas' }), startTestChain()])
    const coordinatorKey: Hex = toHex(chain.accounts.coordinator.getHdKey().privateKey!)
    // Started at once: the first to take the migration lock migrates, the others find the schema done.
    replicas.push(
      ...(await Promise.all(
        Array.from({ length: REPLICAS }, async (_, index) => {
          const dataDir = await mkdtemp(join(tmpdir(), `tabtrain-replica-${index}-`))
          const inner: Aggregator = threadAggregator()
          const replica = { dataDir, aggregations: 0, refereeRuns: 0, log: [] as string[] } as Replica
          const aggregator: Aggregator = {
            aggregate(request, blob) {
              replica.aggregations += 1
              return inner.aggregate(request, blob)
            },
          }
          // The made-up answers cannot be re-executed; this referee takes a while and agrees with the unit's answer.
          const referee: Referee = {
            async compute(_spec, unit) {
              replica.refereeRuns += 1
              await sleep(300)
              const [primary] = await replica.coordinator.db.query<{ output_hash: Hash }>(
                `SELECT a.output_hash FROM units u JOIN attempts a ON a.lease_id = u.lease_id WHERE u.job_id = $1 AND u.round = $2 AND u.unit = $3`,
                [unit.jobId, unit.round, unit.unit],
              )
              const updateBytes = await replica.coordinator.blobs.get(primary!.output_hash)
              return { outputHash: primary!.output_hash, updateBytes, deviceClass: 'replicas-test', ms: 300 }
            },
            async close() {},
          }
          replica.coordinator = await startCoordinator(
            {
              host: '127.0.0.1',
              port: 0,
              dataDir,
              databaseUrl: postgres.url,
              siteDir: join(dataDir, 'no-site'),
              chain: { mode: 'external', rpcUrl: chain.anvil.rpcUrl, contracts: chain.contracts, coordinatorKey, fromBlock: 0n },
              epochSeconds: EPOCH_SECONDS,
              blobs: { kind: 'postgres' },
            },
            { log: (message) => replica.log.push(message), aggregator, referee },
          )
          return replica
        }),
      )),
    )
  }, 120_000)

  afterAll(async () => {
    for (const replica of replicas) {
      await replica.coordinator.close().catch(() => {})
      await rm(replica.dataDir, { recursive: true, force: true })
    }
    await chain?.stop()
    await postgres?.stop()
  })

  it('advisory locks: one holder among replicas; a waiter gets the lock when it is released, and when its holder dies', async () => {
    const [a, b] = [postgresLocks(postgres.url), postgresLocks(postgres.url)]
    try {
      const held = (await a.tryAcquire('test/one'))!
      expect(held).not.toBeNull()
      expect(await b.tryAcquire('test/one')).toBeNull()
      // Another name is another lock.
      await (await b.tryAcquire('test/other'))!.release()
      const order: string[] = []
      const waiting = b.acquire('test/one').then((lock) => (order.push('b acquired'), lock))
      await sleep(200)
      order.push('a releases')
      await held.release()
      await (await waiting).release()
      expect(order).toEqual(['a releases', 'b acquired'])
      // A holder that dies (its connections close without a release) frees the lock.
      await a.acquire('test/one')
      expect(await b.tryAcquire('test/one')).toBeNull()
      await a.close()
      await (await until('the dead holder\'s lock to go', () => b.tryAcquire('test/one'), 5000)).release()
    } finally {
      await b.close()
    }
  })

  it("relays job progress to the other replicas (their tabs' live feeds), once, and not back", async () => {
    const jobId = `0x${'5e'.repeat(32)}`
    const heard = replicas.map(() => [] as string[])
    // Only this made-up job's: every replica's verification tick reports progress of the real ones each second.
    const listeners = replicas.map((replica, i) => {
      const listener = (id: string) => id === jobId && heard[i]!.push(id)
      replica.coordinator.jobs.events.on('progress', listener)
      return listener
    })
    try {
      // Three changes in quick succession at replica 0 go out as one notification.
      for (let i = 0; i < 3; i++) replicas[0]!.coordinator.jobs.events.emit('progress', jobId)
      await until('the other replicas to hear of it', async () => heard[1]!.length > 0 && heard[2]!.length > 0, 5000)
      await sleep(300)
      expect(heard).toEqual([[jobId, jobId, jobId], [jobId], [jobId]])
    } finally {
      replicas.forEach((replica, i) => replica.coordinator.jobs.events.off('progress', listeners[i]!))
    }
  })

  it('spreads a paid job over the replicas: each lease once, each round closed and aggregated once, each epoch root posted once', { timeout: 120_000 }, async () => {
    const [first] = replicas
    // A paid job of few, small rounds whose made-up answers are never sampled for a check.
    const preset = await buildMnistPreset({ paid: true, requester: chain.accounts.requester.address })
    spec = {
      ...preset.spec,
      name: 'replicas',
      training: { ...preset.spec.training, rounds: ROUNDS, unitsPerRound: UNITS_PER_ROUND, maxStaleness: 0 },
      verification: BARELY_CHECKED,
      payment: { ...preset.spec.payment!, pricePerUnit: String(PRICE), budget: String(PRICE * 1000n) },
    }
    jobId = await first!.coordinator.jobs.createJob(spec, preset.blobs.values())
    const shapes = decodeTensorList(preset.blobs.get(spec.model.initialWeights)!).shapes

    // The requester escrows the budget; each contributor has the stake the job asks.
    const budget = BigInt(spec.payment!.budget)
    await chain.mined(chain.as('deployer').token.write.mint([chain.accounts.requester.address, budget]))
    await chain.mined(chain.as('requester').token.write.approve([chain.contracts.jobEscrow, budget]))
    await chain.mined(chain.as('requester').jobEscrow.write.deposit([jobId, budget, (await chain.now()) + 86_400n]))
    const slashBps = Number(await chain.publicClient.readContract({ address: chain.contracts.disputeResolver, abi: disputeResolverAbi, functionName: 'slashBps' }))
    const stake = stakeNeeded(BARELY_CHECKED, PRICE, slashBps)
    const accounts = Array.from({ length: CONTRIBUTORS }, () => privateKeyToAccount(generatePrivateKey()))
    await chain.mined(chain.as('deployer').token.write.mint([chain.accounts.deployer.address, stake * BigInt(CONTRIBUTORS)]))
    await chain.mined(chain.as('deployer').token.write.approve([chain.contracts.stakeManager, stake * BigInt(CONTRIBUTORS)]))
    for (const account of accounts) await chain.mined(chain.as('deployer').stakeManager.write.stakeFor([account.address, stake]))
    // Every replica sees the deposit (each reads escrows every second).
    for (const replica of replicas) await until('the deposit', async () => (await replica.coordinator.jobs.getJob(jobId)).payment?.status === 'funded')

    const info = (await (await fetch(`${first!.coordinator.url}/api/info`)).json()) as ClaimDomainParams & { coordinatorId: string }
    for (const replica of replicas) expect(((await (await fetch(`${replica.coordinator.url}/api/info`)).json()) as { coordinatorId: string }).coordinatorId).toBe(info.coordinatorId)
    const urls = replicas.map((r) => r.coordinator.url)
    // Contention on purpose, beyond what the timers make: after every answer all three replicas are asked to
    // close the round at once (the answer's own replica is already closing it when it completed the round),
    // and while the job runs all three are asked to close an epoch at once, again and again.
    const failures: string[] = []
    const closeEverywhere = async () => {
      await Promise.all(replicas.map((r) => r.coordinator.jobs.closeRound(jobId, 'current').catch((e: unknown) => void failures.push(`close: ${String(e)}`))))
    }
    let contributing = true
    const epochStorm = (async () => {
      while (contributing) {
        await Promise.all(replicas.map((r) => r.coordinator.settlement!.closeEpoch().catch((e: unknown) => void failures.push(`epoch: ${String(e)}`))))
        await sleep(300)
      }
    })()
    await Promise.all(
      accounts.map((account, i) =>
        contribute({
          account,
          urls,
          first: i,
          jobId,
          spec,
          shapes,
          domain: { chainId: info.chainId, verifyingContract: info.verifyingContract },
          audience: info.coordinatorId,
          granted,
          afterAnswer: closeEverywhere,
        }),
      ),
    ).finally(() => (contributing = false))
    await epochStorm
    const db = first!.coordinator.db

    // Leases: every unit of every round leased once, to one address, and answered once; the contributors saw
    // each (round, unit) granted once, leased and answered at different replicas.
    expect(granted).toHaveLength(ROUNDS * UNITS_PER_ROUND)
    expect(new Set(granted.map((g) => `${g.round}/${g.unit}`)).size).toBe(ROUNDS * UNITS_PER_ROUND)
    expect(new Set(granted.map((g) => g.leasedAt)).size).toBe(REPLICAS)
    expect(granted.every((g) => g.leasedAt !== g.submittedAt)).toBe(true)
    const units = await db.query<{ round: number; unit: number; leases_issued: number; status: string; attempts: string }>(
      `SELECT u.round, u.unit, u.leases_issued, u.status,
              (SELECT count(*) FROM attempts a WHERE a.job_id = u.job_id AND a.round = u.round AND a.unit = u.unit) AS attempts
         FROM units u WHERE u.job_id = $1 ORDER BY u.round, u.unit`,
      [jobId],
    )
    expect(units).toHaveLength(ROUNDS * UNITS_PER_ROUND)
    expect(units.every((u) => Number(u.leases_issued) === 1 && u.status === 'accepted' && Number(u.attempts) === 1)).toBe(true)

    // Rounds: one row per number, each closed once from the previous one's checkpoint, and the job's final
    // checkpoint the last one's, stored where every replica reads it.
    const rounds = await db.query<{ round: number; input_hash: Hash; base_hash: Hash; output_hash: Hash; units: number; rebuilds: number }>(
      `SELECT round, input_hash, base_hash, output_hash, units, rebuilds FROM rounds WHERE job_id = $1 ORDER BY round`,
      [jobId],
    )
    expect(rounds.map((r) => Number(r.round))).toEqual([...Array(ROUNDS).keys()])
    expect(rounds.every((r) => Number(r.units) === UNITS_PER_ROUND && Number(r.rebuilds) === 0)).toBe(true)
    for (let r = 1; r < ROUNDS; r++) expect(rounds[r]!.input_hash).toBe(rounds[r - 1]!.output_hash)
    const job = await first!.coordinator.jobs.getJob(jobId)
    expect(job.status).toBe('finished')
    for (const replica of replicas) expect(await replica.coordinator.blobs.has(rounds.at(-1)!.output_hash)).toBe(true)
    const [stored] = await db.query<{ checkpoint: Hash }>(`SELECT checkpoint FROM jobs WHERE id = $1`, [jobId])
    expect(stored!.checkpoint).toBe(rounds.at(-1)!.output_hash)

    // Aggregates: the replicas together computed exactly one per round (the presets, unfunded, never close).
    const closes = replicas.map((r) => r.log.filter((line) => line.startsWith(`job ${jobId.slice(0, 10)} round `) && line.includes(' closed:')).length)
    console.log(`[replicas] round closes per replica: ${closes.join(', ')}; aggregations per replica: ${replicas.map((r) => r.aggregations).join(', ')}`)
    expect(replicas.reduce((sum, r) => sum + r.aggregations, 0)).toBe(ROUNDS)
    expect(closes.reduce((a, b) => a + b, 0)).toBe(ROUNDS)
    // No close and no epoch tick asked of any replica failed (a race shows as a reverted postRoot or close).
    expect(failures).toEqual([])

    // Epochs: wait until every answer is committed to a posted epoch and the finished job's escrow is closed.
    await until(
      'every answer in a posted epoch and the escrow closed',
      async () => {
        const [open] = await db.query<{ n: string }>(
          `SELECT (SELECT count(*) FROM attempts WHERE job_id = $1 AND epoch IS NULL)
                + (SELECT count(*) FROM epochs WHERE status <> 'posted')
                + (SELECT count(*) FROM job_funding WHERE job_id = $1 AND closed_tx IS NULL) AS n`,
          [jobId],
        )
        return Number(open!.n) === 0
      },
      60_000,
    )
    // The three replicas' epoch timers (1 s each) together tick about once a second, not three times: the
    // time of the last tick, in the store, changes at most once per period (0.9 s with the slack).
    const tickTimes = new Set<string>()
    for (const end = Date.now() + 3000; Date.now() < end; await sleep(50)) {
      const [row] = await db.query<{ value: string }>(`SELECT value FROM settings WHERE key LIKE 'settlement_tick_at:%'`)
      if (row) tickTimes.add(row.value)
    }
    const ticks = [...tickTimes].map(Number).sort((a, b) => a - b)
    expect(ticks.length).toBeGreaterThan(0)
    expect(ticks.length).toBeLessThanOrEqual(4)
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!).toBeGreaterThanOrEqual(900)
    // Stop the timers before counting, so nothing lands between the two reads.
    for (const replica of replicas) await replica.coordinator.settlement!.stop()
    const epochs = await db.query<{ epoch: number; root: Hex; tx_hash: Hex }>(`SELECT epoch, root, tx_hash FROM epochs WHERE status = 'posted' ORDER BY epoch`)
    const posted = await chain.publicClient.getContractEvents({ address: chain.contracts.rewardDistributor, abi: rewardDistributorAbi, eventName: 'RootPosted', fromBlock: 0n })
    expect(epochs.length).toBeGreaterThan(0)
    expect(posted.map((e) => Number(e.args.epoch))).toEqual(epochs.map((e) => Number(e.epoch)))
    expect(posted.map((e) => e.args.root)).toEqual(epochs.map((e) => e.root))
    expect(posted.map((e) => e.transactionHash)).toEqual(epochs.map((e) => e.tx_hash))
    const closed = await chain.publicClient.getContractEvents({ address: chain.contracts.jobEscrow, abi: jobEscrowAbi, eventName: 'Closed', fromBlock: 0n })
    expect(closed.map((e) => e.args.specHash)).toEqual([jobId])
    // Everything the coordinator's account ever sent: those roots and that close, nothing raced or reverted.
    const sent = await chain.publicClient.getTransactionCount({ address: chain.accounts.coordinator.address })
    expect(sent).toBe(posted.length + closed.length)
    const postedBy = replicas.map((r) => r.log.filter((line) => /^epoch \d+ posted/.test(line)).length)
    console.log(`[replicas] ${epochs.length} epochs posted; posted per replica: ${postedBy.join(', ')}`)
  })

  it("runs the referee on a unit once when every replica's tick finds it waiting", async () => {
    const db = replicas[0]!.coordinator.db
    // A unit of the finished job sent to the referee (as a disagreement or an untrusted agreement would).
    const [unit] = await db.query<{ lease_id: string }>(
      `UPDATE units SET check_status = 'referee', check_kind = 'peer' WHERE job_id = $1 AND round = 0 AND unit = 0 RETURNING lease_id`,
      [jobId],
    )
    await db.query(`UPDATE attempts SET verdict = 'pending' WHERE lease_id = $1`, [unit!.lease_id])
    const before = replicas.map((r) => r.refereeRuns)
    // Every replica's verification tick at once, twice over: the referee holds the unit for 300 ms.
    await Promise.all(replicas.flatMap((r) => [r.coordinator.jobs.tick(), sleep(50).then(() => r.coordinator.jobs.tick())]))
    await until('the verdict', async () => {
      const [row] = await db.query<{ verdict: string }>(`SELECT verdict FROM attempts WHERE lease_id = $1`, [unit!.lease_id])
      return row!.verdict === 'passed'
    }, 10_000)
    const runs = replicas.map((r, i) => r.refereeRuns - before[i]!)
    console.log(`[replicas] referee runs per replica: ${runs.join(', ')}`)
    expect(runs.reduce((a, b) => a + b, 0)).toBe(1)
    const [settled] = await db.query<{ check_status: string }>(`SELECT check_status FROM units WHERE lease_id = $1`, [unit!.lease_id])
    expect(settled!.check_status).toBe('passed')
  })
})

it('pins the settlement lock key every replica of every version takes', () => {
  // A changed key would let an old and a new replica tick at once during a rolling upgrade.
  expect(advisoryKey(SETTLEMENT_LOCK)).toBe(PINNED_SETTLEMENT_KEY)
})

/** SHA-256("tabtrain-lock\nsettlement"), first 8 bytes as a signed 64-bit integer. */
const PINNED_SETTLEMENT_KEY = 5761205380401430200n
