import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_EPOCH_SECONDS, type ChainConfig } from '../config.ts'
import { startCoordinator, type RunningCoordinator } from '../server.ts'

export interface TemporaryCoordinator extends RunningCoordinator {
  /** Closes the coordinator and deletes its data folder. */
  dispose(): Promise<void>
}

/**
 * A coordinator in this process on a free port and a fresh embedded store, API only (no site), with its
 * own local chain on a free port unless `chain` says otherwise.
 */
export async function startTemporaryCoordinator(
  options: { chain?: ChainConfig; epochSeconds?: number; databaseUrl?: string; log?: (message: string) => void } = {},
): Promise<TemporaryCoordinator> {
  const dir = await mkdtemp(join(tmpdir(), 'tabtrain-'))
  const coordinator = await startCoordinator({
    host: '127.0.0.1',
    port: 0,
    dataDir: dir,
    databaseUrl: options.databaseUrl,
    siteDir: join(dir, 'no-site'),
    chain: options.chain ?? { mode: 'local', port: 0 },
    epochSeconds: options.epochSeconds ?? DEFAULT_EPOCH_SECONDS,
  }, { log: options.log })
  return Object.assign(coordinator, {
    async dispose() {
      await coordinator.close()
      await rm(dir, { recursive: true, force: true })
    },
  })
}
