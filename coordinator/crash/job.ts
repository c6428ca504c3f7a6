import { readFile } from 'node:fs/promises'
import * as tf from '@tensorflow/tfjs'
import { createPublicClient, createWalletClient, http, type Address, type Hex } from 'viem'
import { anvilAccount, anvilChain } from '../../contracts/anvil.ts'
import { jobEscrowAbi, stakeManagerAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { ContractAddresses, Hash, JobDraft, JobSpec } from '../../src/protocol/index.ts'
import { savedModelFiles } from '../../src/training/testing/savedModelFiles.ts'
import { seededGlorotWeights } from '../presets/mnist.ts'

/**
 * The job the crash tests train, created through the API as a requester creates one: the penguins CSV
 * (datasets/penguins) with a 10-16-3 perceptron whose initial weights come from a seeded stream, so every
 * run posts the same spec and gets the same job id. Rounds are synchronous (no maxStaleness): a round
 * averages exactly its K units, each a pure function of the round's checkpoint and the unit's index, so the
 * final checkpoint depends on the spec alone, not on timing, on who computed which unit, or on how often the
 * coordinator died. (The preset the coordinator creates at start is asynchronous: its rounds take in the
 * answers that happen to have arrived, so its result depends on timing.) The model and data are small, so a
 * round costs milliseconds of computing and the test's time goes into crashes and restarts.
 */
export const CRASH_JOB_UNITS_PER_ROUND = 4
export const CRASH_JOB_PRICE = 10n ** 15n

/** anvil's account #1 (the local chain's preset requester): its key is public, so the test signs in and deposits as it. */
export const CRASH_JOB_REQUESTER = anvilAccount(1)

const PENGUINS_CSV = new URL('../../datasets/penguins/penguins.csv', import.meta.url)

export function crashJobDraft(rounds: number): JobDraft {
  return {
    name: `Crash test: penguins, ${rounds} synchronous rounds`,
    kernelBundle: 'default',
    data: { labelColumn: 'Species', dropIncompleteRows: true },
    training: {
      innerOptimizer: 'adam',
      learningRate: 0.01,
      batchSize: 16,
      innerSteps: 5,
      unitsPerRound: CRASH_JOB_UNITS_PER_ROUND,
      rounds,
      outerOptimizer: 'average',
      outerLearningRate: 1,
      // A lease whose grant the crash swallowed (committed, never delivered) holds its unit, and one of its
      // contributor's live leases, until it runs out: short, but long enough for a unit across a restart.
      leaseTtlSeconds: 20,
    },
    // Checks are paid like units (at most 1 in 3 while addresses are new): the budget covers twice the units.
    payment: {
      pricePerUnit: String(CRASH_JOB_PRICE),
      budget: String(2n * BigInt(rounds * CRASH_JOB_UNITS_PER_ROUND) * CRASH_JOB_PRICE),
      requester: CRASH_JOB_REQUESTER.address,
    },
  }
}

/** The draft and its files as the "Post a job" page sends them: model.json, its weights, the CSV. */
export async function crashJobForm(rounds: number): Promise<FormData> {
  const model = tf.sequential({
    name: 'penguins',
    layers: [tf.layers.dense({ name: 'hidden', units: 16, activation: 'relu', inputShape: [10] }), tf.layers.dense({ name: 'species', units: 3 })],
  })
  const initial = seededGlorotWeights([[10, 16], [16], [16, 3], [3]], 'tabtrain/test/crash/penguins')
  model.setWeights(initial.values.map((values, i) => tf.tensor(values, initial.shapes[i] as number[])))
  const files = await savedModelFiles(model)
  model.dispose()
  const form = new FormData()
  form.append('job', JSON.stringify(crashJobDraft(rounds)))
  form.append('model', new Blob([files.modelJson]), 'model.json')
  for (const [name, bytes] of files.weights) form.append('weights', new Blob([new Uint8Array(bytes)]), name)
  form.append('data', new Blob([new Uint8Array(await readFile(PENGUINS_CSV))]), 'penguins.csv')
  return form
}

/** Creates the job through the API, signed in with Ethereum as its requester. */
export async function createCrashJob(client: CoordinatorClient, rounds: number): Promise<{ jobId: Hash; spec: JobSpec }> {
  const session = await client.signIn(CRASH_JOB_REQUESTER)
  const created = await client.createJob(await crashJobForm(rounds), session.token)
  return { jobId: created.jobId, spec: created.spec }
}

function chainClients(rpcUrl: string) {
  const chain = anvilChain({ chainId: 31337, rpcUrl })
  const publicClient = createPublicClient({ chain, transport: http(rpcUrl), pollingInterval: 50 })
  const wallet = (account: ReturnType<typeof anvilAccount>) => createWalletClient({ account, chain, transport: http(rpcUrl) })
  const mined = async (hash: Hex) => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 50 })
    if (receipt.status !== 'success') throw new Error(`transaction ${hash} reverted`)
  }
  return { publicClient, wallet, mined }
}

/** Escrows the job's budget from the requester's wallet; the token's owner (anvil's account #0) mints it first. */
export async function depositBudget(rpcUrl: string, contracts: ContractAddresses, jobId: Hash, budget: bigint): Promise<void> {
  const { wallet, mined } = chainClients(rpcUrl)
  const owner = wallet(anvilAccount(0))
  const requester = wallet(CRASH_JOB_REQUESTER)
  await mined(await owner.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'mint', args: [CRASH_JOB_REQUESTER.address, budget] }))
  await mined(await requester.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'approve', args: [contracts.jobEscrow, budget] }))
  const deadline = BigInt(Math.floor(Date.now() / 1000) + 86_400)
  await mined(await requester.writeContract({ address: contracts.jobEscrow, abi: jobEscrowAbi, functionName: 'deposit', args: [jobId, budget, deadline] }))
}

/** Stakes `amount` for each address from the token owner's account: on a chain without the local faucet. */
export async function stakeFor(rpcUrl: string, contracts: ContractAddresses, addresses: Address[], amount: bigint): Promise<void> {
  const { wallet, mined } = chainClients(rpcUrl)
  const owner = wallet(anvilAccount(0))
  const total = amount * BigInt(addresses.length)
  await mined(await owner.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'mint', args: [owner.account.address, total] }))
  await mined(await owner.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'approve', args: [contracts.stakeManager, total] }))
  for (const address of addresses) {
    await mined(await owner.writeContract({ address: contracts.stakeManager, abi: stakeManagerAbi, functionName: 'stakeFor', args: [address, amount] }))
  }
}
