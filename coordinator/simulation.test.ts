import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { EXACT_KERNEL_BUNDLE } from '../src/kernels/config.ts'
import type { Hash } from '../src/protocol/index.ts'
import { createNodeContributor } from '../src/worker/nodeContributor.ts'
import type { SchedulerEvent } from '../src/worker/scheduler.ts'
import { buildMnistPreset } from './presets/mnist.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

/**
 * The whole loop over real HTTP with simulated contributors: three Node processes' worth of the same
 * unit runner and pull loop a tab uses, training the preset MNIST job.
 */
describe('coordinator with simulated contributors', () => {
  let coordinator: TemporaryCoordinator

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator()
  })

  afterAll(async () => {
    await coordinator?.dispose()
  })

  it('three contributors close rounds, and held-out accuracy rises above 80%', { timeout: 240_000 }, async () => {
    const client = new CoordinatorClient(coordinator.url)
    const jobId = coordinator.presetJobId as Hash
    const keys = [generatePrivateKey(), generatePrivateKey(), generatePrivateKey()]
    const events: SchedulerEvent[] = []
    const contributors = keys.map((privateKey) =>
      createNodeContributor({ coordinatorUrl: coordinator.url, jobId, privateKey, onEvent: (e) => events.push(e) }),
    )
    // The preset is a paid job: the local faucet stakes its minimum for each new address.
    for (const key of keys) await coordinator.settlement!.drip(privateKeyToAccount(key).address)
    contributors.forEach((c) => c.start())
    const deadline = Date.now() + 120_000
    let progress = await client.progress(jobId)
    while (progress.history.length < 5 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500))
      progress = await client.progress(jobId)
    }
    await Promise.all(contributors.map((c) => c.stop()))
    progress = await client.progress(jobId)

    expect(progress.history.length).toBeGreaterThanOrEqual(5)
    // Every closed round is chained: it starts from the checkpoint the previous one produced.
    for (let i = 1; i < progress.history.length; i++) {
      expect(progress.history[i]!.inputHash).toBe(progress.history[i - 1]!.outputHash)
    }
    const last = progress.history.at(-1)!
    expect(last.heldOutAccuracy).toBeGreaterThanOrEqual(0.8)
    expect(last.heldOutLoss).toBeLessThan(progress.initial!.heldOutLoss)
    // Work was spread across the contributors, and each accepted unit is credited to its signer.
    const addresses = keys.map((k) => privateKeyToAccount(k).address)
    expect(progress.contributors.map((c) => c.address).sort()).toEqual([...addresses].sort())
    expect(progress.contributors.reduce((n, c) => n + c.acceptedUnits, 0)).toBe(progress.acceptedUnits)
    expect(events.filter((e) => e.type === 'error')).toEqual([])
  })

  it('a Node contributor computes exact-mode units on the CPU, accepted under the exact bundle', { timeout: 240_000 }, async () => {
    const client = new CoordinatorClient(coordinator.url)
    const jobId = coordinator.exactPresetJobId as Hash
    const events: SchedulerEvent[] = []
    const privateKey = generatePrivateKey()
    await coordinator.settlement!.drip(privateKeyToAccount(privateKey).address)
    const contributor = createNodeContributor({ coordinatorUrl: coordinator.url, jobId, privateKey, onEvent: (e) => events.push(e) })
    contributor.start()
    const deadline = Date.now() + 180_000
    let progress = await client.progress(jobId)
    while (progress.history.length < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500))
      progress = await client.progress(jobId)
    }
    await contributor.stop()
    expect(progress.history.length).toBeGreaterThanOrEqual(1)
    expect(events.filter((e) => e.type === 'error' || e.type === 'stopped')).toEqual([])
    const unit = await client.unit(jobId, 0, 0)
    expect(unit.status).toBe('accepted')
    expect(unit.deviceClass).toContain(EXACT_KERNEL_BUNDLE)
    expect(unit.deviceClass).toMatch(/^cpu\|/)
  })

  it('stops, leasing nothing more, on a job whose kernel bundle this build does not have', { timeout: 60_000 }, async () => {
    const preset = await buildMnistPreset({ paid: false, kernelBundle: 'someone-elses-kernels-v9' })
    const jobId = (await coordinator.jobs.createJob(preset.spec, preset.blobs.values())) as Hash
    const events: SchedulerEvent[] = []
    const contributor = createNodeContributor({ coordinatorUrl: coordinator.url, jobId, privateKey: generatePrivateKey(), onEvent: (e) => events.push(e) })
    contributor.start()
    const deadline = Date.now() + 30_000
    while (!events.some((e) => e.type === 'stopped') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    await contributor.stop()
    const stopped = events.find((e) => e.type === 'stopped')
    expect(stopped && stopped.type === 'stopped' ? stopped.reason : 'no stopped event').toMatch(/UnsupportedKernelBundleError: .*someone-elses-kernels-v9/)
    expect(contributor.currentState).toBe('idle')
    expect(events.filter((e) => e.type === 'leased')).toHaveLength(1)
    expect(events.filter((e) => e.type === 'error')).toEqual([])
  })
})
