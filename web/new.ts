import { formatUnits } from 'viem'
import { CoordinatorClient, CoordinatorRequestError } from '../src/client/coordinatorClient.ts'
import { CUSTOM_JOB_TRAINING, KERNEL_BUNDLE_HELP, PRESETS, parseJobDraft, type ChainInfo, type CoordinatorInfo, type PresetInfo } from '../src/protocol/index.ts'
import { depositToEscrow, tokenBalanceOf, type EscrowStep } from './lib/escrow.ts'
import { FormFieldError, HYPERPARAMETERS, readAmount, readTraining, suggestedBudget, unitsPaidFor, type TrainingKey } from './lib/jobForm.ts'
import { coordinatorUrlFromPage } from './lib/liveProgress.ts'
import { showPageError } from './lib/pageErrors.ts'
import { signIn } from './lib/signIn.ts'
import { explainError } from './lib/transactions.ts'
import { createWalletPicker, type WalletPicker } from './lib/walletPicker.ts'

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T
const input = (id: string) => $<HTMLInputElement>(id)
const client = new CoordinatorClient(coordinatorUrlFromPage())

interface PageState {
  info: CoordinatorInfo
  chain: ChainInfo
  presets: PresetInfo[]
  wallet: WalletPicker
}

const TOKEN_DECIMALS = 18

function selectedSource(): string {
  return document.querySelector<HTMLInputElement>('input[name="source"]:checked')?.value ?? ''
}

function selectedBundle(): 'default' | 'exact' {
  return document.querySelector<HTMLInputElement>('input[name="bundle"]:checked')?.value === 'exact' ? 'exact' : 'default'
}

function renderHyperparameters() {
  $('hyperparameters').replaceChildren(
    ...HYPERPARAMETERS.map((field) => {
      const box = document.createElement('div')
      box.className = 'field'
      const label = document.createElement('label')
      label.htmlFor = `hp-${field.key}`
      label.textContent = field.label
      let control: HTMLInputElement | HTMLSelectElement
      if (field.kind === 'choice') {
        control = document.createElement('select')
        for (const choice of field.choices!) control.append(new Option(choice, choice))
      } else {
        control = document.createElement('input')
        control.type = 'number'
        control.step = field.kind === 'integer' ? '1' : 'any'
        if (field.min !== undefined) control.min = String(field.min)
        if (field.max !== undefined) control.max = String(field.max)
        if (field.placeholder) control.placeholder = field.placeholder
      }
      control.id = `hp-${field.key}`
      control.name = field.key
      const help = document.createElement('p')
      help.className = 'help'
      help.id = `hp-${field.key}-help`
      help.textContent = field.help
      control.setAttribute('aria-describedby', help.id)
      box.append(label, control, help)
      return box
    }),
  )
}

function fillTraining(values: Partial<Record<TrainingKey, string | number>>) {
  for (const field of HYPERPARAMETERS) {
    const value = values[field.key]
    // An optional field the new defaults leave out is emptied, so it does not keep another preset's value.
    if (value !== undefined || field.optional) ($(`hp-${field.key}`) as HTMLInputElement | HTMLSelectElement).value = value === undefined ? '' : String(value)
  }
}

function readTrainingFields() {
  const raw = {} as Record<TrainingKey, string>
  for (const field of HYPERPARAMETERS) raw[field.key] = ($(`hp-${field.key}`) as HTMLInputElement | HTMLSelectElement).value
  return readTraining(raw)
}

function renderPresets(state: PageState) {
  const list = $('preset-list')
  list.replaceChildren(
    ...state.presets.map((preset, i) => {
      const label = document.createElement('label')
      label.className = 'choice'
      const radio = document.createElement('input')
      radio.type = 'radio'
      radio.name = 'source'
      radio.value = `preset:${preset.id}`
      radio.id = `preset-${preset.id}`
      radio.checked = i === 0
      const text = document.createElement('span')
      const title = document.createElement('strong')
      title.textContent = preset.title
      const description = document.createElement('span')
      description.className = 'muted small'
      description.textContent = preset.description
      text.append(title, document.createElement('br'), description)
      label.append(radio, text)
      return label
    }),
  )
}

function currentPreset(state: PageState): PresetInfo | null {
  const source = selectedSource()
  return source.startsWith('preset:') ? (state.presets.find((p) => `preset:${p.id}` === source) ?? null) : null
}

/** Follows the source choice: the preset's defaults and name, or the upload fields. */
function onSourceChange(state: PageState) {
  const preset = currentPreset(state)
  $('upload-fields').hidden = preset !== null
  if (preset) {
    fillTraining(preset.training)
    input('job-name').value = preset.title
    input('job-description').value = preset.description
    const exact = input('bundle-exact')
    exact.disabled = !preset.bundles.includes('exact')
    exact.closest('label')!.title = exact.disabled ? `${preset.title} has layers without exact kernels: the default bundle only.` : ''
    if (exact.disabled && exact.checked) document.querySelector<HTMLInputElement>('input[name="bundle"][value="default"]')!.checked = true
  } else {
    fillTraining(CUSTOM_JOB_TRAINING)
    input('bundle-exact').disabled = false
    if (input('job-name').value === '' || state.presets.some((p) => p.title === input('job-name').value)) {
      input('job-name').value = 'My model'
      input('job-description').value = ''
    }
  }
  onDataKindChange()
  updateBudgetHelp()
}

function onDataKindChange() {
  const kind = $<HTMLSelectElement>('data-kind').value
  $('data-file-field').hidden = kind === 'idx'
  $('idx-fields').hidden = kind !== 'idx'
  $('label-column-field').hidden = kind !== 'csv'
  $('context-field').hidden = kind !== 'text'
  $('data-file-help').textContent =
    kind === 'csv'
      ? 'The first row names the columns. Number columns are standardised; any other column is one-hot encoded (at most 32 values).'
      : 'UTF-8 text; each distinct character becomes one symbol (at most 256).'
}

function updateBudgetHelp() {
  const help = $('budget-help')
  try {
    const training = readTrainingFields()
    const price = readAmount('price', 'Price per unit', input('price').value, TOKEN_DECIMALS)
    const suggested = suggestedBudget(price, Number(training.rounds), Number(training.unitsPerRound))
    if (!input('budget').dataset.edited) input('budget').value = formatUnits(suggested, TOKEN_DECIMALS)
    const budget = readAmount('budget', 'Budget', input('budget').value, TOKEN_DECIMALS)
    help.textContent = `Pays for ${unitsPaidFor(budget, price)} units; the job needs at least ${Number(training.rounds) * Number(training.unitsPerRound)} plus spot checks (up to 1 in 3). The presets' rounds follow the live pool (one unit per tab a round), so with more tabs than K the budget, not the round count, ends the job. Escrowed before any unit is issued; what is not spent comes back.`
  } catch (error) {
    help.textContent = error instanceof Error ? error.message : String(error)
  }
}

function showError(message: string, field?: string) {
  const box = $('form-error')
  box.hidden = false
  box.textContent = message
  for (const el of document.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid')
  if (field) {
    const el = document.getElementById(field)
    el?.setAttribute('aria-invalid', 'true')
    el?.focus()
  }
}

function step(text: string, state: 'running' | 'done' | 'failed' = 'running'): HTMLLIElement {
  const li = document.createElement('li')
  li.textContent = text
  li.dataset.state = state
  $('steps').append(li)
  return li
}

function finish(li: HTMLLIElement, text: string, state: 'done' | 'failed' = 'done') {
  li.textContent = text
  li.dataset.state = state
}

/** The draft and the files, exactly as the coordinator's POST /api/jobs takes them (README, HTTP API). */
function buildUpload(state: PageState, requester: string): FormData {
  const training = readTrainingFields()
  const price = readAmount('price', 'Price per unit', input('price').value, TOKEN_DECIMALS)
  const budget = readAmount('budget', 'Budget', input('budget').value, TOKEN_DECIMALS)
  if (budget < price) throw new FormFieldError('budget', 'Budget: must pay for at least one unit')
  const name = input('job-name').value.trim()
  if (!name) throw new FormFieldError('job-name', 'Job name: required')
  const preset = currentPreset(state)
  const form = new FormData()
  const draft: Record<string, unknown> = {
    name,
    description: input('job-description').value.trim(),
    training,
    kernelBundle: selectedBundle(),
    payment: { pricePerUnit: String(price), budget: String(budget), requester },
  }
  if (preset) {
    draft.preset = preset.id
  } else {
    const modelFiles = [...(input('model-files').files ?? [])]
    const modelJson = modelFiles.find((f) => f.name.endsWith('.json'))
    if (!modelJson) throw new FormFieldError('model-files', 'Model files: select model.json and its weight files')
    const kind = $<HTMLSelectElement>('data-kind').value
    draft.data =
      kind === 'csv'
        ? { labelColumn: input('label-column').value.trim(), ...(input('drop-incomplete').checked ? { dropIncompleteRows: true } : {}) }
        : kind === 'text'
          ? { contextLength: Number(input('context-length').value) }
          : {}
    if (kind === 'csv' && !input('label-column').value.trim()) throw new FormFieldError('label-column', 'Label column: name the column that holds the classes')
    form.append('model', modelJson, modelJson.name)
    for (const file of modelFiles) if (file !== modelJson) form.append('weights', file, file.name)
    if (kind === 'idx') {
      const images = input('idx-images').files?.[0]
      const labels = input('idx-labels').files?.[0]
      if (!images) throw new FormFieldError('idx-images', 'IDX images: choose a file')
      if (!labels) throw new FormFieldError('idx-labels', 'IDX labels: choose a file')
      form.append('images', images, images.name)
      form.append('labels', labels, labels.name)
    } else {
      const data = input('data-file').files?.[0]
      if (!data) throw new FormFieldError('data-file', 'Data file: choose a file')
      form.append('data', data, data.name)
    }
  }
  const checked = parseJobDraft(draft)
  if (!checked.ok) throw new FormFieldError('job-name', `The job is not valid: ${checked.issues.join('; ')}`)
  // The draft goes first: the coordinator reads it before it accepts any file.
  const withDraft = new FormData()
  withDraft.append('job', JSON.stringify(draft))
  for (const [key, value] of form.entries()) withDraft.append(key, value)
  return withDraft
}

async function create(state: PageState) {
  $('form-error').hidden = true
  $('steps').replaceChildren()
  $('done').hidden = true
  const wallet = state.wallet.current
  if (!wallet?.walletClient) {
    showError('Connect a wallet first: the job is paid from it.')
    return
  }
  const walletClient = wallet.walletClient
  const button = $<HTMLButtonElement>('create')
  button.disabled = true
  let current: HTMLLIElement | null = null
  try {
    const upload = buildUpload(state, wallet.address)
    current = step('Signing in with your wallet (a message, no gas)…')
    const session = await signIn(client, wallet)
    finish(current, `Signed in as ${session.address}.`)
    current = step('Uploading and checking the files…')
    const created = await client.createJob(upload, session.token)
    finish(current, `Job created: ${created.jobId}`)
    const budget = BigInt(created.spec.payment!.budget)
    current = step(`Escrowing ${formatUnits(budget, TOKEN_DECIMALS)} ${state.chain.token.symbol}: confirm in the wallet…`)
    const txList = document.createElement('ul')
    txList.className = 'small'
    const onSent = (sent: EscrowStep) => {
      const li = document.createElement('li')
      li.className = 'tx'
      li.dataset.kind = sent.kind
      li.dataset.txHash = sent.hash
      li.textContent = `${sent.kind === 'approve' ? 'Approval' : 'Deposit'}: ${sent.hash}`
      txList.append(li)
    }
    current.after(txList)
    await depositToEscrow(state.chain, walletClient, created.jobId, budget, onSent)
    finish(current, `Escrowed ${formatUnits(budget, TOKEN_DECIMALS)} ${state.chain.token.symbol}.`)
    $<HTMLAnchorElement>('job-link').href = `./job.html?id=${created.jobId}`
    $('done').hidden = false
    $<HTMLAnchorElement>('job-link').focus()
  } catch (error) {
    if (current) finish(current, `${current.textContent?.replace(/…$/, '')}: failed`, 'failed')
    if (error instanceof FormFieldError) showError(error.message, error.field)
    else if (error instanceof CoordinatorRequestError) showError(`${error.message} (${error.code})`)
    else showError(explainError(error, { token: state.chain.token, chainTime: null }))
  } finally {
    button.disabled = false
    void showBalance(state)
  }
}

async function showBalance(state: PageState) {
  const wallet = state.wallet.current
  if (!wallet) return
  const balance = await tokenBalanceOf(state.chain, wallet.address).catch(() => null)
  $('wallet-balance').textContent = balance === null ? '' : `Balance: ${formatUnits(balance, TOKEN_DECIMALS)} ${state.chain.token.symbol}`
  $('faucet').hidden = !state.chain.faucet
}

async function main() {
  renderHyperparameters()
  const info = await client.info()
  const presets = [...PRESETS]
  if (!info.chain) {
    showPageError($('job-form'), {
      title: 'This coordinator runs without a chain',
      message: 'Jobs are paid from an on-chain escrow; this coordinator has no chain, so it cannot take new jobs.',
    })
    return
  }
  for (const el of document.querySelectorAll('.token-symbol')) el.textContent = info.chain.token.symbol
  $('bundle-default-help').textContent = KERNEL_BUNDLE_HELP.default
  $('bundle-exact-help').textContent = KERNEL_BUNDLE_HELP.exact
  const state: PageState = { info, chain: info.chain, presets, wallet: null as unknown as WalletPicker }
  state.wallet = createWalletPicker({ current: $('wallet'), options: $('wallet-options'), status: $('wallet-balance') }, info.chain, () => void showBalance(state))
  renderPresets(state)
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="source"]')) radio.addEventListener('change', () => onSourceChange(state))
  $('preset-list').addEventListener('change', () => onSourceChange(state))
  $('data-kind').addEventListener('change', onDataKindChange)
  $('hyperparameters').addEventListener('input', updateBudgetHelp)
  input('price').addEventListener('input', updateBudgetHelp)
  input('budget').addEventListener('input', () => {
    input('budget').dataset.edited = '1'
    updateBudgetHelp()
  })
  $('faucet').addEventListener('click', async () => {
    const wallet = state.wallet.current
    if (!wallet) return
    $('faucet').setAttribute('disabled', '')
    await client.faucet(wallet.address).catch((error: Error) => showError(error.message))
    $('faucet').removeAttribute('disabled')
    void showBalance(state)
  })
  $('job-form').addEventListener('submit', (event) => {
    event.preventDefault()
    void create(state)
  })
  onSourceChange(state)
}

main().catch((error: Error) => {
  showPageError($('job-form'), { title: 'Cannot reach the coordinator', message: error.message })
})
