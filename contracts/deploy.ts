/**
 * Deploys TabTrain's five contracts and wires their roles. Used by the coordinator's embedded local
 * chain, the contract tests and the gas benchmark.
 */
import {
  BaseError,
  getContract,
  getContractAddress,
  keccak256,
  toHex,
  zeroHash,
  type Account,
  type Address,
  type Chain,
  type Client,
  type Hash,
  type PublicClient,
  type Transport,
  type WalletClient,
} from 'viem'
import type { ContractAddresses } from '../src/protocol/chain.ts'
import {
  disputeResolverAbi,
  disputeResolverBytecode,
  jobEscrowAbi,
  jobEscrowBytecode,
  rewardDistributorAbi,
  rewardDistributorBytecode,
  stakeManagerAbi,
  stakeManagerBytecode,
  tabTokenAbi,
  tabTokenBytecode,
} from './generated/index.ts'

export interface DeployParameters {
  /** Seconds between a root's posting and the moment it can be claimed: the referee's time to dispute. */
  challengeWindowSeconds: number
  /** Seconds a requested unstake waits before it can be withdrawn; stays slashable meanwhile. */
  unstakeDelaySeconds: number
  /** Seconds after a job's deadline before its requester may take back an unclosed escrow. */
  settlementPeriodSeconds: number
  /** Share of a contributor's stake a proven fault slashes, in basis points. */
  slashBps: number
  /** Share of the slashed amount paid to whoever reported the fault, in basis points. */
  reporterBps: number
}

export interface DeployOptions extends DeployParameters {
  /** Sends the deployment; it becomes the token's owner. Needs an account and a chain. */
  walletClient: WalletClient<Transport, Chain, Account>
  publicClient: PublicClient
  /** DEFAULT_ADMIN_ROLE holder of every AccessControl contract (may grant and revoke roles later). */
  admin: Address
  /** Posts roots, closes jobs and referees: POSTER_ROLE, COORDINATOR_ROLE and REFEREE_ROLE. */
  coordinator: Address
  /** Receives slashed stake minus the reporter's share, and frozen rewards swept from the distributor. */
  treasury: Address
}

export interface Deployment {
  chainId: number
  contracts: ContractAddresses
  deployer: Address
  /** Block of the first deployment transaction: where to start scanning the contracts' logs. */
  blockNumber: bigint
}

/**
 * Defaults for a local chain and a test network.
 * - Challenge window, 1 hour: the coordinator's referee re-executes a sample of an epoch's units after
 *   posting its root; an hour covers the re-execution, a coordinator restart and a slow inclusion.
 * - Unstake delay, 1 day, and at least the challenge window: the stake must still be there when a
 *   verdict lands, and a verdict may come as late as the end of the challenge window of the epoch that
 *   pays the unit, which is posted up to an epoch after the work itself. A day covers epochs of up to 23
 *   hours; shorter delays would let a cheat unstake right after the work and withdraw before the verdict.
 * - Settlement period, 1 day: time after a job's deadline for the coordinator to post the epoch that
 *   charges the job's last units before the requester can take the rest back.
 * - Slash 50%: a proven fault (double signing, a wrong output) must cost far more than the reward a
 *   unit earns, while a false verdict caused by a nondeterministic kernel does not take everything.
 * - Reporter 10% of the slash: pays a watcher's gas for submitting double-sign evidence, and is small
 *   because an offender reporting themselves gets it back (effective penalty 45% of the stake).
 */
export const DEFAULT_DEPLOY_PARAMETERS = {
  challengeWindowSeconds: 3_600,
  unstakeDelaySeconds: 86_400,
  settlementPeriodSeconds: 86_400,
  slashBps: 5_000,
  reporterBps: 1_000,
} as const satisfies DeployParameters

export class DeploymentError extends Error {
  override name = 'DeploymentError'
  constructor(
    message: string,
    readonly transactionHash?: Hash,
    options?: { cause?: unknown },
  ) {
    super(transactionHash ? `${message} (transaction ${transactionHash})` : message, options)
  }
}

/** Sends one transaction; a failure before it is mined (gas estimation reverts, RPC errors) is a DeploymentError too. */
async function sendStep(what: string, send: () => Promise<Hash>): Promise<Hash> {
  try {
    return await send()
  } catch (cause) {
    const detail = cause instanceof BaseError ? cause.shortMessage : cause instanceof Error ? cause.message : String(cause)
    throw new DeploymentError(`${what} failed: ${detail}`, undefined, { cause })
  }
}

export const ROLES = {
  DEFAULT_ADMIN_ROLE: zeroHash,
  SLASHER_ROLE: keccak256(toHex('SLASHER_ROLE')),
  CHARGER_ROLE: keccak256(toHex('CHARGER_ROLE')),
  COORDINATOR_ROLE: keccak256(toHex('COORDINATOR_ROLE')),
  POSTER_ROLE: keccak256(toHex('POSTER_ROLE')),
  FREEZER_ROLE: keccak256(toHex('FREEZER_ROLE')),
  REFEREE_ROLE: keccak256(toHex('REFEREE_ROLE')),
} as const

function checkParameters(p: DeployParameters) {
  const u64 = (name: keyof DeployParameters) => {
    const v = p[name]
    if (!Number.isSafeInteger(v) || v < 0) throw new DeploymentError(`${name} must be a non-negative integer, got ${v}`)
  }
  u64('challengeWindowSeconds')
  u64('unstakeDelaySeconds')
  u64('settlementPeriodSeconds')
  for (const name of ['slashBps', 'reporterBps'] as const) {
    const v = p[name]
    if (!Number.isInteger(v) || v < 0 || v > 10_000) throw new DeploymentError(`${name} must be an integer in [0, 10000], got ${v}`)
  }
  if (p.unstakeDelaySeconds < p.challengeWindowSeconds) {
    throw new DeploymentError(
      `unstakeDelaySeconds (${p.unstakeDelaySeconds}) must be at least challengeWindowSeconds (${p.challengeWindowSeconds}), or a contributor could withdraw before a verdict lands`,
    )
  }
}

/**
 * Deploys in a fixed order (token, stakes, escrow, distributor, resolver), so that addresses follow from
 * the deployer's nonce. Transactions go out back to back with explicit nonces and the receipts are
 * awaited together, first for the five contracts, then for the role grants; the grants wait for the
 * contracts because a call to an address without code succeeds and would grant nothing.
 */
export async function deployTabTrain(options: DeployOptions): Promise<Deployment> {
  checkParameters(options)
  const { walletClient, publicClient } = options
  const account = walletClient.account
  const chain = walletClient.chain
  const deployer = account.address
  const chainId = await publicClient.getChainId()
  if (chainId !== chain.id) throw new DeploymentError(`wallet client is on chain ${chain.id} but the RPC is chain ${chainId}`)

  let nonce = await publicClient.getTransactionCount({ address: deployer, blockTag: 'pending' })
  // One fee quote for the whole batch saves two RPC round trips per transaction.
  const fees = await publicClient.estimateFeesPerGas()
  const at = (n: number) => getContractAddress({ from: deployer, nonce: BigInt(n) })
  const contracts: ContractAddresses = {
    token: at(nonce),
    stakeManager: at(nonce + 1),
    jobEscrow: at(nonce + 2),
    rewardDistributor: at(nonce + 3),
    disputeResolver: at(nonce + 4),
  }
  // Roles are granted by the deployer, so it is the admin until the end and hands over if `admin` differs.
  const handOver = options.admin.toLowerCase() !== deployer.toLowerCase()
  const initialAdmin = deployer

  const deploys: { name: string; hash: Hash; address: Address }[] = []
  const deploy = async (name: keyof ContractAddresses, send: (nonce: number) => Promise<Hash>) => {
    const hash = await sendStep(`deploying ${name}`, () => send(nonce))
    deploys.push({ name, hash, address: contracts[name] })
    nonce += 1
  }
  await deploy('token', (n) => walletClient.deployContract({ abi: tabTokenAbi, bytecode: tabTokenBytecode, args: [deployer], nonce: n, ...fees }))
  await deploy('stakeManager', (n) =>
    walletClient.deployContract({
      abi: stakeManagerAbi,
      bytecode: stakeManagerBytecode,
      args: [contracts.token, initialAdmin, options.treasury, BigInt(options.unstakeDelaySeconds)],
      nonce: n,
      ...fees,
    }),
  )
  await deploy('jobEscrow', (n) =>
    walletClient.deployContract({
      abi: jobEscrowAbi,
      bytecode: jobEscrowBytecode,
      args: [contracts.token, initialAdmin, BigInt(options.settlementPeriodSeconds)],
      nonce: n,
      ...fees,
    }),
  )
  await deploy('rewardDistributor', (n) =>
    walletClient.deployContract({
      abi: rewardDistributorAbi,
      bytecode: rewardDistributorBytecode,
      args: [contracts.token, contracts.jobEscrow, initialAdmin, options.treasury, BigInt(options.challengeWindowSeconds)],
      nonce: n,
      ...fees,
    }),
  )
  await deploy('disputeResolver', (n) =>
    walletClient.deployContract({
      abi: disputeResolverAbi,
      bytecode: disputeResolverBytecode,
      args: [contracts.stakeManager, contracts.rewardDistributor, initialAdmin, options.slashBps, options.reporterBps],
      nonce: n,
      ...fees,
    }),
  )
  // anvil answers a send before it has mined the block, so a receipt is often one poll away; viem's HTTP
  // default of 4 s per poll would dominate a local deployment. All waits share one block-number poller.
  const pollingInterval = Math.min(publicClient.pollingInterval, 100)
  const receipts = await Promise.all(deploys.map((d) => publicClient.waitForTransactionReceipt({ hash: d.hash, pollingInterval })))
  let blockNumber: bigint | undefined
  for (const [i, receipt] of receipts.entries()) {
    const d = deploys[i]!
    if (receipt.status !== 'success') throw new DeploymentError(`deploying ${d.name} reverted`, d.hash)
    if (receipt.contractAddress?.toLowerCase() !== d.address.toLowerCase()) {
      throw new DeploymentError(`${d.name} landed at ${receipt.contractAddress}, expected ${d.address} (was the deployer's nonce used concurrently?)`, d.hash)
    }
    if (blockNumber === undefined || receipt.blockNumber < blockNumber) blockNumber = receipt.blockNumber
  }

  type Grant = { what: string; address: Address; abi: typeof jobEscrowAbi | typeof rewardDistributorAbi | typeof stakeManagerAbi | typeof disputeResolverAbi; role: Hash; to: Address }
  const grants: Grant[] = [
    { what: 'escrow CHARGER_ROLE → distributor', address: contracts.jobEscrow, abi: jobEscrowAbi, role: ROLES.CHARGER_ROLE, to: contracts.rewardDistributor },
    { what: 'escrow COORDINATOR_ROLE → coordinator', address: contracts.jobEscrow, abi: jobEscrowAbi, role: ROLES.COORDINATOR_ROLE, to: options.coordinator },
    { what: 'distributor POSTER_ROLE → coordinator', address: contracts.rewardDistributor, abi: rewardDistributorAbi, role: ROLES.POSTER_ROLE, to: options.coordinator },
    { what: 'distributor FREEZER_ROLE → resolver', address: contracts.rewardDistributor, abi: rewardDistributorAbi, role: ROLES.FREEZER_ROLE, to: contracts.disputeResolver },
    { what: 'stakes SLASHER_ROLE → resolver', address: contracts.stakeManager, abi: stakeManagerAbi, role: ROLES.SLASHER_ROLE, to: contracts.disputeResolver },
    { what: 'resolver REFEREE_ROLE → coordinator', address: contracts.disputeResolver, abi: disputeResolverAbi, role: ROLES.REFEREE_ROLE, to: options.coordinator },
  ]
  if (handOver) {
    const adminContracts = [
      { name: 'stakes', address: contracts.stakeManager, abi: stakeManagerAbi },
      { name: 'escrow', address: contracts.jobEscrow, abi: jobEscrowAbi },
      { name: 'distributor', address: contracts.rewardDistributor, abi: rewardDistributorAbi },
      { name: 'resolver', address: contracts.disputeResolver, abi: disputeResolverAbi },
    ] as const
    for (const c of adminContracts) {
      grants.push({ what: `${c.name} DEFAULT_ADMIN_ROLE → admin`, address: c.address, abi: c.abi, role: ROLES.DEFAULT_ADMIN_ROLE, to: options.admin })
    }
  }
  const sent: { what: string; hash: Hash }[] = []
  for (const g of grants) {
    // All four ABIs share AccessControl's grantRole; the union type only confuses overload resolution.
    const hash = await sendStep(g.what, () =>
      walletClient.writeContract({ address: g.address, abi: g.abi as typeof jobEscrowAbi, functionName: 'grantRole', args: [g.role, g.to], nonce, ...fees }),
    )
    sent.push({ what: g.what, hash })
    nonce += 1
  }
  if (handOver) {
    // Renounce last, after the grants above are sent: the admin handover must not leave a contract adminless.
    for (const c of [contracts.stakeManager, contracts.jobEscrow, contracts.rewardDistributor, contracts.disputeResolver]) {
      const what = `renounce deployer's admin role on ${c}`
      const hash = await sendStep(what, () =>
        walletClient.writeContract({ address: c, abi: jobEscrowAbi, functionName: 'renounceRole', args: [ROLES.DEFAULT_ADMIN_ROLE, deployer], nonce, ...fees }),
      )
      sent.push({ what, hash })
      nonce += 1
    }
  }
  const grantReceipts = await Promise.all(sent.map((s) => publicClient.waitForTransactionReceipt({ hash: s.hash, pollingInterval })))
  for (const [i, receipt] of grantReceipts.entries()) {
    const s = sent[i]!
    if (receipt.status !== 'success') throw new DeploymentError(`${s.what} reverted`, s.hash)
  }

  return { chainId, contracts, deployer, blockNumber: blockNumber! }
}

/** Typed viem contract instances for a deployment; pass a public client, a wallet client, or both keyed. */
export function contractsOf<const client extends Client | { public: Client; wallet?: Client } | { public?: Client; wallet: Client }>(
  deployment: Pick<Deployment, 'contracts'>,
  client: client,
) {
  const { contracts } = deployment
  return {
    token: getContract({ address: contracts.token, abi: tabTokenAbi, client }),
    stakeManager: getContract({ address: contracts.stakeManager, abi: stakeManagerAbi, client }),
    jobEscrow: getContract({ address: contracts.jobEscrow, abi: jobEscrowAbi, client }),
    rewardDistributor: getContract({ address: contracts.rewardDistributor, abi: rewardDistributorAbi, client }),
    disputeResolver: getContract({ address: contracts.disputeResolver, abi: disputeResolverAbi, client }),
  }
}
