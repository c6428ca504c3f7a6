import { resolve } from 'node:path'
import { getAddress, type Address } from 'viem'

export interface CoordinatorConfig {
  host: string
  port: number
  /** Embedded PGlite data folder and blob folder live under here unless DATABASE_URL is set. */
  dataDir: string
  databaseUrl?: string
  siteDir: string
  chainId: number
  verifyingContract: Address
}

/**
 * Until the settlement contracts are deployed by the run command, claims are signed for anvil's chain id
 * and the address anvil gives the first contract its first account deploys, so signatures made now stay
 * valid against the local chain's dispute contract. Both are overridable for any other chain.
 */
export const DEFAULT_CHAIN_ID = 31337
export const DEFAULT_VERIFYING_CONTRACT: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const port = Number(env.PORT ?? 8547)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT=${env.PORT} is not a TCP port`)
  return {
    host: env.HOST ?? '127.0.0.1',
    port,
    dataDir: resolve(env.TABTRAIN_DATA_DIR ?? '.tabtrain'),
    databaseUrl: env.DATABASE_URL || undefined,
    siteDir: resolve(env.TABTRAIN_SITE_DIR ?? 'dist/web'),
    chainId: Number(env.TABTRAIN_CHAIN_ID ?? DEFAULT_CHAIN_ID),
    verifyingContract: getAddress(env.TABTRAIN_VERIFYING_CONTRACT ?? DEFAULT_VERIFYING_CONTRACT),
  }
}
