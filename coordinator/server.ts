import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { presetInfo, type ClaimDomainParams } from '../src/protocol/index.ts'
import { BlobStore } from './blobs.ts'
import type { CoordinatorConfig } from './config.ts'
import { migrate, openDatabase, type Database } from './db.ts'
import { buildHttpServer } from './http.ts'
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
  options: { now?: () => number; log?: (message: string) => void } = {},
): Promise<RunningCoordinator> {
  const log = options.log ?? (() => {})
  await mkdir(config.dataDir, { recursive: true })
  const chain = await connectChain(config.chain, config.dataDir, log)
  let db: Database | null = null
  let settlement: Settlement | null = null
  let referee: Referee | null = null
  try {
    db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: join(config.dataDir, 'pgdata') })
    await migrate(db)
    const blobs = new BlobStore(join(config.dataDir, 'blobs'))
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
        })
      : null
    referee = createThreadReferee({ blob: (hash) => blobs.get(hash) })
    const openReferee = referee
    const jobs = new JobService({
      db,
      blobs,
      domain,
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
      blobs,
      identity,
      settlement,
      log,
      siteDir: config.siteDir,
      info: { ...domain, coordinatorId: audience, version: '0.1.0', chain: chain?.chain ?? null, epochSeconds: chain ? config.epochSeconds : null },
    })
    await app.listen({ host: config.host, port: config.port })
    const address = app.server.address()
    const port = typeof address === 'object' && address ? address.port : config.port
    const openDb = db
    return {
      url: `http://${config.host}:${port}`,
      app,
      jobs,
      db: openDb,
      presetJobId,
      exactPresetJobId,
      settlement,
      chain,
      async close() {
        clearInterval(verificationTimer)
        await app.close()
        await openReferee.close()
        await settlement?.stop()
        await openDb.close()
        await chain?.stop()
      },
    }
  } catch (error) {
    await referee?.close()
    await settlement?.stop()
    await db?.close()
    await chain?.stop()
    throw error
  }
}
