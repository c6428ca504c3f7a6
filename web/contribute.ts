import * as Comlink from 'comlink'
import { parseUnits, type Address, type Hex } from 'viem'
import { rewardDistributorAbi, stakeManagerAbi, tabTokenAbi } from '../contracts/generated/index.ts'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { verificationPolicy, verifyRewardProof, type ChainInfo, type Hash, type JobProgress, type JobSummary, type RewardsView } from '../src/protocol/index.ts'
import type { TrainingWorkerApi } from '../src/worker/api.ts'
import { Scheduler, type SchedulerEvent, type UnitReport } from '../src/worker/scheduler.ts'
import { ETHER, formatToken, formatUnits, formatWhen, showAmount } from './lib/amounts.ts'
import { createChainReader, type ChainReader } from './lib/chainClient.ts'
import { createProgressChart } from './lib/progressChart.ts'
import { coordinatorUrlFromPage, watchProgress } from './lib/liveProgress.ts'
import { createReputationCard } from './lib/reputationCard.ts'
import { explainError, transact } from './lib/transactions.ts'
import {
  BURNER_CHOICE,
  WALLETCONNECT_CHOICE,
  connectBurner,
  connectInjected,
  connectWalletConnect,
  discoverInjectedWallets,
  injectedChoice,
  rememberChoice,
  restoreWallet,
  walletConnectConfigured,
  WalletNotFoundError,
  type ChainWalletClient,
  type ConnectedWallet,
  type WalletChoice,
  type WalletEvent,
} from './lib/wallets.ts'

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T
const client = new CoordinatorClient(coordinatorUrlFromPage())
const chart = createProgressChart($('chart'))
const reputation = createReputationCard($('reputation-card'), client)
let unitsDone = 0
let unitsRefused = 0

/** How often the wallet's balances and rewards are read again without any event to prompt it. */
const REFRESH_MS = 4000

function log(message: string, kind: 'info' | 'good' | 'bad' = 'info') {
  const item = document.createElement('li')
  item.textContent = `${new Date().toLocaleTimeString()}  ${message}`
  if (kind !== 'info') item.className = kind
  const list = $('log')
  list.prepend(item)
  while (list.children.length > 200) list.lastChild?.remove()
}

function showProgress(progress: JobProgress) {
  chart.update(progress)
  $('round').textContent = progress.status === 'finished' ? `${progress.round} (done)` : `${progress.round} / ${progress.rounds}`
  const last = progress.history.at(-1)
  const metrics = last ? { acc: last.heldOutAccuracy, loss: last.heldOutLoss } : progress.initial ? { acc: progress.initial.heldOutAccuracy, loss: progress.initial.heldOutLoss } : null
  $('accuracy').textContent = metrics ? `${(metrics.acc * 100).toFixed(1)}%` : '–'
  $('loss').textContent = metrics ? metrics.loss.toFixed(3) : '–'
}

/** The last units from this tab, newest first: where the wall time of a unit goes. */
const TIMING_ROWS = 10
let timingRows = 0
function showTimings(report: UnitReport) {
  const ms = (x: number) => `${x.toFixed(0)} ms`
  const t = report.timings
  const body = $('timings').querySelector('tbody')!
  if (timingRows === 0) body.replaceChildren()
  const row = document.createElement('tr')
  for (const text of [`${report.round} · ${report.unit}`, ms(t.fetchMs), ms(t.trainMs), ms(t.hashMs), ms(t.signMs), ms(t.uploadMs), ms(t.totalMs), report.meanLoss.toFixed(4)]) {
    const cell = document.createElement('td')
    cell.textContent = text
    row.append(cell)
  }
  body.prepend(row)
  timingRows++
  while (body.children.length > TIMING_ROWS) body.lastChild?.remove()
}

function onEvent(event: SchedulerEvent) {
  switch (event.type) {
    case 'state':
      $('status').textContent = event.state
      $<HTMLButtonElement>('start').disabled = event.state === 'running' || event.state === 'stopping' || event.state === 'finished'
      $<HTMLButtonElement>('stop').disabled = event.state !== 'running'
      if (event.state === 'running') showStartNote(null)
      if (event.state === 'finished') log('The job has finished: no more units.', 'good')
      break
    case 'leased':
      stakeRechecks.clear()
      log(`Leased round ${event.lease.unit.round} unit ${event.lease.unit.unit}`)
      break
    case 'unit-accepted':
      unitsDone++
      $('units-done').textContent = String(unitsDone)
      showTimings(event.report)
      log(`Round ${event.report.round} unit ${event.report.unit} accepted (${event.report.timings.totalMs.toFixed(0)} ms)${event.report.roundClosed ? ', closing the round' : ''}`, 'good')
      void refresh()
      break
    case 'unit-refused':
      unitsRefused++
      $('units-refused').textContent = String(unitsRefused)
      log(`Round ${event.round} unit ${event.unit} refused: ${event.message}`, 'bad')
      break
    case 'waiting':
      log(`Waiting ${event.retryAfterMs} ms: ${event.reason}`)
      break
    case 'error':
      log(`${event.message}; retrying in ${(event.retryAfterMs / 1000).toFixed(1)} s`, 'bad')
      break
    case 'stopped':
      log(`Stopped: ${event.reason}`, 'bad')
      if (event.code === 'stake_required') void onStakeRequired(event.reason)
      else if (event.code === 'address_banned') {
        showStartNote(`${event.reason} This address gets no more units: choose another wallet to contribute.`)
        void refresh().catch(() => {})
      } else showStartNote(event.reason)
      break
  }
}

/** A refusal under the Start button that a person has to act on; null hides it. */
function showStartNote(message: string | null, link?: { href: string; text: string }) {
  const note = $('start-note')
  note.hidden = message === null
  note.replaceChildren(message ?? '')
  if (message !== null && link) note.append(' ', Object.assign(document.createElement('a'), { href: link.href, textContent: link.text }))
}

// ---------------------------------------------------------------------------------------------------
// Page state

interface Settlement {
  chain: ChainInfo
  reader: ChainReader
}

let settlement: Settlement | null = null
let wallet: ConnectedWallet | null = null
let unsubscribeWallet: () => void = () => {}
let scheduler: Scheduler | null = null
let makeScheduler: ((w: ConnectedWallet) => Scheduler) | null = null
/** The job this tab works on. */
let jobId: Hash | null = null
/** One wallet switch or transaction at a time: both change what the other would act on. */
let busy = false
/** The last rewards view read for the current wallet, which the Claim button acts on. */
let lastRewards: { address: string; view: RewardsView; claimed: bigint; chainTime: number; frozenAt: number } | null = null
const autoFauceted = new Set<string>()
/** Burners for which a stake_required refusal already sent the page to the faucet once (it stakes the minimum). */
const stakeFauceted = new Set<string>()
/** The faucet request in flight, if any: a Start that meets stake_required waits for it. */
let faucetRun: Promise<void> | null = null

const token = () => settlement?.chain.token ?? null
const chainTime = () => lastRewards?.chainTime ?? null

function setBusy(value: boolean) {
  busy = value
  updateButtons()
}

function walletStatus(message: string, kind: 'info' | 'good' | 'bad' = 'info') {
  const el = $('wallet-status')
  el.textContent = message
  el.className = kind === 'info' ? 'muted' : kind
}

function status(id: string, message: string, kind: 'info' | 'good' | 'bad' = 'info', txHash?: Hex) {
  const el = $(id)
  el.className = kind === 'info' ? 'muted' : kind
  el.replaceChildren(message)
  if (txHash) {
    const hash = document.createElement('span')
    hash.className = 'tx'
    hash.textContent = ` ${txHash}`
    el.append(hash)
    el.dataset.txHash = txHash
  } else {
    delete el.dataset.txHash
  }
}

// ---------------------------------------------------------------------------------------------------
// Wallet card

function iconOf(choice: WalletChoice): HTMLElement {
  const box = document.createElement('span')
  box.className = 'wallet-icon'
  box.setAttribute('aria-hidden', 'true')
  if (choice.icon) {
    const img = document.createElement('img')
    img.src = choice.icon
    img.alt = ''
    box.append(img)
  } else {
    box.textContent = choice.name.slice(0, 1)
  }
  return box
}

function showCurrentWallet(w: ConnectedWallet) {
  const current = $('wallet-current')
  current.dataset.walletKind = w.kind
  current.dataset.walletId = w.id
  $('wallet-icon').replaceWith(Object.assign(iconOf(w), { id: 'wallet-icon' }))
  $('wallet-name').textContent = w.name
  $('address').textContent = w.address
  renderWalletOptions()
}

function renderWalletOptions() {
  const chainless = settlement === null
  const choices: WalletChoice[] = [
    BURNER_CHOICE,
    ...discoverInjectedWallets().wallets.map(injectedChoice),
    WALLETCONNECT_CHOICE,
  ]
  $('wallet-options').replaceChildren(
    ...choices.map((choice) => {
      const button = document.createElement('button')
      button.className = 'secondary'
      button.dataset.walletKind = choice.kind
      button.dataset.walletId = choice.id
      const selected = wallet?.kind === choice.kind && (choice.kind !== 'injected' || wallet.id === choice.id)
      button.setAttribute('aria-pressed', String(selected))
      button.append(choice.icon ? iconImage(choice.icon) : '', choice.name)
      if (chainless && choice.kind !== 'burner') {
        button.disabled = true
        button.dataset.unavailable = 'true'
        button.title = 'Rewards are off on this coordinator: only the burner is used.'
      } else if (choice.kind === 'walletconnect' && !walletConnectConfigured()) {
        button.title = 'WalletConnect needs a project id: set VITE_WALLETCONNECT_PROJECT_ID at build time.'
      }
      button.addEventListener('click', () => void switchWallet(choice))
      return button
    }),
  )
  updateButtons()
}

function iconImage(src: string): HTMLImageElement {
  const img = document.createElement('img')
  img.src = src
  img.alt = ''
  return img
}

async function connectChoice(choice: WalletChoice, interactive: boolean): Promise<ConnectedWallet> {
  const chain = settlement?.chain ?? null
  switch (choice.kind) {
    case 'burner':
      return connectBurner(chain)
    case 'injected': {
      const detail = discoverInjectedWallets().wallets.find((w) => w.info.rdns === choice.id)
      if (!detail) throw new WalletNotFoundError(`${choice.name} is no longer available in this browser.`)
      return connectInjected(detail, chain, { interactive })
    }
    case 'walletconnect':
      return connectWalletConnect(chain, { restoreOnly: !interactive })
  }
}

/** Makes `next` the wallet that signs claims and sends transactions: the scheduler is rebuilt around its signer. */
async function adopt(next: ConnectedWallet) {
  const previous = wallet
  const wasRunning = scheduler?.currentState === 'running'
  if (scheduler) await scheduler.stop()
  unsubscribeWallet()
  wallet = next
  lastRewards = null
  unsubscribeWallet = next.subscribe?.((event) => void onWalletEvent(next, event)) ?? (() => {})
  if (previous && previous !== next && previous.kind === 'walletconnect' && next.kind !== 'walletconnect') void previous.disconnect?.().catch(() => {})
  showCurrentWallet(next)
  clearRewards()
  if (makeScheduler) {
    scheduler = makeScheduler(next)
    if (wasRunning) scheduler.start()
  }
  // A failed read is shown by the rewards card and retried by the timer; the switch itself succeeded.
  await refresh().catch(() => {})
}

async function switchWallet(choice: WalletChoice) {
  if (busy) return
  if (wallet && wallet.kind === choice.kind && wallet.id === choice.id) return
  setBusy(true)
  walletStatus(choice.kind === 'burner' ? 'Switching to the burner…' : `Connecting ${choice.name}: confirm in the wallet…`)
  try {
    const next = await connectChoice(choice, true)
    rememberChoice(next)
    walletStatus(scheduler?.currentState === 'running' ? 'Finishing the unit in flight before switching…' : '')
    await adopt(next)
    walletStatus(`Now using ${next.name}.`, 'good')
    log(`Wallet: ${next.name} ${next.address}`)
  } catch (error) {
    walletStatus(explainError(error, { token: token(), chainTime: chainTime() }), 'bad')
  } finally {
    setBusy(false)
  }
}

/** The wallet changed under the page (another account picked, session ended): follow it, or fall back to the burner. */
async function onWalletEvent(source: ConnectedWallet, event: WalletEvent) {
  if (source !== wallet) return
  if (event === 'chainChanged') {
    const expected = settlement?.chain.chainId
    const now = await source.walletClient?.getChainId().catch(() => null)
    if (expected !== undefined && now !== expected) {
      walletStatus(`${source.name} moved to chain ${now ?? '?'}: signing and transactions need chain ${expected}. Choose the wallet again to switch back.`, 'bad')
    } else {
      walletStatus('')
    }
    return
  }
  if (busy) return
  setBusy(true)
  try {
    let next: ConnectedWallet
    try {
      next = await connectChoice(source, false)
      walletStatus(`${source.name} changed account: now ${next.address}.`)
    } catch (error) {
      next = await connectBurner(settlement?.chain ?? null)
      rememberChoice(BURNER_CHOICE)
      walletStatus(`${source.name} disconnected (${explainError(error, { token: token(), chainTime: chainTime() })}); using the burner.`, 'bad')
    }
    await adopt(next)
    log(`Wallet: ${next.name} ${next.address}`)
  } finally {
    setBusy(false)
  }
}

// ---------------------------------------------------------------------------------------------------
// Rewards and stake cards

const AMOUNT_IDS = ['earned', 'pending', 'claimable', 'claimed', 'token-balance', 'eth-balance', 'stake-active', 'stake-pending'] as const

function clearRewards() {
  for (const id of AMOUNT_IDS) showAmount($(id), null, null)
  $('pending-until').textContent = ''
  $('stake-unlock').textContent = ''
  $('rewards-note').textContent = ''
}

function updateButtons() {
  const canSend = !busy && wallet?.walletClient != null && settlement !== null
  for (const id of ['stake', 'unstake', 'withdraw', 'faucet']) $<HTMLButtonElement>(id).disabled = !canSend
  const claimable = lastRewards?.view.claimable
  const claimableAmount = claimable && lastRewards ? BigInt(claimable.cumulativeAmount) - lastRewards.claimed : 0n
  $<HTMLButtonElement>('claim').disabled = !canSend || claimableAmount <= 0n
  for (const button of $('wallet-options').querySelectorAll('button')) {
    if (!button.dataset.unavailable) button.disabled = busy
  }
}

/**
 * Simulations run on the pending block: the contracts check block.timestamp (challenge windows, unstake
 * delays), and an idle chain's latest block keeps an old time that the transaction's own block will not have.
 */
const SIMULATE = { blockTag: 'pending' } as const

const max0 = (x: bigint) => (x > 0n ? x : 0n)

let refreshing: Promise<void> | null = null
let refreshAgain = false

/** Reads rewards, balances and stake again; calls that arrive during a read are folded into one more read. */
function refresh(): Promise<void> {
  if (refreshing) {
    refreshAgain = true
    return refreshing
  }
  refreshing = (async () => {
    do {
      refreshAgain = false
      await Promise.all([readOnce(), reputation.show(wallet?.address ?? null)])
    } while (refreshAgain)
  })().finally(() => {
    refreshing = null
  })
  return refreshing
}

let readFailures = 0

async function readOnce() {
  const w = wallet
  const s = settlement
  if (!w || !s) return
  const { reader, chain } = s
  let values
  try {
    values = await Promise.all([
      client.rewards(w.address),
      reader.claimed(w.address),
      reader.tokenBalance(w.address),
      reader.ethBalance(w.address),
      reader.stakeOf(w.address),
      reader.frozenAt(w.address),
      reader.latestBlockTime(),
    ])
  } catch (error) {
    readFailures++
    // One slow read is not news; a run of them is.
    if (readFailures >= 2) status('claim-status', `Cannot read rewards: ${explainError(error, { token: chain.token, chainTime: null })}`, 'bad')
    throw error
  }
  if (w !== wallet) return
  if (readFailures >= 2 && !busy) status('claim-status', '')
  readFailures = 0
  const [view, claimed, tokenBalance, ethBalance, stake, frozenAt, blockTime] = values
  // An idle local chain mines no blocks, so its latest timestamp lags; the next block will carry at least
  // the wall clock's time. A chain moved ahead of the wall clock (tests do) keeps its own time.
  const now = Math.max(blockTime, Math.floor(Date.now() / 1000))
  lastRewards = { address: w.address, view, claimed, chainTime: now, frozenAt }
  const latest = view.latest ? BigInt(view.latest.cumulativeAmount) : 0n
  const claimableCumulative = view.claimable ? BigInt(view.claimable.cumulativeAmount) : 0n
  const pending = max0(latest - claimableCumulative)
  showAmount($('earned'), view.earned, chain.token)
  showAmount($('pending'), pending, chain.token)
  $('pending-until').textContent = pending > 0n && view.latest ? `claimable from ${formatWhen(view.latest.claimableAt, now)}` : ''
  showAmount($('claimable'), max0(claimableCumulative - claimed), chain.token)
  showAmount($('claimed'), claimed, chain.token)
  showAmount($('token-balance'), tokenBalance, chain.token)
  showAmount($('eth-balance'), ethBalance, ETHER)
  showAmount($('stake-active'), stake.active, chain.token)
  showAmount($('stake-pending'), stake.pending, chain.token)
  $('stake-unlock').textContent = stake.pending > 0n ? (stake.unlockAt <= now ? 'unlocked: withdraw it' : `unlocks ${formatWhen(stake.unlockAt, now)}`) : ''

  const notes: string[] = []
  const unposted = max0(BigInt(view.earned) - latest)
  if (unposted > 0n) {
    const next = view.nextEpochAt
    notes.push(`${formatToken(unposted, chain.token)} earned is not in a posted reward root yet${next ? `; the next epoch is due ${formatWhen(next, now)}` : ''}.`)
  }
  if (frozenAt > 0) notes.push(`Rewards of this address in roots claimable after ${formatWhen(frozenAt, now)} are frozen by a dispute verdict.`)
  $('rewards-note').textContent = notes.join(' ')
  updateButtons()

  if (chain.faucet && w.kind === 'burner' && ethBalance === 0n && !busy && !autoFauceted.has(w.address)) {
    autoFauceted.add(w.address)
    void faucet(true)
  }
}

async function claim() {
  const w = wallet
  const s = settlement
  const record = lastRewards?.view.claimable
  if (!w?.walletClient || !s || !record || busy) return
  const walletClient: ChainWalletClient = w.walletClient
  setBusy(true)
  const context = { token: s.chain.token, chainTime: chainTime() }
  try {
    status('claim-status', `Checking the proof for epoch ${record.epoch} against the root on chain…`)
    const onChain = await s.reader.epoch(record.epoch)
    const cumulativeAmount = BigInt(record.cumulativeAmount)
    if (onChain.root.toLowerCase() !== record.root.toLowerCase()) {
      throw new Error(`The coordinator's root for epoch ${record.epoch} is not the one on chain (${onChain.root}); not claiming.`)
    }
    if (!verifyRewardProof(onChain.root, w.address, cumulativeAmount, record.proof)) {
      throw new Error(`The coordinator's proof does not prove ${formatToken(cumulativeAmount, s.chain.token)} for this address under epoch ${record.epoch}'s root; not claiming.`)
    }
    const amount = cumulativeAmount - (lastRewards?.claimed ?? 0n)
    status('claim-status', `Proof checked. Claiming ${formatToken(amount, s.chain.token)}: confirm in the wallet…`)
    const receipt = await transact(
      s.reader.publicClient,
      async () => {
        const { request } = await s.reader.publicClient.simulateContract({
          ...SIMULATE,
          account: walletClient.account,
          address: s.chain.contracts.rewardDistributor,
          abi: rewardDistributorAbi,
          functionName: 'claim',
          args: [BigInt(record.epoch), w.address, cumulativeAmount, record.proof],
        })
        return walletClient.writeContract(request)
      },
      (hash) => status('claim-status', 'Claim sent, waiting for it to be mined:', 'info', hash),
    )
    await reread()
    status('claim-status', `Claimed ${formatToken(amount, s.chain.token)}:`, 'good', receipt.transactionHash)
    log(`Claimed ${formatToken(amount, s.chain.token)} (epoch ${record.epoch}) in ${receipt.transactionHash}`, 'good')
  } catch (error) {
    status('claim-status', explainError(error, context), 'bad')
  } finally {
    setBusy(false)
    void refresh().catch(() => {})
  }
}

function stakeAmount(decimals: number): bigint {
  const text = $<HTMLInputElement>('stake-amount').value.trim()
  let amount: bigint
  const symbol = settlement?.chain.token.symbol ?? 'tokens'
  const match = /^(\d*)(?:\.(\d*))?$/.exec(text)
  if (!match || text === '' || text === '.') throw new Error(`Enter an amount of ${symbol}, like 10 or 2.5.`)
  // parseUnits would round digits past the token's decimals; an amount is meant exactly or not at all.
  if ((match[2] ?? '').length > decimals) throw new Error(`${symbol} has ${decimals} decimals: the amount has more.`)
  try {
    amount = parseUnits(text, decimals)
  } catch {
    throw new Error(`Enter an amount of ${symbol}, like 10 or 2.5.`)
  }
  if (amount <= 0n) throw new Error('The amount must be more than zero.')
  return amount
}

type StakeAction = 'stake' | 'unstake' | 'withdraw'

async function stakeAction(action: StakeAction) {
  const w = wallet
  const s = settlement
  if (!w?.walletClient || !s || busy) return
  const walletClient: ChainWalletClient = w.walletClient
  const { publicClient } = s.reader
  const { stakeManager, token: tokenAddress } = s.chain.contracts
  const fmt = (x: bigint) => formatToken(x, s.chain.token)
  setBusy(true)
  const sent = (what: string) => (hash: Hex) => status('stake-status', `${what} sent, waiting for it to be mined:`, 'info', hash)
  try {
    let receipt
    if (action === 'stake') {
      const amount = stakeAmount(s.chain.token.decimals)
      if ((await s.reader.allowance(w.address, stakeManager)) < amount) {
        status('stake-status', `Approving ${fmt(amount)} for the stake manager: confirm in the wallet…`)
        await transact(
          publicClient,
          async () => {
            const { request } = await publicClient.simulateContract({
              ...SIMULATE,
              account: walletClient.account,
              address: tokenAddress,
              abi: tabTokenAbi,
              functionName: 'approve',
              args: [stakeManager, amount],
            })
            return walletClient.writeContract(request)
          },
          sent('Approval'),
        )
      }
      status('stake-status', `Staking ${fmt(amount)}: confirm in the wallet…`)
      receipt = await transact(
        publicClient,
        async () => {
          const { request } = await publicClient.simulateContract({ ...SIMULATE, account: walletClient.account, address: stakeManager, abi: stakeManagerAbi, functionName: 'stake', args: [amount] })
          return walletClient.writeContract(request)
        },
        sent('Stake'),
      )
      await reread()
      status('stake-status', `Staked ${fmt(amount)}:`, 'good', receipt.transactionHash)
    } else if (action === 'unstake') {
      const amount = stakeAmount(s.chain.token.decimals)
      status('stake-status', `Requesting to unstake ${fmt(amount)}: confirm in the wallet…`)
      receipt = await transact(
        publicClient,
        async () => {
          const { request } = await publicClient.simulateContract({ ...SIMULATE, account: walletClient.account, address: stakeManager, abi: stakeManagerAbi, functionName: 'requestUnstake', args: [amount] })
          return walletClient.writeContract(request)
        },
        sent('Unstake request'),
      )
      await reread()
      status('stake-status', `Unstake of ${fmt(amount)} requested; it can be withdrawn after ${s.chain.unstakeDelaySeconds} s:`, 'good', receipt.transactionHash)
    } else {
      status('stake-status', 'Withdrawing unlocked stake: confirm in the wallet…')
      receipt = await transact(
        publicClient,
        async () => {
          const { request } = await publicClient.simulateContract({ ...SIMULATE, account: walletClient.account, address: stakeManager, abi: stakeManagerAbi, functionName: 'withdraw' })
          return walletClient.writeContract(request)
        },
        sent('Withdrawal'),
      )
      await reread()
      status('stake-status', 'Withdrawn:', 'good', receipt.transactionHash)
    }
    log(`${action === 'stake' ? 'Staked' : action === 'unstake' ? 'Unstake requested' : 'Withdrew stake'} in ${receipt.transactionHash}`, 'good')
  } catch (error) {
    status('stake-status', explainError(error, { token: s.chain.token, chainTime: chainTime() }), 'bad')
  } finally {
    setBusy(false)
    void refresh().catch(() => {})
  }
}

function faucet(automatic: boolean): Promise<void> {
  if (faucetRun) return faucetRun
  const run = faucetOnce(automatic)
  faucetRun = run
  void run.finally(() => {
    if (faucetRun === run) faucetRun = null
  })
  return run
}

async function faucetOnce(automatic: boolean) {
  const w = wallet
  if (!w || busy) return
  setBusy(true)
  status('faucet-status', automatic ? 'This burner has no gas: asking the local faucet for test tokens and gas…' : 'Asking the local faucet…')
  try {
    const result = await client.faucet(w.address)
    const staked = BigInt(result.staked ?? 0)
    const what = `${formatToken(BigInt(result.ether), ETHER)} and ${formatToken(BigInt(result.tokens), token())}${staked > 0n ? `, and staked ${formatToken(staked, token())} for it` : ''}`
    await reread()
    if (result.txHashes.length === 0) status('faucet-status', `Already topped up (${what}).`, 'good')
    else status('faucet-status', `Sent ${what}:`, 'good', result.txHashes.at(-1))
    log(`Faucet: ${what} to ${w.address}`, 'good')
  } catch (error) {
    status('faucet-status', `Faucet failed: ${explainError(error, { token: token(), chainTime: null })}`, 'bad')
  } finally {
    setBusy(false)
    void refresh().catch(() => {})
  }
}

/** Stake a slash of the wallet reaches (active and pending, as the coordinator counts it) and the job's minimum. */
async function stakeNeeds(s: Settlement, address: Address, job: Hash): Promise<{ slashable: bigint; minimum: bigint }> {
  const [detail, stake] = await Promise.all([client.job(job), s.reader.stakeOf(address)])
  return { slashable: stake.active + stake.pending, minimum: BigInt(verificationPolicy(detail.spec).minStake) }
}

/**
 * The coordinator reads stake through a cache of a few seconds, so a Start right after staking may still be
 * refused: when the chain already holds enough, the page starts again after this long (a few times at most).
 */
const STAKE_RECHECK_MS = 6000
const STAKE_RECHECKS = 3
const stakeRechecks = new Map<string, number>()

/**
 * Start met `stake_required`: this job pays, so it wants stake at risk. A burner on the local chain gets the
 * minimum from the faucet (once) and starts again by itself; anyone else is shown the message and the
 * stake card, with the missing amount filled in.
 */
async function onStakeRequired(reason: string) {
  const w = wallet
  const s = settlement
  const stuck = scheduler
  if (!w || !s || !stuck || !jobId) {
    showStartNote(reason)
    return
  }
  if (s.chain.faucet && w.kind === 'burner' && !stakeFauceted.has(w.address)) {
    stakeFauceted.add(w.address)
    log('This job needs stake: asking the local faucet to stake the minimum for this burner, then starting again…')
    await faucet(false)
  }
  const needs = await stakeNeeds(s, w.address, jobId).catch(() => null)
  // The wallet changed meanwhile: the new one has its own scheduler and its own answer.
  if (wallet !== w || scheduler !== stuck) return
  const rechecks = stakeRechecks.get(w.address) ?? 0
  if (needs && needs.slashable >= needs.minimum && rechecks < STAKE_RECHECKS) {
    stakeRechecks.set(w.address, rechecks + 1)
    log(`The stake is on chain; starting again in ${STAKE_RECHECK_MS / 1000} s, once the coordinator sees it…`)
    await stuck.stop()
    await new Promise((resolve) => setTimeout(resolve, STAKE_RECHECK_MS))
    if (wallet === w && scheduler === stuck && stuck.currentState === 'idle') stuck.start()
    return
  }
  showStartNote(reason, { href: '#stake-card', text: 'Stake below, then press Start again.' })
  status('stake-status', reason, 'bad')
  $('stake-card').scrollIntoView({ behavior: 'smooth', block: 'center' })
  const input = $<HTMLInputElement>('stake-amount')
  if (needs && input.value.trim() === '' && needs.minimum > needs.slashable) input.value = formatUnits(needs.minimum - needs.slashable, s.chain.token.decimals)
  input.focus()
}

function setupSettlement(chain: ChainInfo | null) {
  if (!chain) {
    $('rewards-off').hidden = false
    $('wallet-note').textContent = 'Claims are signed by the burner kept in this browser. Rewards are off on this coordinator, so browser wallets and WalletConnect are not offered.'
    return
  }
  settlement = { chain, reader: createChainReader(chain) }
  $('rewards-card').hidden = false
  $('stake-card').hidden = false
  $('faucet-row').hidden = !chain.faucet
  $('stake-symbol').textContent = chain.token.symbol
  $('claim').addEventListener('click', () => void claim())
  $('stake').addEventListener('click', () => void stakeAction('stake'))
  $('unstake').addEventListener('click', () => void stakeAction('unstake'))
  $('withdraw').addEventListener('click', () => void stakeAction('withdraw'))
  $('faucet').addEventListener('click', () => void faucet(false))
}

/** After a transaction: the cards show the new balances before the status line says it is done. */
const reread = () => refresh().catch(() => {})

/** Retries the first read until it works: the page is ready only once the cards show real numbers. */
async function firstRead(): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await refresh()
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * 2 ** attempt)))
    }
  }
}

// ---------------------------------------------------------------------------------------------------

async function main() {
  const worker = new Worker(new URL('../src/worker/worker.ts', import.meta.url), { type: 'module', name: 'tabtrain-training' })
  const remote = Comlink.wrap<TrainingWorkerApi>(worker)
  const [device, info, jobs] = await Promise.all([remote.init(client.baseUrl), client.info(), client.listJobs()])

  $('backend').textContent = device.backend === 'webgpu' ? 'WebGPU' : device.backend
  $('adapter').textContent =
    device.backend === 'webgpu'
      ? `Adapter: ${device.vendor} / ${device.architecture}${device.isFallbackAdapter ? ' (software fallback adapter)' : ''}${device.description ? ` · ${device.description}` : ''}`
      : `No WebGPU: ${device.fallbackReason ?? 'unknown reason'}. Training on ${device.backend}.`
  $('device-class').textContent = device.deviceClass

  setupSettlement(info.chain)
  const restored = await restoreWallet(info.chain)
  if (restored.fallback) walletStatus(restored.fallback, 'bad')
  discoverInjectedWallets(() => renderWalletOptions())
  const requested = new URLSearchParams(location.search).get('job')
  const job: JobSummary | undefined = jobs.find((j) => j.id === requested) ?? jobs.find((j) => j.status === 'active') ?? jobs[0]
  jobId = (job?.id as Hash | undefined) ?? null
  if (job) {
    makeScheduler = (w) => new Scheduler({
      client,
      executor: { runUnit: (spec, unit) => remote.runUnit(spec, unit) },
      signer: w.signer,
      deviceClass: device.deviceClass,
      jobId: job.id as Hash,
      onEvent,
    })
  }
  await adopt(restored.wallet).catch(() => {})
  setInterval(() => void refresh().catch(() => {}), REFRESH_MS)
  if (settlement) await firstRead()

  if (!job) {
    log('The coordinator has no jobs.', 'bad')
    return
  }
  const jobLink = document.createElement('a')
  jobLink.href = `./job.html?id=${job.id}`
  jobLink.textContent = job.name
  $('job-name').replaceChildren('Job: ', jobLink, job.payment ? ` · ${formatToken(BigInt(job.payment.pricePerUnit), info.chain?.token ?? null)} per unit` : ' · volunteer (no payment)')
  let shownRound = -1
  watchProgress(client, job.id, (progress) => {
    showProgress(progress)
    if (progress.round !== shownRound) scheduler?.nudge()
    shownRound = progress.round
  })
  $('start').addEventListener('click', () => {
    showStartNote(null)
    scheduler?.start()
  })
  $('stop').addEventListener('click', () => void scheduler?.stop())
  $<HTMLButtonElement>('start').disabled = job.status !== 'active'
  if (job.status !== 'active') log('This job has finished.', 'good')
  document.body.dataset.ready = 'true'
}

main().catch((error: unknown) => {
  log(`Could not start: ${error instanceof Error ? error.message : String(error)}`, 'bad')
  document.body.dataset.ready = 'error'
})
