import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeIdx } from '../src/data/idx.ts'
import { buildSignInMessage, jobSpecHash, type ApiErrorBody, type JobSpec, type PresetInfo, type SignInResult } from '../src/protocol/index.ts'
import { savedModelFiles, type SavedModelFiles } from '../src/training/testing/savedModelFiles.ts'
import { BlobStore } from './blobs.ts'
import { migrate, openPglite, type Database } from './db.ts'
import { CoordinatorError } from './errors.ts'
import { buildHttpServer } from './http.ts'
import { JobService } from './jobs.ts'
import { jobCreationRoutes } from './routes/jobCreation.ts'
import { alice, bob, TEST_DOMAIN } from './testing/fixtures.ts'
import { LeaseIdentity } from './verification/identity.ts'

const penguinsCsv = await readFile(new URL('../datasets/penguins/penguins.csv', import.meta.url))
const payment = { pricePerUnit: '1000', budget: '100000', requester: alice.address }

/** A multipart/form-data body as a browser's FormData would send it: the draft first, then the files. */
async function multipart(draft: unknown, files: { field: string; name: string; bytes: Uint8Array | string }[] = []) {
  const form = new FormData()
  form.append('job', typeof draft === 'string' ? draft : JSON.stringify(draft))
  for (const f of files) form.append(f.field, new Blob([typeof f.bytes === 'string' ? f.bytes : new Uint8Array(f.bytes)]), f.name)
  const request = new Request('http://coordinator/api/jobs', { method: 'POST', body: form })
  return { payload: Buffer.from(await request.arrayBuffer()), headers: { 'content-type': request.headers.get('content-type')! } }
}

/** 10 inputs (the penguins' features after one-hot encoding), 3 species. */
function penguinModel(inputs = 10) {
  return tf.sequential({
    name: 'penguins',
    layers: [tf.layers.dense({ name: 'hidden', units: 16, activation: 'relu', inputShape: [inputs] }), tf.layers.dense({ name: 'species', units: 3 })],
  })
}

function modelParts(files: SavedModelFiles) {
  return [
    { field: 'model', name: 'model.json', bytes: files.modelJson },
    ...[...files.weights].map(([name, bytes]) => ({ field: 'weights', name, bytes })),
  ]
}

describe('POST /api/jobs: requesters create jobs from presets and from their own model and data', () => {
  let db: Database
  let dir: string
  let jobs: JobService
  let app: FastifyInstance

  beforeAll(async () => {
    await tf.setBackend('cpu')
    db = await openPglite()
    await migrate(db)
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-jobcreation-'))
    const blobs = new BlobStore(dir)
    jobs = new JobService({ db, blobs, domain: TEST_DOMAIN })
    app = await buildHttpServer({
      jobs,
      blobs,
      identity: new LeaseIdentity({ db, domain: TEST_DOMAIN, audience: 'test', now: Date.now }),
      info: { ...TEST_DOMAIN, coordinatorId: 'test', version: 'test', chain: null, epochSeconds: null },
    })
  })

  afterAll(async () => {
    await app?.close()
    await db?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** Alice signs in with Ethereum (the requester of every draft here), as the new-job page does. */
  const HOST = 'coordinator.test'
  let token = ''
  beforeAll(async () => {
    const { nonce } = (await app.inject({ method: 'GET', url: '/api/auth/nonce', headers: { host: HOST } })).json() as { nonce: string }
    const message = buildSignInMessage({ address: alice.address, chainId: TEST_DOMAIN.chainId, origin: `http://${HOST}`, nonce })
    const signIn = await app.inject({ method: 'POST', url: '/api/auth/siwe', headers: { host: HOST }, payload: { message, signature: await alice.signMessage({ message }) } })
    token = (signIn.json() as SignInResult).token
  })

  const post = async (draft: unknown, files: Parameters<typeof multipart>[1] = [], signedIn = true) => {
    const body = await multipart(draft, files)
    const headers = { ...body.headers, host: HOST, ...(signedIn ? { authorization: `Bearer ${token}` } : {}) }
    const response = await app.inject({ method: 'POST', url: '/api/jobs', payload: body.payload, headers })
    return { status: response.statusCode, body: response.json() as { jobId: string; spec: JobSpec } & ApiErrorBody }
  }

  /** Every blob file and every job row: what a refused upload must leave as it was. */
  const storeState = async () => {
    const blobFiles = (await readdir(dir, { recursive: true })).sort()
    const rows = await db.query<{ id: string }>(`SELECT id FROM jobs ORDER BY id`)
    return { blobFiles, jobs: rows.map((r) => r.id) }
  }

  const expectRefused = async (draft: unknown, files: Parameters<typeof multipart>[1], status: number, code: string, message: string | RegExp, signedIn = true) => {
    const before = await storeState()
    const { status: got, body } = await post(draft, files, signedIn)
    expect({ status: got, code: body.code }).toEqual({ status, code })
    if (typeof message === 'string') expect(body.message).toBe(message)
    else expect(body.message).toMatch(message)
    expect(await storeState()).toEqual(before)
  }

  it('lists the presets with their defaults, help and bundles', async () => {
    const response = await app.inject({ method: 'GET', url: '/api/presets' })
    const { presets } = response.json() as { presets: PresetInfo[] }
    expect(presets.map((p) => [p.id, p.bundles])).toEqual([
      ['mnist-mlp', ['default', 'exact']],
      ['mnist-cnn', ['default']],
      ['shakespeare-char', ['default', 'exact']],
    ])
  })

  it('creates a preset job (201), and answers the same draft again with the existing id (200)', async () => {
    const draft = { preset: 'mnist-mlp', name: 'my digits', kernelBundle: 'default', training: { rounds: 3 }, payment }
    const created = await post(draft)
    expect(created.status).toBe(201)
    expect(created.body.jobId).toBe(jobSpecHash(created.body.spec))
    expect(created.body.spec.name).toBe('my digits')
    expect(created.body.spec.training.rounds).toBe(3)
    expect(created.body.spec.payment).toEqual(payment)
    const [row] = await db.query<{ status: string; origin: string }>(`SELECT status, origin FROM jobs WHERE id = $1`, [created.body.jobId])
    expect(row).toEqual({ status: 'active', origin: 'preset' })
    const again = await post(draft)
    expect(again.status).toBe(200)
    expect(again.body.jobId).toBe(created.body.jobId)
  })

  it('creates a job from an uploaded model.json + weights (tfjs model.save) and the penguins CSV', async () => {
    const model = penguinModel()
    const files = await savedModelFiles(model, { shardBytes: 256 })
    const draft = {
      name: 'penguin species',
      description: 'three species from beak, flipper, mass, island and sex',
      kernelBundle: 'exact',
      payment,
      data: { labelColumn: 'Species', dropIncompleteRows: true },
    }
    const created = await post(draft, [...modelParts(files), { field: 'data', name: 'penguins.csv', bytes: penguinsCsv }])
    expect(created.status).toBe(201)
    const spec = created.body.spec
    expect(spec.data.labelNames).toEqual(['Adelie', 'Chinstrap', 'Gentoo'])
    expect(spec.data.featureNames).toHaveLength(10)
    expect(spec.data.inputShape).toEqual([10])
    expect(spec.data.train.count + spec.data.heldOut.count).toBe(334)
    expect(spec.data.standardization!.mean).toHaveLength(10)
    const [row] = await db.query<{ origin: string; initial_accuracy: number }>(`SELECT origin, initial_accuracy FROM jobs WHERE id = $1`, [created.body.jobId])
    expect(row!.origin).toBe('upload')
    // The stored initial weights are the uploaded ones, in checkpoint order.
    const detail = await jobs.getJob(created.body.jobId)
    expect(detail.spec.model.initialWeights).toBe(spec.model.initialWeights)
    expect(await jobs.options.blobs.has(spec.data.train.images)).toBe(true)
    model.dispose()
  })

  it('creates the character-model preset; the coordinator evaluates its one-hot windows (loss near ln 65 before training)', async () => {
    const created = await post({ preset: 'shakespeare-char', name: 'bard', kernelBundle: 'exact', payment })
    expect(created.status).toBe(201)
    const [row] = await db.query<{ initial_loss: number }>(`SELECT initial_loss FROM jobs WHERE id = $1`, [created.body.jobId])
    expect(Math.abs(row!.initial_loss - Math.log(65))).toBeLessThan(0.2)
  })

  it('creates a job from an uploaded character model and plain text, the window length read from the model', async () => {
    const text = penguinsCsv.toString('utf8').slice(0, 6000) // any text: here the CSV's characters
    const vocabulary = new Set(text).size
    const model = tf.sequential({
      layers: [tf.layers.flatten({ name: 'window', inputShape: [6, vocabulary] }), tf.layers.dense({ name: 'next', units: vocabulary })],
    })
    const files = await savedModelFiles(model)
    const created = await post({ name: 'csv as text', kernelBundle: 'default', payment }, [...modelParts(files), { field: 'data', name: 'notes.txt', bytes: text }])
    expect(created.status).toBe(201)
    expect(created.body.spec.data.inputEncoding).toEqual({ kind: 'one-hot', depth: vocabulary })
    expect(created.body.spec.data.inputShape).toEqual([6, vocabulary])
    expect(Array.from(created.body.spec.data.vocabulary!)).toHaveLength(vocabulary)
  })

  it('creates a job from uploaded IDX images and labels, holding out a fixed 20%', async () => {
    const digits = tf.sequential({ layers: [tf.layers.flatten({ name: 'f', inputShape: [4, 4] }), tf.layers.dense({ name: 'logits', units: 10 })] })
    const files = await savedModelFiles(digits)
    const images = encodeIdx({ shape: [50, 4, 4], data: new Uint8Array(800).map((_, i) => (i * 7) % 256) })
    const labels = encodeIdx({ shape: [50], data: new Uint8Array(50).map((_, i) => i % 10) })
    const created = await post({ name: 'tiny digits', kernelBundle: 'default', payment }, [
      ...modelParts(files),
      { field: 'images', name: 'images.idx', bytes: images },
      { field: 'labels', name: 'labels.idx', bytes: labels },
    ])
    expect(created.status).toBe(201)
    expect(created.body.spec.data).toMatchObject({ inputShape: [4, 4], classes: 10, scale: 255, train: { count: 40 }, heldOut: { count: 10 } })
  })

  it('refuses anyone not signed in, before reading a file', async () => {
    await expectRefused({ preset: 'mnist-mlp', name: 'anonymous', kernelBundle: 'default', payment }, [], 401, 'not_signed_in', /.+/, false)
  })

  it('refuses a model whose input does not take the data set, naming both', async () => {
    const files = await savedModelFiles(penguinModel(7))
    await expectRefused(
      { name: 'wrong shape', kernelBundle: 'default', payment, data: { labelColumn: 'Species', dropIncompleteRows: true } },
      [...modelParts(files), { field: 'data', name: 'penguins.csv', bytes: penguinsCsv }],
      400,
      'model_data_mismatch',
      "the model's input has shape [7] (7 values per example), but penguins.csv (10 features) gives 10 values per example",
    )
  })

  it('refuses IDX labels out of the model\'s range, naming the example', async () => {
    const digits = tf.sequential({ layers: [tf.layers.flatten({ name: 'f', inputShape: [4, 4] }), tf.layers.dense({ name: 'logits', units: 10 })] })
    const files = await savedModelFiles(digits)
    const images = encodeIdx({ shape: [20, 4, 4], data: new Uint8Array(320).map((_, i) => i % 256) })
    const labels = encodeIdx({ shape: [20], data: new Uint8Array(20).map((_, i) => (i === 13 ? 12 : i % 10)) })
    await expectRefused(
      { name: 'bad labels', kernelBundle: 'default', payment },
      [...modelParts(files), { field: 'images', name: 'images.idx', bytes: images }, { field: 'labels', name: 'labels.idx', bytes: labels }],
      400,
      'invalid_dataset',
      'labels: example 13 has label 12, but the model has 10 classes (0 to 9)',
    )
  })

  it('refuses a model.json whose weight file is missing', async () => {
    const files = await savedModelFiles(penguinModel())
    await expectRefused(
      { name: 'no weights', kernelBundle: 'default', payment, data: { labelColumn: 'Species', dropIncompleteRows: true } },
      [{ field: 'model', name: 'model.json', bytes: files.modelJson }, { field: 'data', name: 'penguins.csv', bytes: penguinsCsv }],
      400,
      'invalid_model',
      'weight file "model.weights.bin" named in model.json was not uploaded',
    )
  })

  it('refuses a CSV with an empty cell, naming its row and column', async () => {
    const files = await savedModelFiles(penguinModel())
    await expectRefused(
      { name: 'holes', kernelBundle: 'default', payment, data: { labelColumn: 'Species' } },
      [...modelParts(files), { field: 'data', name: 'penguins.csv', bytes: penguinsCsv }],
      400,
      'invalid_dataset',
      'penguins.csv: row 5, column "Beak Length (mm)": empty cell (fill it in, or drop incomplete rows)',
    )
  })

  it('refuses a model.json over its size limit with 413, naming the file', async () => {
    await expectRefused({ name: 'huge', kernelBundle: 'default', payment }, [{ field: 'model', name: 'model.json', bytes: new Uint8Array(4 * 1024 * 1024 + 1) }], 413, 'file_too_large', 'model file "model.json" is larger than 4 MiB, the most accepted')
  })

  it('refuses a convolutional model in exact mode, and a draft with bad fields, naming them', async () => {
    const conv = tf.sequential({
      layers: [tf.layers.conv2d({ name: 'conv', filters: 2, kernelSize: 3, inputShape: [4, 4, 1] }), tf.layers.flatten({ name: 'f' }), tf.layers.dense({ name: 'o', units: 10 })],
    })
    const files = await savedModelFiles(conv)
    const images = encodeIdx({ shape: [20, 4, 4], data: new Uint8Array(320) })
    const labels = encodeIdx({ shape: [20], data: new Uint8Array(20) })
    await expectRefused(
      { name: 'conv', kernelBundle: 'exact', payment },
      [...modelParts(files), { field: 'images', name: 'images.idx', bytes: images }, { field: 'labels', name: 'labels.idx', bytes: labels }],
      400,
      'unsupported_by_bundle',
      /^layer "conv" \(Conv2D\) needs Conv2D, Conv2DBackpropFilter, Conv2DBackpropInput, which exact mode has no exact form for yet/,
    )
    await expectRefused({ name: '', kernelBundle: 'fast', payment: { ...payment, budget: '1' } }, [], 400, 'invalid_job_draft', /^job: name: .*; kernelBundle: .*; payment.budget: budget must pay for at least one unit$/)
    await expectRefused('{not json', [], 400, 'invalid_job_draft', /^the job field is not JSON/)
    await expectRefused({ name: 'nothing', kernelBundle: 'default', payment }, [], 400, 'missing_file', /^no model file/)
  })
})

describe('POST /api/jobs with sign-in and small limits', () => {
  let app: FastifyInstance
  let db: Database
  let dir: string

  beforeAll(async () => {
    db = await openPglite()
    await migrate(db)
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-jobcreation-'))
    const jobs = new JobService({ db, blobs: new BlobStore(dir), domain: TEST_DOMAIN })
    app = Fastify()
    // The coordinator's own error handler maps CoordinatorError the same way (http.ts).
    app.setErrorHandler((error, _req, reply) => {
      if (error instanceof CoordinatorError) return reply.status(error.status).send({ error: error.name, code: error.code, message: error.message })
      return reply.status(500).send({ message: String(error) })
    })
    await app.register(jobCreationRoutes, { jobs, signedIn: async () => bob.address, limits: { fileBytes: 1000 } })
  })

  afterAll(async () => {
    await app?.close()
    await db?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('refuses a job whose requester is not the signed-in address, before reading any file', async () => {
    const response = await app.inject({ method: 'POST', url: '/api/jobs', ...(await multipart({ preset: 'mnist-mlp', name: 'x', kernelBundle: 'default', payment })) })
    expect(response.statusCode).toBe(403)
    expect(response.json()).toMatchObject({ code: 'not_requester', message: `signed in as ${bob.address}, but the job's payment.requester is ${alice.address}: sign in with the requester's wallet` })
  })

  it('answers 413 naming a file over the per-file limit, and stores nothing', async () => {
    const draft = { name: 'big', kernelBundle: 'default', payment: { ...payment, requester: bob.address }, data: { labelColumn: 'Species' } }
    const response = await app.inject({
      method: 'POST',
      url: '/api/jobs',
      ...(await multipart(draft, [{ field: 'model', name: 'model.json', bytes: '{}' }, { field: 'data', name: 'penguins.csv', bytes: penguinsCsv }])),
    })
    expect(response.statusCode).toBe(413)
    expect(response.json()).toMatchObject({ code: 'file_too_large', message: 'data file "penguins.csv" is larger than 1000 bytes, the most accepted' })
    expect(await readdir(dir)).toEqual([])
  })
})
