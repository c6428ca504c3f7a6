/**
 * Shared fixture of the contract tests: one anvil per test file with a fresh deployment, named accounts,
 * typed contract handles per account, snapshots for isolation, and revert-name assertions.
 */
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createTestClient,
  createWalletClient,
  decodeErrorResult,
  http,
  type Abi,
  type Address,
  type Hash,
  type HDAccount,
  type TransactionReceipt,
} from 'viem'
import { anvilAccount, anvilChain, startAnvil, type AnvilInstance, type AnvilOptions } from './anvil.ts'
import { contractsOf, DEFAULT_DEPLOY_PARAMETERS, deployTabTrain, type DeployParameters, type Deployment } from './deploy.ts'
import { disputeResolverAbi, jobEscrowAbi, rewardDistributorAbi, stakeManagerAbi, tabTokenAbi } from './generated/index.ts'

/** Test parameters: the defaults, with an unstake delay distinct from the challenge window so tests can tell them apart. */
export const TEST_PARAMETERS = { ...DEFAULT_DEPLOY_PARAMETERS, challengeWindowSeconds: 3_600, unstakeDelaySeconds: 7_200, settlementPeriodSeconds: 86_400 } as const satisfies DeployParameters

const ACCOUNT_INDEX = {
  deployer: 0,
  coordinator: 1,
  treasury: 2,
  requester: 3,
  alice: 4,
  bob: 5,
  carol: 6,
  reporter: 7,
  outsider: 8,
} as const

export type AccountName = keyof typeof ACCOUNT_INDEX

/** Every error any of the contracts can raise, so that one bubbled up from a nested call decodes too. */
const ALL_ERRORS = [...tabTokenAbi, ...stakeManagerAbi, ...jobEscrowAbi, ...rewardDistributorAbi, ...disputeResolverAbi].filter(
  (entry) => entry.type === 'error',
) as Abi

export async function startTestChain(options: { anvil?: AnvilOptions; parameters?: DeployParameters } = {}) {
  const anvil: AnvilInstance = await startAnvil(options.anvil)
  const chain = anvilChain(anvil)
  // Short polling: anvil mines at once, and viem's HTTP default of 4 s would dominate every test.
  const transport = http(anvil.rpcUrl)
  const publicClient = createPublicClient({ chain, transport, pollingInterval: 20 })
  const testClient = createTestClient({ chain, transport, mode: 'anvil' })
  const accounts = Object.fromEntries(Object.entries(ACCOUNT_INDEX).map(([name, index]) => [name, anvilAccount(index)])) as Record<AccountName, HDAccount>
  const wallets = Object.fromEntries(
    Object.entries(accounts).map(([name, account]) => [name, createWalletClient({ chain, account, transport, pollingInterval: 20 })]),
  ) as Record<AccountName, ReturnType<typeof createWalletClient<typeof transport, typeof chain, HDAccount>>>

  const deployment: Deployment = await deployTabTrain({
    walletClient: wallets.deployer,
    publicClient,
    admin: accounts.deployer.address,
    coordinator: accounts.coordinator.address,
    treasury: accounts.treasury.address,
    ...(options.parameters ?? TEST_PARAMETERS),
  })

  const read = contractsOf(deployment, publicClient)
  const as = (name: AccountName) => contractsOf(deployment, { public: publicClient, wallet: wallets[name] })

  /** Waits for a sent transaction and requires success. */
  const mined = async (sending: Promise<Hash>): Promise<TransactionReceipt> => {
    const hash = await sending
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`)
    return receipt
  }

  let snapshotId: Hash | null = null
  return {
    anvil,
    chain,
    publicClient,
    testClient,
    accounts,
    wallets,
    deployment,
    contracts: deployment.contracts,
    read,
    as,
    mined,
    /** Latest block's timestamp, the chain's notion of now. */
    async now(): Promise<bigint> {
      return (await publicClient.getBlock()).timestamp
    },
    /** Moves the chain's clock forward and mines a block at the new time. */
    async increaseTime(seconds: number | bigint): Promise<void> {
      await testClient.increaseTime({ seconds: Number(seconds) })
      await testClient.mine({ blocks: 1 })
    },
    async balanceOf(address: Address): Promise<bigint> {
      return read.token.read.balanceOf([address])
    },
    /** Marks the current state as the one every test starts from. */
    async saveBaseline(): Promise<void> {
      snapshotId = await testClient.snapshot()
    },
    /** Returns to the baseline; anvil consumes a snapshot on revert, so a new one is taken right away. */
    async restoreBaseline(): Promise<void> {
      if (snapshotId === null) throw new Error('saveBaseline() was never called')
      // viem types evm_revert as void, but anvil answers false for an unknown snapshot instead of failing.
      const ok = (await testClient.request({ method: 'evm_revert', params: [snapshotId] })) as unknown
      if (ok !== true) throw new Error(`evm_revert(${snapshotId}) failed`)
      snapshotId = await testClient.snapshot()
    },
    stop: () => anvil.stop(),
  }
}

export type TestChain = Awaited<ReturnType<typeof startTestChain>>

export class ExpectedRevertError extends Error {
  override name = 'ExpectedRevertError'
}

/** The custom error name a failed call reverted with, decoded against every TabTrain ABI. */
export function revertErrorName(error: unknown): string | undefined {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined
  if (reverted.data?.errorName) return reverted.data.errorName
  if (reverted.raw) {
    try {
      return decodeErrorResult({ abi: ALL_ERRORS, data: reverted.raw }).errorName
    } catch {
      return undefined
    }
  }
  return undefined
}

/** The decoded revert of a failed call: name and arguments. */
export function revertError(error: unknown): { errorName: string; args: readonly unknown[] } | undefined {
  if (!(error instanceof BaseError)) return undefined
  const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError)
  if (!(reverted instanceof ContractFunctionRevertedError)) return undefined
  const raw = reverted.raw
  if (raw) {
    try {
      const decoded = decodeErrorResult({ abi: ALL_ERRORS, data: raw })
      return { errorName: decoded.errorName, args: decoded.args ?? [] }
    } catch {
      // fall through to what viem decoded itself
    }
  }
  if (reverted.data?.errorName) return { errorName: reverted.data.errorName, args: reverted.data.args ?? [] }
  return undefined
}

/** Awaits `sending` and requires it to revert with custom error `errorName`; returns the error's arguments. */
export async function expectRevert(sending: Promise<unknown>, errorName: string): Promise<readonly unknown[]> {
  let error: unknown
  try {
    await sending
  } catch (e) {
    error = e
  }
  if (error === undefined) throw new ExpectedRevertError(`expected a revert with ${errorName}, but the call succeeded`)
  const decoded = revertError(error)
  if (decoded?.errorName !== errorName) {
    throw new ExpectedRevertError(
      `expected a revert with ${errorName}, got ${decoded ? decoded.errorName : `an undecoded error: ${(error as Error).message.split('\n')[0]}`}`,
    )
  }
  return decoded.args
}
