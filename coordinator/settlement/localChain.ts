import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createPublicClient, createWalletClient, formatUnits, http, parseEther, type Hex, type PublicClient } from 'viem'
import { anvilAccount, startAnvil, type AnvilInstance } from '../../contracts/anvil.ts'
import { deployTabTrain, DEFAULT_DEPLOY_PARAMETERS } from '../../contracts/deploy.ts'
import { jobEscrowAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import { readChainInfo } from './chainInfo.ts'
import { contractAddressesSchema, DEFAULT_VERIFICATION, type ChainInfo, type ContractAddresses, type Hash, type PaymentTerms } from '../../src/protocol/index.ts'
import { chainFromRpc, TransactionQueue, type CoordinatorWallet } from './transactions.ts'

/**
 * The embedded default: anvil on 127.0.0.1 with TabTrain's contracts. Roles on it:
 * account 0 deploys and is the coordinator (posts roots, referee, faucet, token owner);
 * account 1 is the requester of the preset job; account 2 receives the treasury's share of slashes.
 */
export const LOCAL_COORDINATOR_INDEX = 0
export const LOCAL_REQUESTER_INDEX = 1
export const LOCAL_TREASURY_INDEX = 2

/**
 * On the local chain a person trying TabTrain should see a root become claimable while watching, so the
 * windows are minutes, not the contracts' production defaults (an hour, a day). The unstake delay stays
 * longer than the challenge window so a stake cannot leave before a dispute about its last epoch.
 */
export const LOCAL_CHALLENGE_WINDOW_SECONDS = 120
export const LOCAL_UNSTAKE_DELAY_SECONDS = 300

/** The preset's escrow runs this long; a requester could take the rest back after it and the settlement period. */
const PRESET_ESCROW_DAYS = 30

export interface LocalDeploymentRecord {
  chainId: number
  contracts: ContractAddresses
  blockNumber: string
  blockHash: Hex
}

export interface LocalChainOptions {
  /** Holds anvil's state file and the deployment record, so a restart finds the same chain. */
  dir: string
  /** 0 picks a free port. */
  port: number
  challengeWindowSeconds?: number
  unstakeDelaySeconds?: number
  log?: (message: string) => void
}

export interface LocalChain {
  anvil: AnvilInstance
  deployment: LocalDeploymentRecord
  chain: ChainInfo
  publicClient: PublicClient
  coordinator: CoordinatorWallet
  transactions: TransactionQueue
  /**
   * Mints the budget to the job's requester (`payment.requester`) and escrows it for `jobId` from that
   * account, unless its escrow already holds it. Only for a requester among anvil's development accounts,
   * whose key is known; any other requester funds its job itself.
   */
  fundJob(jobId: Hash, payment: PaymentTerms): Promise<Hex | null>
  stop(): Promise<void>
}

export async function startLocalChain(options: LocalChainOptions): Promise<LocalChain> {
  const log = options.log ?? (() => {})
  await mkdir(options.dir, { recursive: true })
  const anvil = await startAnvil({ port: options.port, stateFile: join(options.dir, 'anvil-state.json') })
  try {
    const chain = chainFromRpc(anvil.chainId, anvil.rpcUrl)
    // anvil mines each transaction at once; viem's default 4 s receipt polling would be most of every epoch.
    const publicClient = createPublicClient({ chain, transport: http(anvil.rpcUrl), pollingInterval: 50 }) as PublicClient
    const coordinator = createWalletClient({ account: anvilAccount(LOCAL_COORDINATOR_INDEX), chain, transport: http(anvil.rpcUrl) })
    const transactions = new TransactionQueue(publicClient, coordinator)

    const recordFile = join(options.dir, 'deployment.json')
    let deployment = await loadDeployment(recordFile, publicClient)
    if (deployment) {
      log(`local chain: reusing contracts deployed in block ${deployment.blockNumber}`)
    } else {
      const started = performance.now()
      const deployed = await deployTabTrain({
        walletClient: coordinator,
        publicClient,
        admin: coordinator.account.address,
        coordinator: coordinator.account.address,
        treasury: anvilAccount(LOCAL_TREASURY_INDEX).address,
        ...DEFAULT_DEPLOY_PARAMETERS,
        challengeWindowSeconds: options.challengeWindowSeconds ?? LOCAL_CHALLENGE_WINDOW_SECONDS,
        unstakeDelaySeconds: Math.max(options.unstakeDelaySeconds ?? LOCAL_UNSTAKE_DELAY_SECONDS, options.challengeWindowSeconds ?? 0),
      })
      const block = await publicClient.getBlock({ blockNumber: deployed.blockNumber })
      deployment = { chainId: deployed.chainId, contracts: deployed.contracts, blockNumber: String(deployed.blockNumber), blockHash: block.hash }
      await writeFile(recordFile, JSON.stringify(deployment, null, 2))
      log(`local chain: deployed TabTrain's contracts in ${(performance.now() - started).toFixed(0)} ms`)
    }
    const contracts = deployment.contracts
    const info = await readChainInfo(publicClient, { chainId: anvil.chainId, rpcUrl: anvil.rpcUrl, contracts, faucet: true })

    return {
      anvil,
      deployment,
      chain: info,
      publicClient,
      coordinator,
      transactions,
      async fundJob(jobId, payment) {
        const account = developmentAccount(payment.requester)
        if (!account) {
          log(`local chain: job ${jobId.slice(0, 10)} names requester ${payment.requester}, not a development account; it must deposit itself`)
          return null
        }
        const requester = createWalletClient({ account, chain, transport: http(anvil.rpcUrl) })
        const [, , , deposited] = await publicClient.readContract({
          address: contracts.jobEscrow,
          abi: jobEscrowAbi,
          functionName: 'jobs',
          args: [jobId, account.address],
        })
        const budget = BigInt(payment.budget)
        if (deposited >= budget) return null
        const amount = budget - deposited
        await transactions.send('mint requester budget', () =>
          coordinator.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'mint', args: [requester.account.address, amount] }),
        )
        // The requester pays its own gas; anvil's accounts start with 10,000 ETH.
        const approve = await requester.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'approve', args: [contracts.jobEscrow, amount] })
        await publicClient.waitForTransactionReceipt({ hash: approve })
        const deadline = BigInt(Math.floor(Date.now() / 1000) + PRESET_ESCROW_DAYS * 86_400)
        const hash = await requester.writeContract({ address: contracts.jobEscrow, abi: jobEscrowAbi, functionName: 'deposit', args: [jobId, amount, deadline] })
        const receipt = await publicClient.waitForTransactionReceipt({ hash })
        if (receipt.status !== 'success') throw new Error(`escrow deposit for ${jobId} reverted (${hash})`)
        log(`local chain: requester ${requester.account.address} escrowed ${formatUnits(amount, info.token.decimals)} ${info.token.symbol} for job ${jobId.slice(0, 10)} (${hash})`)
        return hash
      },
      stop: () => anvil.stop(),
    }
  } catch (error) {
    await anvil.stop()
    throw error
  }
}

/** The anvil development account (of the first 20) with this address, whose key is public. */
function developmentAccount(address: string) {
  for (let index = 0; index < 20; index++) {
    const account = anvilAccount(index)
    if (account.address.toLowerCase() === address.toLowerCase()) return account
  }
  return null
}

/** A recorded deployment counts only if the chain still has its block and its code (anvil state may be gone). */
async function loadDeployment(file: string, client: PublicClient): Promise<LocalDeploymentRecord | null> {
  let record: LocalDeploymentRecord
  try {
    const raw = JSON.parse(await readFile(file, 'utf8')) as LocalDeploymentRecord
    record = { ...raw, contracts: contractAddressesSchema.parse(raw.contracts) }
  } catch {
    return null
  }
  try {
    const block = await client.getBlock({ blockNumber: BigInt(record.blockNumber) })
    if (block.hash !== record.blockHash) return null
    const code = await client.getCode({ address: record.contracts.disputeResolver })
    return code && code !== '0x' ? record : null
  } catch {
    return null
  }
}

/** Gas for a new burner wallet: enough for thousands of claims and stake moves on anvil's base fee. */
export const FAUCET_ETHER = parseEther('1')
/** Test tokens for a new wallet, enough to stake more. */
export const FAUCET_TOKENS = parseEther('100')
/** Stake the faucet holds for a new wallet: the minimum a paid job asks by default, so it can lease at once. */
export const FAUCET_STAKE = BigInt(DEFAULT_VERIFICATION.minStake)

