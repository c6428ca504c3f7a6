import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_CHAIN_ID, DEFAULT_VERIFYING_CONTRACT } from '../config.ts'
import { startCoordinator, type RunningCoordinator } from '../server.ts'

export interface TemporaryCoordinator extends RunningCoordinator {
  /** Closes the coordinator and deletes its data folder. */
  dispose(): Promise<void>
}

/** A coordinator in this process on a free port and a fresh embedded store, API only (no site). */
export async function startTemporaryCoordinator(): Promise<TemporaryCoordinator> {
  const dir = await mkdtemp(join(tmpdir(), 'tabtrain-'))
  const coordinator = await startCoordinator({
    host: '127.0.0.1',
    port: 0,
    dataDir: dir,
    siteDir: join(dir, 'no-site'),
    chainId: DEFAULT_CHAIN_ID,
    verifyingContract: DEFAULT_VERIFYING_CONTRACT,
  })
  return Object.assign(coordinator, {
    async dispose() {
      await coordinator.close()
      await rm(dir, { recursive: true, force: true })
    },
  })
}
