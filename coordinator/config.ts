import { resolve } from 'node:path'
import { getAddress, isHex, type Address, type Hex } from 'viem'
import { contractAddressesSchema, type ContractAddresses } from '../src/protocol/index.ts'

/**
 * Where settlement happens:
 * - `local` (the default): anvil on 127.0.0.1 started by the coordinator, contracts deployed on first
 *   start and kept with the data folder, a faucet for new wallets;
 * - `external`: any EVM chain with TabTrain's contracts, by RPC URL and addresses;
 * - `off`: no chain; only volunteer jobs run, claims are signed for the given domain.
 */
export type ChainConfig =
  | { mode: 'local'; port: number; challengeWindowSeconds?: number; unstakeDelaySeconds?: number }
  | { mode: 'external'; rpcUrl: string; contracts: ContractAddresses; coordinatorKey: Hex; fromBlock: bigint }
  | { mode: 'off'; chainId: number; verifyingContract: Address }

/**
 * Where blobs (checkpoints, updates, data shards) live (coordinator/blobs/):
 * - `disk`: `<dataDir>/blobs` on this machine, the embedded default;
 * - `postgres`: the `blobs` table of the coordinator's database, which every replica on one PostgreSQL
 *   reaches without a shared disk (the default when DATABASE_URL is set);
 * - `s3`: any S3-compatible object store, by endpoint, bucket and keys.
 */
export type BlobStoreConfig =
  | { kind: 'disk' }
  | { kind: 'postgres' }
  | { kind: 's3'; endpoint: string; bucket: string; region: string; accessKeyId: string; secretAccessKey: string; prefix: string }

export interface CoordinatorConfig {
  host: string
  port: number
  /** Embedded PGlite data folder, blob folder and local chain state live under here. */
  dataDir: string
  databaseUrl?: string
  siteDir: string
  chain: ChainConfig
  /** Seconds between reward epochs. */
  epochSeconds: number
  /** Where blobs live; unset: `postgres` when `databaseUrl` is set, else `disk`. */
  blobs?: BlobStoreConfig
}

/** anvil's customary port, so wallets configured for a local node find it. */
export const DEFAULT_ANVIL_PORT = 8545
/** Short enough that a contributor sees a root appear while watching; each epoch costs one transaction. */
export const DEFAULT_EPOCH_SECONDS = 30

/** Claims of a coordinator without a chain are signed for anvil's chain id and first deployment address. */
export const OFF_CHAIN_ID = 31337
export const OFF_VERIFYING_CONTRACT: Address = '0x5FbDB2315678afecb367f032d93F642f64180aa3'

export class ConfigError extends Error {
  override name = 'ConfigError'
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${name}=${raw} must be an integer in [${min}, ${max}]`)
  return value
}

export function chainConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ChainConfig {
  const mode = env.TABTRAIN_CHAIN ?? (env.TABTRAIN_RPC_URL ? 'external' : 'local')
  switch (mode) {
    case 'local':
      return {
        mode,
        port: integer(env, 'TABTRAIN_ANVIL_PORT', DEFAULT_ANVIL_PORT, 0, 65535),
        ...(env.TABTRAIN_CHALLENGE_WINDOW_SECONDS ? { challengeWindowSeconds: integer(env, 'TABTRAIN_CHALLENGE_WINDOW_SECONDS', 0) } : {}),
        ...(env.TABTRAIN_UNSTAKE_DELAY_SECONDS ? { unstakeDelaySeconds: integer(env, 'TABTRAIN_UNSTAKE_DELAY_SECONDS', 0) } : {}),
      }
    case 'external': {
      const rpcUrl = env.TABTRAIN_RPC_URL
      if (!rpcUrl) throw new ConfigError('TABTRAIN_CHAIN=external needs TABTRAIN_RPC_URL')
      let contracts: ContractAddresses
      try {
        contracts = contractAddressesSchema.parse(JSON.parse(env.TABTRAIN_CONTRACTS ?? ''))
      } catch (error) {
        throw new ConfigError(`TABTRAIN_CONTRACTS must be JSON {token, stakeManager, jobEscrow, rewardDistributor, disputeResolver}: ${(error as Error).message}`)
      }
      const key = env.TABTRAIN_COORDINATOR_KEY
      if (!key || !isHex(key) || key.length !== 66) throw new ConfigError('TABTRAIN_COORDINATOR_KEY must be the coordinator account\'s 32-byte hex private key')
      return { mode, rpcUrl, contracts, coordinatorKey: key, fromBlock: BigInt(integer(env, 'TABTRAIN_FROM_BLOCK', 0)) }
    }
    case 'off':
      return {
        mode,
        chainId: integer(env, 'TABTRAIN_CHAIN_ID', OFF_CHAIN_ID, 1),
        verifyingContract: getAddress(env.TABTRAIN_VERIFYING_CONTRACT ?? OFF_VERIFYING_CONTRACT),
      }
    default:
      throw new ConfigError(`TABTRAIN_CHAIN=${mode}: expected local, external or off`)
  }
}

/** S3 bucket names: 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
/** Key prefixes are kept to characters that need no escaping in a URL path. */
const KEY_PREFIX = /^[A-Za-z0-9._\-/]*$/

/**
 * TABTRAIN_BLOBS = disk | postgres | s3. Unset: s3 when TABTRAIN_S3_BUCKET is set, postgres when
 * DATABASE_URL is, else disk. The s3 store reads TABTRAIN_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID,
 * _SECRET_ACCESS_KEY (required), _REGION (us-east-1) and _PREFIX (none).
 */
export function blobConfigFromEnv(env: NodeJS.ProcessEnv = process.env): BlobStoreConfig {
  const kind = env.TABTRAIN_BLOBS || (env.TABTRAIN_S3_BUCKET ? 's3' : env.DATABASE_URL ? 'postgres' : 'disk')
  switch (kind) {
    case 'disk':
    case 'postgres':
      return { kind }
    case 's3': {
      const need = (name: string) => {
        const value = env[name]
        if (!value) throw new ConfigError(`TABTRAIN_BLOBS=s3 needs ${name}`)
        return value
      }
      const endpoint = need('TABTRAIN_S3_ENDPOINT')
      let url: URL
      try {
        url = new URL(endpoint)
      } catch {
        throw new ConfigError(`TABTRAIN_S3_ENDPOINT=${endpoint} is not a URL; expected e.g. https://s3.eu-west-1.amazonaws.com`)
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`TABTRAIN_S3_ENDPOINT=${endpoint} must be an http or https URL`)
      if (url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
        throw new ConfigError(`TABTRAIN_S3_ENDPOINT=${endpoint} must be the service's base URL, without a path: the bucket goes in TABTRAIN_S3_BUCKET`)
      }
      const bucket = need('TABTRAIN_S3_BUCKET')
      if (!BUCKET_NAME.test(bucket)) throw new ConfigError(`TABTRAIN_S3_BUCKET=${bucket} is not a valid bucket name (3–63 of a-z, 0-9, '.' and '-')`)
      const prefix = env.TABTRAIN_S3_PREFIX ?? ''
      if (!KEY_PREFIX.test(prefix)) throw new ConfigError(`TABTRAIN_S3_PREFIX=${prefix} may only hold letters, digits, '.', '_', '-' and '/'`)
      return {
        kind,
        endpoint: url.origin,
        bucket,
        region: env.TABTRAIN_S3_REGION || 'us-east-1',
        accessKeyId: need('TABTRAIN_S3_ACCESS_KEY_ID'),
        secretAccessKey: need('TABTRAIN_S3_SECRET_ACCESS_KEY'),
        prefix,
      }
    }
    default:
      throw new ConfigError(`TABTRAIN_BLOBS=${kind}: expected disk, postgres or s3`)
  }
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  return {
    host: env.HOST ?? '127.0.0.1',
    port: integer(env, 'PORT', 8547, 0, 65535),
    dataDir: resolve(env.TABTRAIN_DATA_DIR ?? '.tabtrain'),
    databaseUrl: env.DATABASE_URL || undefined,
    siteDir: resolve(env.TABTRAIN_SITE_DIR ?? 'dist/web'),
    chain: chainConfigFromEnv(env),
    epochSeconds: integer(env, 'TABTRAIN_EPOCH_SECONDS', DEFAULT_EPOCH_SECONDS, 1),
    blobs: blobConfigFromEnv(env),
  }
}
