import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EXACT_KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import { jobSpecHash, parseJobSpec, sha256Hex, type Hash, type JobSpec, type WorkUnit } from '../../src/protocol/index.ts'
import { mapBlobSource } from '../../src/worker/blobSource.ts'
import { useCpuKernelsFor } from '../../src/worker/cpuKernels.ts'
import { nodeDeviceClass } from '../../src/worker/nodeDeviceClass.ts'
import { createUnitRunner } from '../../src/worker/unitRunner.ts'
import { buildMnistPreset } from '../presets/mnist.ts'
import { createThreadReferee, RefereeError, type Referee } from './referee.ts'

const REPO = fileURLToPath(new URL('../../', import.meta.url))

const unitOf = (spec: JobSpec, unit = 1): WorkUnit => ({ jobId: jobSpecHash(spec), round: 0, unit, inputHash: spec.model.initialWeights })

let specs: { standard: JobSpec; exact: JobSpec }
let blobs: Map<string, Uint8Array>
/** Blob hashes the referee asked for, in order. */
const asked: Hash[] = []
/** Bytes served under a hash instead of the real ones (a corrupt blob store). */
const corrupt = new Map<Hash, Uint8Array>()
let referee: Referee

/** What an honest Node contributor computes (nodeContributor.ts), here in the test process. */
let nodeContributor: ReturnType<typeof createUnitRunner>
async function contributorAnswer(spec: JobSpec, unit: WorkUnit) {
  await useCpuKernelsFor(spec, 'cpu')
  return nodeContributor.run(spec, unit)
}

beforeAll(async () => {
  const [standard, exact] = await Promise.all([
    buildMnistPreset({ paid: false }),
    buildMnistPreset({ paid: false, kernelBundle: EXACT_KERNEL_BUNDLE }),
  ])
  specs = { standard: standard.spec, exact: exact.spec }
  blobs = new Map([...standard.blobs, ...exact.blobs])
  nodeContributor = createUnitRunner(mapBlobSource(blobs, 'preset blobs'))
  referee = createThreadReferee({
    async blob(hash) {
      asked.push(hash)
      const bytes = corrupt.get(hash) ?? blobs.get(hash)
      if (!bytes) throw new Error(`no blob ${hash}`)
      return bytes
    },
  })
})

afterAll(async () => {
  await referee?.close()
})

describe('the coordinator\'s thread referee', () => {
  it('answers a preset unit with the Node contributor\'s bits and device class', async () => {
    const unit = unitOf(specs.standard)
    const t0 = performance.now()
    const answer = await referee.compute(specs.standard, unit)
    console.log(`referee, MNIST preset unit: ${answer.ms.toFixed(0)} ms in the thread, ${(performance.now() - t0).toFixed(0)} ms with the thread's start`)
    const honest = await contributorAnswer(specs.standard, unit)
    expect(answer.outputHash).toBe(honest.outputHash)
    expect(sha256Hex(answer.updateBytes)).toBe(answer.outputHash)
    expect(Buffer.from(answer.updateBytes).equals(Buffer.from(honest.updateBytes))).toBe(true)
    expect(answer.deviceClass).toBe(nodeDeviceClass(specs.standard.kernelBundle))
    expect(answer.deviceClass.startsWith('cpu|node/')).toBe(true)
  })

  it('answers an exact-mode unit with the bits of exact mode\'s CPU kernels', async () => {
    const unit = unitOf(specs.exact, 2)
    // Both at once: the referee's thread computes while this thread computes the contributor's answer.
    const [answer, honest] = await Promise.all([referee.compute(specs.exact, unit), contributorAnswer(specs.exact, unit)])
    console.log(`referee, exact-mode preset unit: ${answer.ms.toFixed(0)} ms in the thread`)
    expect(answer.outputHash).toBe(honest.outputHash)
    expect(answer.deviceClass).toBe(nodeDeviceClass(EXACT_KERNEL_BUNDLE))
    // Back on the standard bundle afterwards, the thread gives the standard bits again.
    const again = await referee.compute(specs.standard, unitOf(specs.standard))
    expect(again.outputHash).toBe((await contributorAnswer(specs.standard, unitOf(specs.standard))).outputHash)
  })

  it('keeps the event loop turning while it computes', async () => {
    let ticks = 0
    const timer = setInterval(() => ticks++, 5)
    try {
      const t0 = performance.now()
      const answer = await referee.compute(specs.standard, unitOf(specs.standard, 3))
      const elapsed = performance.now() - t0
      expect(answer.ms).toBeGreaterThan(50)
      // A blocked loop would fire the timer at most once during the whole computation.
      expect(ticks).toBeGreaterThanOrEqual(Math.min(10, Math.floor(elapsed / 5 / 4)))
    } finally {
      clearInterval(timer)
    }
  })

  it('refuses a job with a kernel bundle this build does not have, naming it', async () => {
    const spec = parseJobSpec({ ...specs.standard, kernelBundle: 'tabtrain-det-v0-0000000000000000+nothing' })
    const error = await referee.compute(spec, unitOf(spec)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RefereeError)
    expect((error as RefereeError).kind).toBe('unsupported-bundle')
    expect((error as RefereeError).message).toContain('"tabtrain-det-v0-0000000000000000+nothing"')
  })

  it('fails a unit whose checkpoint is missing from the blob store, naming the blob', async () => {
    const missing = sha256Hex(new TextEncoder().encode('a checkpoint nobody stored'))
    const error = await referee.compute(specs.standard, { ...unitOf(specs.standard), inputHash: missing }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RefereeError)
    expect((error as RefereeError).kind).toBe('missing-blob')
    expect((error as RefereeError).message).toContain(missing)
    expect(asked).toContain(missing)
  })

  it('checks blob bytes against their hash in the thread', async () => {
    // A blob store that answers a checkpoint's hash with other bytes (here: the initial weights, truncated).
    const checkpoint = sha256Hex(new TextEncoder().encode('a checkpoint stored wrongly'))
    corrupt.set(checkpoint, blobs.get(specs.standard.model.initialWeights)!.subarray(0, 1000))
    try {
      const error = await referee.compute(specs.standard, { ...unitOf(specs.standard), inputHash: checkpoint }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(RefereeError)
      expect((error as RefereeError).kind).toBe('bad-blob')
      expect((error as RefereeError).message).toContain(`blob ${checkpoint} arrived with hash`)
    } finally {
      corrupt.delete(checkpoint)
    }
  })

  it('starts under tsx, and close() ends a busy thread so the process exits', async () => {
    // A process under tsx (as `npm start` runs the coordinator) whose referee waits on a blob that never comes:
    // the busy thread holds the process open until close() ends it.
    const script = `(async () => {
      const { createThreadReferee } = await import(${JSON.stringify(new URL('./referee.ts', import.meta.url).href)})
      const { spec, unit } = JSON.parse(process.env.REFEREE_TEST_JOB)
      let asked
      const blobAsked = new Promise((resolve) => { asked = resolve })
      const referee = createThreadReferee({ blob: (hash) => { asked(hash); return new Promise(() => {}) } })
      const answer = referee.compute(spec, unit).catch((e) => e.name + ' ' + e.kind)
      console.log('thread asked for', await blobAsked)
      await referee.close()
      console.log('compute:', await answer)
    })()`
    const child = spawn(process.execPath, [fileURLToPath(new URL('../../node_modules/tsx/dist/cli.mjs', import.meta.url)), '-e', script], {
      cwd: REPO,
      env: { ...process.env, REFEREE_TEST_JOB: JSON.stringify({ spec: specs.standard, unit: unitOf(specs.standard) }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.stderr.on('data', (d: Buffer) => (out += d))
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
      child.on('exit', (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    expect(out).toMatch(/thread asked for 0x[0-9a-f]{64}/)
    expect(out).toContain('compute: RefereeError closed')
    expect(code).toBe(0)
  })
})
