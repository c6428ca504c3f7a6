import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { generatePrivateKey } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { parseJobSpec, type Hash, type JobProgress } from '../src/protocol/index.ts'
import { createNodeContributor } from '../src/worker/nodeContributor.ts'
import { BARELY_CHECKED, TEST_DOMAIN, testJobBase } from './testing/fixtures.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from './testing/inProcess.ts'

const run = promisify(execFile)

/**
 * Taking a trained model home: a small job trains a few rounds for real (a Node contributor, the same unit
 * runner a tab uses), and a separate Node process loads the served model with stock `tf.loadLayersModel`
 * over a real port and gets exactly the held-out accuracy the coordinator measured for that checkpoint.
 */
describe('model download', () => {
  let coordinator: TemporaryCoordinator
  let client: CoordinatorClient
  let jobId: Hash
  let progress: JobProgress

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', ...TEST_DOMAIN } })
    client = new CoordinatorClient(coordinator.url)
    const base = await testJobBase()
    // Real updates; checked at the lowest rate a spec allows so the test does not wait for re-executions.
    const spec = parseJobSpec({ ...base.spec, name: 'model download test', verification: BARELY_CHECKED })
    jobId = await coordinator.jobs.createJob(spec, base.blobs)
    const contributor = createNodeContributor({ coordinatorUrl: coordinator.url, jobId, privateKey: generatePrivateKey() })
    contributor.start()
    const deadline = Date.now() + 120_000
    progress = await client.progress(jobId)
    while (progress.history.length < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250))
      progress = await client.progress(jobId)
    }
    await contributor.stop()
    progress = await client.progress(jobId)
  }, 180_000)

  afterAll(async () => {
    await coordinator?.dispose()
  })

  /** Loads `url` with stock tfjs in a process of its own and measures held-out accuracy there. */
  async function loadElsewhere(url: string) {
    const { stdout } = await run('npx', ['tsx', 'coordinator/testing/loadModel.ts', url, coordinator.url, jobId], { timeout: 90_000 })
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      accuracy: number
      count: number
      metadata: { tabtrain: { jobId: string; round: number; checkpointHash: string } }
      weights: string[]
    }
  }

  it('serves every closed round as a model stock tf.loadLayersModel loads, with the accuracy the coordinator measured', { timeout: 120_000 }, async () => {
    expect(progress.history.length).toBeGreaterThanOrEqual(2)
    const round = progress.history[1]!
    const url = client.modelUrl(jobId, round.round)
    const answer = await fetch(url)
    expect(answer.status).toBe(200)
    expect(answer.headers.get('x-tabtrain-checkpoint')).toBe(round.outputHash)
    const json = (await answer.json()) as { format: string; weightsManifest: Array<{ paths: string[]; weights: Array<{ name: string; dtype: string }> }> }
    expect(json.format).toBe('layers-model')
    expect(json.weightsManifest[0]!.paths).toEqual(['weights.bin'])
    // The names a fresh model of this topology gives its weights, free of this process's name counters
    // (the coordinator built the same topology several times over).
    expect(json.weightsManifest[0]!.weights.every((w) => w.dtype === 'float32' && !/_\d+$/.test(w.name))).toBe(true)

    const loaded = await loadElsewhere(url)
    expect(loaded.metadata.tabtrain).toEqual({ jobId, round: round.round, checkpointHash: round.outputHash })
    expect(loaded.weights).toEqual(json.weightsManifest[0]!.weights.map((w) => w.name))
    expect(loaded.count).toBe(200)
    expect(loaded.accuracy).toBe(round.heldOutAccuracy)
    // Trained for real: better than the untrained model.
    expect(loaded.accuracy).toBeGreaterThan(progress.initial!.heldOutAccuracy)
  })

  it('serves the latest closed round at /api/jobs/:id/model.json, its weights beside it', { timeout: 120_000 }, async () => {
    const latest = progress.history.at(-1)!
    const answer = await fetch(client.modelUrl(jobId))
    expect(answer.headers.get('x-tabtrain-checkpoint')).toBe(latest.outputHash)
    expect(answer.headers.get('x-tabtrain-round')).toBe(String(latest.round))
    const loaded = await loadElsewhere(client.modelUrl(jobId))
    expect(loaded.metadata.tabtrain.round).toBe(latest.round)
    expect(loaded.accuracy).toBe(latest.heldOutAccuracy)
  })

  it('serves weights.bin as the checkpoint floats, and says why when a round has no model', async () => {
    const round = progress.history[0]!
    const bin = await fetch(`${coordinator.url}/api/jobs/${jobId}/rounds/${round.round}/weights.bin`)
    expect(bin.headers.get('content-type')).toBe('application/octet-stream')
    expect(bin.headers.get('x-tabtrain-checkpoint')).toBe(round.outputHash)
    // The canonical checkpoint is a 'TTW1' header and the same float32 values: the bin is its tail.
    const checkpoint = await client.blob(round.outputHash)
    const bytes = new Uint8Array(await bin.arrayBuffer())
    expect(Buffer.from(checkpoint.subarray(checkpoint.length - bytes.length)).equals(Buffer.from(bytes))).toBe(true)

    const refusal = async (path: string) => {
      const answer = await fetch(`${coordinator.url}${path}`)
      return { status: answer.status, code: ((await answer.json()) as { code: string }).code }
    }
    const rounds = (await client.job(jobId)).spec.training.rounds
    expect(await refusal(`/api/jobs/${jobId}/rounds/${rounds}/model.json`)).toEqual({ status: 404, code: 'round_not_found' })
    expect(await refusal(`/api/jobs/${jobId}/rounds/${rounds}/weights.bin`)).toEqual({ status: 404, code: 'round_not_found' })
    expect(await refusal(`/api/jobs/${jobId}/rounds/x/model.json`)).toEqual({ status: 400, code: 'malformed_request' })
    expect(await refusal(`/api/jobs/0x${'0'.repeat(64)}/model.json`)).toEqual({ status: 404, code: 'job_not_found' })
    // The preset has not trained here: nothing closed yet.
    expect(await refusal(`/api/jobs/${coordinator.presetJobId}/model.json`)).toEqual({ status: 404, code: 'no_model_yet' })
    expect(await refusal(`/api/jobs/${coordinator.presetJobId}/rounds/0/model.json`)).toEqual({ status: 404, code: 'round_not_closed' })
  })
})
