import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import * as tf from '@tensorflow/tfjs'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { createPublicClient, http, type Address } from 'viem'
import { privateKeyToAccount, generatePrivateKey } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tabTokenAbi } from '../contracts/generated/index.ts'
import { CoordinatorClient, CoordinatorRequestError } from '../src/client/coordinatorClient.ts'
import { csvToDataset } from '../src/data/csv.ts'
import type { ChainInfo, Hash } from '../src/protocol/index.ts'
import { ARTIFACTS, ROOT, inOrder, launchChromium, startSystem, tabOrder, unlabelledControls, until, type SystemUnderTest } from './harness.ts'

const run = promisify(execFile)
const PENGUINS = join(ROOT, 'datasets/penguins/penguins.csv')

/** Writes what tfjs `model.save()` writes for a small dense classifier: model.json and one weights file. */
async function saveDenseModel(dir: string, inputs: number, classes: number): Promise<{ modelJson: string; weights: string }> {
  const model = tf.sequential({
    layers: [tf.layers.dense({ name: 'hidden', units: 16, activation: 'relu', inputShape: [inputs] }), tf.layers.dense({ name: 'out', units: classes })],
  })
  await mkdir(dir, { recursive: true })
  const modelJson = join(dir, 'model.json')
  const weights = join(dir, 'weights.bin')
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      await writeFile(weights, new Uint8Array(artifacts.weightData as ArrayBuffer))
      await writeFile(
        modelJson,
        JSON.stringify({ format: 'layers-model', modelTopology: artifacts.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }] }),
      )
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
  model.dispose()
  return { modelJson, weights }
}

/**
 * The requester's whole path in real Chromium on the running system (local chain, coordinator, site):
 * post jobs from a preset and from an uploaded tfjs model and CSV, escrow the budget from a burner wallet,
 * watch two contributor tabs train the upload, download the model and load it with stock tfjs in another
 * process, cancel as the owner and take the rest of the escrow back. Every page is watched for console
 * errors.
 */
describe('a requester posts jobs, downloads the model, cancels and is refunded', () => {
  let system: SystemUnderTest
  let browser: Browser
  let client: CoordinatorClient
  let chain: ChainInfo
  let requester: BrowserContext
  let page: Page
  let owner: Address
  let presetJob: Hash
  let files: string
  const tabs: Page[] = []
  const consoleErrors: string[] = []

  const watch = (p: Page, name: string) => {
    p.on('pageerror', (e) => consoleErrors.push(`${name}: ${e.message}`))
    p.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${name}: ${m.text()}`)
    })
    return p
  }

  /** The new-job form with your own model and the penguins CSV, classes in the Species column. */
  const fillPenguinUpload = async (model: { modelJson: string; weights: string }) => {
    await page.goto(`${system.url}/new.html`)
    await page.check('#source-upload')
    await page.setInputFiles('#model-files', [model.modelJson, model.weights])
    await page.selectOption('#data-kind', 'csv')
    await page.setInputFiles('#data-file', PENGUINS)
    await page.fill('#label-column', 'Species')
    await page.check('#drop-incomplete')
  }

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    // Short epochs so that a cancelled job's last charges post and its escrow closes within the test.
    system = await startSystem({ TABTRAIN_EPOCH_SECONDS: '2', TABTRAIN_CHALLENGE_WINDOW_SECONDS: '4' })
    browser = await launchChromium()
    client = new CoordinatorClient(system.url)
    chain = (await client.info()).chain!
    files = await mkdtemp(join(tmpdir(), 'tabtrain-requester-'))
    requester = await browser.newContext({ viewport: { width: 1100, height: 2200 } })
    page = watch(await requester.newPage(), 'new job page')
    await page.goto(`${system.url}/new.html`)
    owner = (await until(() => page.textContent('#wallet [data-testid="wallet-address"]'), (a) => /^0x[0-9a-fA-F]{40}$/.test(a ?? ''), 30_000, 'burner address')) as Address
    await page.click('#faucet')
    await until(() => page.textContent('#wallet-balance'), (s) => /Balance: 100 /.test(s ?? ''), 60_000, 'test tokens from the faucet')
  })

  afterAll(async () => {
    await browser?.close()
    await system?.stop()
    if (files) await rm(files, { recursive: true, force: true })
  })

  it('creates a job from a preset and escrows its budget, with the transactions shown', async () => {
    const before = (await client.listJobs()).length
    await page.check('#preset-shakespeare-char')
    expect(await page.inputValue('#job-name')).toBe('Tiny Shakespeare, character model')
    // Enough rounds that the job is still running when its owner cancels it below: its rounds follow the
    // pool, so two tabs close them as fast as they answer.
    await page.fill('#hp-rounds', '6')
    await page.fill('#hp-unitsPerRound', '2')
    await page.fill('#price', '0.5')
    await page.screenshot({ path: join(ARTIFACTS, 'new-job-preset.png'), fullPage: true })
    // Every control is named, and Tab walks the form in the order it reads.
    expect(await unlabelledControls(page)).toEqual([])
    const order = await tabOrder(page, 'create', 80)
    expect(inOrder(order, ['preset-shakespeare-char', 'job-name', 'hp-innerOptimizer', 'hp-rounds', 'price', 'budget', 'faucet', 'create']), `Tab order ${order.join(' ')}`).toBe(true)
    await page.click('#create')
    await page.waitForSelector('#done:not([hidden])', { timeout: 120_000 })
    expect(await page.locator('#steps li[data-state="failed"]').count()).toBe(0)
    expect(await page.locator('li.tx[data-kind="deposit"]').count()).toBe(1)
    presetJob = new URL((await page.getAttribute('#job-link', 'href'))!, system.url).searchParams.get('id') as Hash
    expect((await client.listJobs()).length).toBe(before + 1)
    const job = await until(() => client.job(presetJob), (j) => j.payment?.status === 'funded', 30_000, 'escrow seen by the coordinator')
    expect(job.spec.payment!.requester).toBe(owner)
    // 6 rounds × 2 units and up to a third more for checks, at 0.5 TTT: 16 × 0.5 = 8 TTT.
    expect(job.payment!.deposited).toBe(String(8n * 10n ** 18n))
  })

  it('refuses a model that does not fit the data, saying where, and stores nothing', async () => {
    const before = (await client.listJobs()).length
    // Penguins have 10 features after one-hot encoding the island and sex; this model takes 5.
    const wrong = await saveDenseModel(join(files, 'wrong'), 5, 3)
    await fillPenguinUpload(wrong)
    await page.click('#create')
    const message = await until(() => page.textContent('#form-error'), (s) => (s ?? '').length > 0, 60_000, 'an error message')
    expect(message).toMatch(/input/i)
    expect(message).toMatch(/10/)
    expect(message).toMatch(/5/)
    expect(await page.locator('li.tx').count()).toBe(0)
    expect((await client.listJobs()).length).toBe(before)
    // Chromium logs every 4xx answer to the console; this one is the refusal the test asked for.
    const refusal = consoleErrors.findIndex((e) => e.startsWith('new job page: Failed to load resource: the server responded with a status of 400'))
    expect(refusal).toBeGreaterThanOrEqual(0)
    consoleErrors.splice(refusal, 1)
  })

  it('creates a job from an uploaded model and CSV; two tabs train it; stock tfjs in another process loads the download at the accuracy the coordinator measured', async () => {
    const csv = csvToDataset(await readFile(PENGUINS), { labelColumn: 'Species', dropIncompleteRows: true })
    const model = await saveDenseModel(join(files, 'penguins'), csv.featureNames.length, csv.labelNames.length)
    await fillPenguinUpload(model)
    await page.fill('#job-name', 'Penguin species')
    await page.fill('#hp-learningRate', '0.01')
    await page.fill('#hp-batchSize', '16')
    await page.fill('#hp-rounds', '4')
    await page.fill('#hp-unitsPerRound', '2')
    await page.fill('#price', '0.1')
    await page.screenshot({ path: join(ARTIFACTS, 'new-job-upload.png'), fullPage: true })
    await page.click('#create')
    await page.waitForSelector('#done:not([hidden])', { timeout: 120_000 })
    const jobId = new URL((await page.getAttribute('#job-link', 'href'))!, system.url).searchParams.get('id') as Hash
    const spec = (await client.job(jobId)).spec
    expect(spec.data.labelNames).toEqual(['Adelie', 'Chinstrap', 'Gentoo'])

    for (let i = 0; i < 2; i++) {
      const context = await browser.newContext({ viewport: { width: 1100, height: 1500 } })
      const tab = watch(await context.newPage(), `contributor ${i}`)
      await tab.goto(`${system.url}/contribute.html?job=${jobId}`)
      await tab.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
      tabs.push(tab)
    }
    for (const tab of tabs) await tab.click('#start')
    const progress = await until(() => client.progress(jobId), (p) => p.status === 'finished', 8 * 60_000, 'the uploaded job finished')
    expect(progress.contributors.length).toBe(2)

    await page.goto(`${system.url}/job.html?id=${jobId}`)
    await until(() => page.getAttribute('#download-card', 'data-round'), (r) => r === '3', 30_000, 'latest round offered for download')
    const modelUrl = new URL((await page.getAttribute('#download-model', 'href'))!, system.url).href
    expect(await page.textContent('#download-hash')).toBe(progress.history.find((r) => r.round === 3)!.outputHash)
    await page.screenshot({ path: join(ARTIFACTS, 'job-uploaded-trained.png'), fullPage: true })
    expect(await unlabelledControls(page)).toEqual([])

    const { stdout } = await run('npx', ['tsx', 'coordinator/testing/loadModel.ts', modelUrl, system.url, jobId], { cwd: ROOT, timeout: 120_000 })
    const loaded = JSON.parse(stdout.trim().split('\n').at(-1)!) as { accuracy: number; count: number }
    const measured = progress.history.find((r) => r.round === 3)!.heldOutAccuracy
    expect(loaded.count).toBe(spec.data.heldOut.count)
    expect(loaded.accuracy).toBeCloseTo(measured, 6)
    expect(loaded.accuracy).toBeGreaterThan(0.7)
  })

  it('samples text from the character model once a round closes', async () => {
    for (const tab of tabs) {
      await tab.goto(`${system.url}/contribute.html?job=${presetJob}`)
      await tab.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
      await tab.click('#start')
    }
    await until(() => client.progress(presetJob), (p) => p.history.length >= 1, 8 * 60_000, 'a round of the character model')
    for (const tab of tabs) await tab.click('#stop')
    await page.goto(`${system.url}/job.html?id=${presetJob}`)
    await page.waitForSelector('#sample-card:not([hidden])')
    await until(() => page.isDisabled('#sample-button'), (d) => !d, 30_000, 'sampling enabled')
    await page.fill('#sample-prompt', 'ROMEO:')
    await page.click('#sample-button')
    await until(() => page.textContent('#sample-status'), (s) => /Sampled from the checkpoint/.test(s ?? ''), 120_000, 'sampled text')
    const text = await page.inputValue('#sample-output')
    expect(text.startsWith('ROMEO:')).toBe(true)
    expect([...text].length).toBe('ROMEO:'.length + 200)
    const vocabulary = new Set((await client.job(presetJob)).spec.data.vocabulary)
    expect([...text].every((c) => vocabulary.has(c))).toBe(true)
  })

  it('lets only the owner cancel, and refunds the owner what the escrow did not spend', async () => {
    // Someone else, signed in with their own key, is refused by the coordinator...
    const stranger = privateKeyToAccount(generatePrivateKey())
    const session = await client.signIn(stranger)
    const refusal = await client.cancelJob(presetJob, session.token).catch((e: unknown) => e)
    expect(refusal).toBeInstanceOf(CoordinatorRequestError)
    expect((refusal as CoordinatorRequestError).code).toBe('not_owner')
    // ...and a stranger's page offers nothing to press.
    const other = watch(await (await browser.newContext()).newPage(), 'stranger job page')
    await other.goto(`${system.url}/job.html?id=${presetJob}`)
    await other.waitForSelector('#owner-not-you:not([hidden])', { timeout: 30_000 })
    expect(await other.isDisabled('#owner-cancel')).toBe(true)
    await other.context().close()

    const publicClient = createPublicClient({ transport: http(chain.rpcUrl) })
    const balance = () => publicClient.readContract({ address: chain.contracts.token, abi: tabTokenAbi, functionName: 'balanceOf', args: [owner] })
    await page.goto(`${system.url}/job.html?id=${presetJob}`)
    await page.waitForSelector('#owner-card:not([hidden])')
    await until(() => page.isDisabled('#owner-cancel'), (d) => !d, 30_000, 'cancel enabled for the owner')
    page.once('dialog', (dialog) => void dialog.accept())
    await page.click('#owner-cancel')
    const closed = await until(() => client.job(presetJob), (j) => j.status === 'cancelled' && j.payment?.status === 'closed', 90_000, 'escrow closed after cancel')
    const remaining = BigInt(closed.payment!.refundable)
    expect(remaining).toBe(BigInt(closed.payment!.deposited) - BigInt(closed.payment!.charged))
    // The round the tabs trained was paid for, so less than the whole deposit comes back.
    expect(BigInt(closed.payment!.charged)).toBeGreaterThan(0n)
    await page.waitForSelector('#owner-refund:not([hidden])', { timeout: 30_000 })
    const start = await balance()
    await page.click('#owner-refund')
    await until(() => page.textContent('#owner-status'), (s) => /Refunded/.test(s ?? ''), 60_000, 'refund confirmed')
    expect((await balance()) - start).toBe(remaining)
    await page.waitForSelector('#owner-refund', { state: 'hidden' })
    await page.screenshot({ path: join(ARTIFACTS, 'job-cancelled-refunded.png'), fullPage: true })
    expect(consoleErrors).toEqual([])
  })
})
