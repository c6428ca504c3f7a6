import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { Hash, JobProgress } from '../src/protocol/index.ts'
import { createNodeContributor } from '../src/worker/nodeContributor.ts'
import type { Scheduler, SchedulerEvent } from '../src/worker/scheduler.ts'
import { removeDataDir, spawnCoordinator, type SpawnedCoordinator } from './testing/spawnCoordinator.ts'

async function waitFor<T>(read: () => Promise<T>, done: (value: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await read().catch(() => null)
    if (value !== null && done(value)) return value
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms; last value ${JSON.stringify(value)?.slice(0, 300)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * A coordinator process killed with SIGKILL mid-round (some updates of the round accepted, not all) and
 * started again on the same store and port: contributors carry on by themselves, and no accepted update
 * or round is lost.
 */
describe('coordinator killed mid-round', () => {
  let coordinator: SpawnedCoordinator | null = null
  let contributors: Scheduler[] = []

  afterAll(async () => {
    await Promise.all(contributors.map((c) => c.stop()))
    if (coordinator) {
      await coordinator.kill('SIGKILL')
      await removeDataDir(coordinator.dataDir)
    }
  })

  it('loses no accepted update and no round', { timeout: 300_000 }, async () => {
    // Epochs every 2 s, so that roots are being posted when the kill lands.
    const env = { TABTRAIN_EPOCH_SECONDS: '2' }
    coordinator = await spawnCoordinator({ env })
    const port = Number(new URL(coordinator.url).port)
    const client = new CoordinatorClient(coordinator.url)
    const jobId = (await client.listJobs())[0]!.id as Hash
    const events: SchedulerEvent[] = []
    const keys = [generatePrivateKey(), generatePrivateKey()]
    // The preset is a paid job: the local faucet stakes its minimum for each new address.
    for (const key of keys) await client.faucet(privateKeyToAccount(key).address)
    contributors = keys.map((privateKey) =>
      createNodeContributor({ coordinatorUrl: coordinator!.url, jobId, privateKey, onEvent: (e) => events.push(e) }),
    )
    contributors.forEach((c) => c.start())

    const beforeKill = await waitFor(() => client.progress(jobId), (p) => p.round >= 1 && p.acceptedThisRound > 0, 120_000)
    await coordinator.kill('SIGKILL')
    coordinator = await spawnCoordinator({ dataDir: coordinator.dataDir, port, env })

    const afterRestart = await client.progress(jobId)
    // Everything acknowledged before the kill is still there (the kill may have landed after a few more).
    expect(afterRestart.round).toBeGreaterThanOrEqual(beforeKill.round)
    expect(afterRestart.acceptedUnits).toBeGreaterThanOrEqual(beforeKill.acceptedUnits)
    expect(afterRestart.history.slice(0, beforeKill.history.length)).toEqual(beforeKill.history)

    const end: JobProgress = await waitFor(() => client.progress(jobId), (p) => p.history.length >= afterRestart.history.length + 2, 120_000)
    await Promise.all(contributors.map((c) => c.stop()))
    // The chain of checkpoints has no gap across the crash.
    expect(end.history.map((r) => r.round)).toEqual(end.history.map((_, i) => i))
    for (let i = 1; i < end.history.length; i++) expect(end.history[i]!.inputHash).toBe(end.history[i - 1]!.outputHash)
    // The contributors saw the outage and carried on by themselves.
    expect(events.some((e) => e.type === 'error' && /CoordinatorUnreachableError/.test(e.message))).toBe(true)
    const firstError = events.findIndex((e) => e.type === 'error')
    expect(events.slice(firstError).some((e) => e.type === 'unit-accepted')).toBe(true)

    // Settlement came through the crash too: the local chain was found again (same contracts), epochs
    // are numbered without gaps or repeats, each root was posted once, and the latest pays for every
    // accepted unit at the preset's price.
    const info = await client.info()
    const units = (await client.progress(jobId)).acceptedUnits
    const price = BigInt((await client.job(jobId)).payment!.pricePerUnit)
    const epochs = await waitFor(() => client.epochs(), (list) => list[0]?.status === 'posted' && BigInt(list[0].totalCumulative) === BigInt(units) * price, 30_000)
    expect(epochs.map((e) => e.epoch)).toEqual(epochs.map((_, i) => epochs.length - i))
    expect(epochs.every((e) => e.status === 'posted')).toBe(true)
    expect(new Set(epochs.map((e) => e.txHash)).size).toBe(epochs.length)
    expect(info.verifyingContract).toBe(info.chain!.contracts.disputeResolver)
    expect(coordinator.output()).toMatch(/local chain: reusing contracts deployed in block/)
  })
})
