import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { BlobStore } from './blobs.ts'
import type { CoordinatorConfig } from './config.ts'
import { migrate, openDatabase, type Database } from './db.ts'
import { buildHttpServer } from './http.ts'
import { JobService } from './jobs.ts'
import { buildMnistPreset } from './presets/mnist.ts'

export interface RunningCoordinator {
  url: string
  app: FastifyInstance
  jobs: JobService
  db: Database
  presetJobId: string
  close(): Promise<void>
}

/** Opens the store, creates the preset job on first start, finishes any interrupted round, and listens. */
export async function startCoordinator(
  config: CoordinatorConfig,
  options: { now?: () => number; log?: (message: string) => void } = {},
): Promise<RunningCoordinator> {
  await mkdir(config.dataDir, { recursive: true })
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: join(config.dataDir, 'pgdata') })
  await migrate(db)
  const blobs = new BlobStore(join(config.dataDir, 'blobs'))
  const jobs = new JobService({
    db,
    blobs,
    domain: { chainId: config.chainId, verifyingContract: config.verifyingContract },
    now: options.now,
    log: options.log,
  })
  const preset = await buildMnistPreset()
  const presetJobId = await jobs.createJob(preset.spec, preset.blobs.values())
  await jobs.recover()
  const app = await buildHttpServer({
    jobs,
    blobs,
    siteDir: config.siteDir,
    info: { chainId: config.chainId, verifyingContract: config.verifyingContract, version: '0.1.0' },
  })
  await app.listen({ host: config.host, port: config.port })
  const address = app.server.address()
  const port = typeof address === 'object' && address ? address.port : config.port
  return {
    url: `http://${config.host}:${port}`,
    app,
    jobs,
    db,
    presetJobId,
    async close() {
      await app.close()
      await db.close()
    },
  }
}
