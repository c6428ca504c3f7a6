import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { presetInfo, type ClaimDomainParams } from '../src/protocol/index.ts'
import { blobConfigOf, describeBlobStore, importDiskBlobs, openBlobStore, type BlobStore } from './blobs.ts'
import { prestartAggregationThread, type Aggregator } from './aggregation/aggregator.ts'
import type { CoordinatorConfig } from './config.ts'
import { migrate, openDatabase, type Database } from './db.ts'
import { relayProgress } from './replicaEvents.ts'
import { MIGRATION_LOCK, postgresLocks, withLock, type ReplicaLocks } from './replicaLocks.ts'
import { buildHttpServer } from './http.ts'
import { registerOps, retentionFromEnv, scheduleRetention } from './ops/index.ts'
import { JobService } from './jobs.ts'
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../src/kernels/config.ts'
import { buildMnistPreset } from './presets/mnist.ts'
import { connectChain, type ConnectedChain } from './settlement/connect.ts'
import { Settlement } from './settlement/settlement.ts'
import { coordinatorId, LeaseIdentity } from './verification/identity.ts'
import { createThreadReferee, type Referee } from './verification/referee.ts'

/** How often stalled checks are handed to the referee and settled rounds closed without a request. */
const VERIFICATION_TICK_MS = 1000

export interface RunningCoordinator {
  url: string
  app: FastifyInstance
  jobs: JobService
  db: Database
  blobs: BlobStore
  presetJobId: string
  /** The same preset with the exact-mode kernel bundle. */
  exactPresetJobId: string
  /** Null when the coordinator runs without a chain. */
  settlement: Settlement | null
  chain: ConnectedChain | null
  close(): Promise<void>
}

/**
 * Opens the store, starts or connects to the chain, creates (and locally funds) the preset job on first
 * start, finishes any interrupted round, starts settlement and listens.
 */
export async function startCoordinator(
  config: CoordinatorConfig,
  options: {
    now?: () => number
    log?: (message: string) => void
    /** Fastify's logger (coordinator/ops/logging.ts: JSON lines or a person's short lines); none by default. */
    logger?: FastifyBaseLogger
    /** Where round closes are computed (tests count them); the process's aggregation thread by default. */
    aggregator?: Aggregator
    /** The coordinator's own re-execution of units (tests count it); threads of this process by default. Closed with the coordinator. */
    referee?: Referee
  } = {},
): Promise<RunningCoordinator> {
  const log = options.log ?? (() => {})
  // The aggregation thread loads while the chain and the store open: after a restart, the first close comes soon.
  if (!options.aggregator) prestartAggregationThread()
  await mkdir(config.dataDir, { recursive: true })
  const chain = await connectChain(config.chain, config.dataDir, log)
  let db: Database | null = null
  let settlement: Settlement | null = null
  let referee: Referee | null = null
  let blobs: BlobStore | null = null
  // Other coordinator processes may share a PostgreSQL server (replicas): work that must happen once
  // among them (migrations, round closes, referee runs, the settlement tick) takes an advisory lock.
  const locks: ReplicaLocks | null = config.databaseUrl ? postgresLocks(config.databaseUrl) : null
  let relay: { close(): Promise<void> } | null = null
  try {
    db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: join(config.dataDir, 'pgdata') })
    const opened = db
    if (locks) await withLock(locks, MIGRATION_LOCK, () => migrate(opened))
    else await migrate(db)
    const blobConfig = blobConfigOf(config)
    blobs = await openBlobStore(blobConfig, { db, dataDir: config.dataDir })
    const store = blobs
    log(describeBlobStore(blobConfig, config.dataDir))
    if (store.kind !== 'disk') {
      // Blobs this data folder kept on disk before (an upgrade, or a move off the embedded store) are copied in once.
      const imported = await importDiskBlobs(join(config.dataDir, 'blobs'), store)
      if (imported && imported.copied + imported.corrupt.length > 0) {
        log(`copied ${imported.copied} blob(s) from ${join(config.dataDir, 'blobs')} into the ${store.kind} store` +
          (imported.corrupt.length ? `; ${imported.corrupt.length} damaged file(s) left out: ${imported.corrupt.join(', ')}` : ''))
      }
    }
    // Claims are signed for the contract that checks them in disputes, so they can slash on this chain.
    const domain: ClaimDomainParams =
      config.chain.mode === 'off'
        ? { chainId: config.chain.chainId, verifyingContract: config.chain.verifyingContract }
        : { chainId: chain!.chain.chainId, verifyingContract: chain!.chain.contracts.disputeResolver }
    settlement = chain
      ? new Settlement({
          db,
          chain: chain.chain,
          publicClient: chain.publicClient,
          transactions: chain.transactions,
          deployment: chain.deployment,
          fromBlock: chain.fromBlock,
          epochSeconds: config.epochSeconds,
          faucet: chain.faucet,
          now: options.now,
          log,
          locks: locks ?? undefined,
        })
      : null
    referee = options.referee ?? createThreadReferee({ blob: (hash) => store.get(hash) })
    const openReferee = referee
    const jobs = new JobService({
      db,
      blobs: store,
      domain,
      locks: locks ?? undefined,
      aggregator: options.aggregator,
      payments: settlement?.escrow,
      stakes: settlement ?? undefined,
      referee,
      now: options.now,
      log,
    })
    // The preset twice: on the default kernel bundle, and in exact mode (a job chooses its kernels).
    const presetJobIds: string[] = []
    for (const kernelBundle of [KERNEL_BUNDLE, EXACT_KERNEL_BUNDLE]) {
      const preset = await buildMnistPreset({ paid: chain !== null, kernelBundle, training: presetInfo('mnist-mlp')!.training })
      const jobId = await jobs.createJob(preset.spec, preset.blobs.values())
      if (chain?.fundJob && preset.spec.payment) await chain.fundJob(jobId, preset.spec.payment)
      presetJobIds.push(jobId)
    }
    const [presetJobId, exactPresetJobId] = presetJobIds as [string, string]
    // Tabs on the live feed of one replica hear of progress made at another (round closes above all).
    if (config.databaseUrl) relay = await relayProgress(config.databaseUrl, jobs.events, log)
    const openRelay = relay
    await jobs.recover()
    await settlement?.start()
    const audience = await coordinatorId(db)
    const identity = new LeaseIdentity({ db, domain, audience, now: options.now ?? Date.now })
    // Checks nobody took go to the referee and settled rounds close even when no request arrives.
    let ticking = false
    const verificationTimer = setInterval(() => {
      if (ticking) return
      ticking = true
      jobs
        .tick()
        .catch((error: unknown) => log(`verification tick failed: ${(error as Error).message}`))
        .finally(() => (ticking = false))
    }, VERIFICATION_TICK_MS)
    const app = await buildHttpServer({
      jobs,
      blobs: store,
      identity,
      settlement,
      log,
      logger: options.logger,
      siteDir: config.siteDir,
      info: { ...domain, coordinatorId: audience, version: '0.1.0', chain: chain?.chain ?? null, epochSeconds: chain ? config.epochSeconds : null },
    })
    // /metrics, /healthz, /readyz, /api/openapi.json and the request counters; retention and vacuum (coordinator/ops/).
    const ops = registerOps(app, { db, events: jobs.events, chain, version: '0.1.0', now: options.now })
    const retention = scheduleRetention({ db, blobs: store, ...retentionFromEnv(), locks: locks ?? undefined, log })
    await app.listen({ host: config.host, port: config.port })
    const address = app.server.address()
    const port = typeof address === 'object' && address ? address.port : config.port
    const openDb = db
    return {
      url: `http://${config.host}:${port}`,
      app,
      jobs,
      db: openDb,
      blobs: store,
      presetJobId,
      exactPresetJobId,
      settlement,
      chain,
      async close() {
        clearInterval(verificationTimer)
        await app.close()
        await openRelay?.close()
        ops.detach()
        await retention.stop()
        await openReferee.close()
        await settlement?.stop()
        await store.close()
        await locks?.close()
        await openDb.close()
        await chain?.stop()
      },
    }
  } catch (error) {
    await relay?.close()
    await referee?.close()
    await settlement?.stop()
    await blobs?.close()
    await locks?.close()
    await db?.close()
    await chain?.stop()
    throw error
  }
}
