import type { Address } from 'viem'
import { rewardDistributorAbi } from '../../contracts/generated/index.ts'
import { verifyRewardProof, type RewardsView } from '../../src/protocol/index.ts'
import { ETHER, formatToken, formatWhen, showAmount, type TokenFormat } from '../lib/amounts.ts'
import { explainError, sendContractTransaction, type ExplainContext } from '../lib/transactions.ts'
import type { Log } from './activityLog.ts'
import { byId, setStatus } from './dom.ts'
import { exclusive, type WalletSession } from './session.ts'

export interface RewardsCard {
  /** Reads rewards, balances and stake again; calls during a read are folded into one more read. */
  refresh(): Promise<void>
  /** Retries the first read until it works: the page is ready only once the cards show real numbers. */
  firstRead(): Promise<void>
  /** Forgets what was shown for the previous wallet. */
  clear(): void
  /** Asks the local faucet for gas and test tokens (and the minimum stake) for the session's wallet. */
  faucet(automatic: boolean): Promise<void>
  updateButtons(): void
  /** Token and chain time for error messages. */
  explainContext(): ExplainContext
}

export interface RewardsCardOptions {
  session: WalletSession
  log: Log
  /** Read along with the balances, e.g. the reputation card. */
  alsoRead?: (address: Address | null) => Promise<void>
}

/** What the last read said for one wallet; the Claim button acts on it. */
interface LastRead {
  address: Address
  view: RewardsView
  claimed: bigint
  chainTime: number
}

const AMOUNT_IDS = ['earned', 'pending', 'claimable', 'claimed', 'token-balance', 'eth-balance', 'stake-active', 'stake-pending'] as const

const max0 = (x: bigint) => (x > 0n ? x : 0n)

/**
 * The rewards card (earned, pending, claimable, claimed, balances, Claim, the local faucet) and the stake
 * card's numbers, read together from the coordinator and the chain for the session's wallet.
 */
export function createRewardsCard({ session, log, alsoRead }: RewardsCardOptions): RewardsCard {
  const settlement = session.settlement
  const token = (): TokenFormat | null => settlement?.chain.token ?? null
  const amount = (id: (typeof AMOUNT_IDS)[number]) => byId(id)
  let last: LastRead | null = null
  let readFailures = 0
  let refreshing: Promise<void> | null = null
  let again = false
  /** Burners the page already sent to the faucet by itself: once each, never in a loop. */
  const autoFauceted = new Set<string>()
  let faucetRun: Promise<void> | null = null

  const explainContext = (): ExplainContext => ({ token: token(), chainTime: last?.chainTime ?? null })

  const claimableNow = () => (last?.view.claimable ? BigInt(last.view.claimable.cumulativeAmount) - last.claimed : 0n)

  const updateButtons = () => {
    const canSend = !session.busy && session.wallet?.walletClient != null && settlement !== null
    byId<HTMLButtonElement>('faucet').disabled = !canSend
    byId<HTMLButtonElement>('claim').disabled = !canSend || claimableNow() <= 0n
  }

  const clear = () => {
    last = null
    for (const id of AMOUNT_IDS) showAmount(amount(id), null, null)
    byId('pending-until').textContent = ''
    byId('stake-unlock').textContent = ''
    byId('rewards-note').textContent = ''
    updateButtons()
  }

  const readOnce = async () => {
    const w = session.wallet
    if (!w || !settlement) return
    const { reader, chain } = settlement
    let values
    try {
      values = await Promise.all([
        session.client.rewards(w.address),
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
      if (readFailures >= 2) setStatus(byId('claim-status'), `Cannot read rewards: ${explainError(error, { token: chain.token, chainTime: null })}`, 'bad')
      throw error
    }
    if (w !== session.wallet) return
    if (readFailures >= 2 && !session.busy) setStatus(byId('claim-status'), '')
    readFailures = 0
    const [view, claimed, tokenBalance, ethBalance, stake, frozenAt, blockTime] = values
    // An idle local chain mines no blocks, so its latest timestamp lags; the next block will carry at least
    // the wall clock's time. A chain moved ahead of the wall clock (tests do) keeps its own time.
    const now = Math.max(blockTime, Math.floor(Date.now() / 1000))
    last = { address: w.address, view, claimed, chainTime: now }
    const latest = view.latest ? BigInt(view.latest.cumulativeAmount) : 0n
    const claimableCumulative = view.claimable ? BigInt(view.claimable.cumulativeAmount) : 0n
    const pending = max0(latest - claimableCumulative)
    showAmount(amount('earned'), view.earned, chain.token)
    showAmount(amount('pending'), pending, chain.token)
    byId('pending-until').textContent = pending > 0n && view.latest ? `claimable from ${formatWhen(view.latest.claimableAt, now)}` : ''
    showAmount(amount('claimable'), max0(claimableCumulative - claimed), chain.token)
    showAmount(amount('claimed'), claimed, chain.token)
    showAmount(amount('token-balance'), tokenBalance, chain.token)
    showAmount(amount('eth-balance'), ethBalance, ETHER)
    showAmount(amount('stake-active'), stake.active, chain.token)
    showAmount(amount('stake-pending'), stake.pending, chain.token)
    byId('stake-unlock').textContent = stake.pending > 0n ? (stake.unlockAt <= now ? 'unlocked: withdraw it' : `unlocks ${formatWhen(stake.unlockAt, now)}`) : ''

    const notes: string[] = []
    const unposted = max0(BigInt(view.earned) - latest)
    if (unposted > 0n) {
      const next = view.nextEpochAt
      notes.push(`${formatToken(unposted, chain.token)} earned is not in a posted reward root yet${next ? `; the next epoch is due ${formatWhen(next, now)}` : ''}.`)
    }
    if (frozenAt > 0) notes.push(`Rewards of this address in roots claimable after ${formatWhen(frozenAt, now)} are frozen by a dispute verdict.`)
    byId('rewards-note').textContent = notes.join(' ')
    updateButtons()

    if (chain.faucet && w.kind === 'burner' && ethBalance === 0n && !session.busy && !autoFauceted.has(w.address)) {
      autoFauceted.add(w.address)
      void faucet(true)
    }
  }

  const refresh = (): Promise<void> => {
    if (refreshing) {
      again = true
      return refreshing
    }
    refreshing = (async () => {
      do {
        again = false
        await Promise.all([readOnce(), alsoRead?.(session.wallet?.address ?? null)])
      } while (again)
    })().finally(() => {
      refreshing = null
    })
    return refreshing
  }

  /** After a transaction: the cards show the new balances before the status line says it is done. */
  const reread = () => refresh().catch(() => {})

  const claim = async () => {
    const w = session.wallet
    const record = last?.view.claimable
    if (!w?.walletClient || !settlement || !record) return
    const walletClient = w.walletClient
    const { reader, chain } = settlement
    const el = byId('claim-status')
    await exclusive(session, async () => {
      try {
        setStatus(el, `Checking the proof for epoch ${record.epoch} against the root on chain…`)
        const onChain = await reader.epoch(record.epoch)
        const cumulativeAmount = BigInt(record.cumulativeAmount)
        if (onChain.root.toLowerCase() !== record.root.toLowerCase()) {
          throw new Error(`The coordinator's root for epoch ${record.epoch} is not the one on chain (${onChain.root}); not claiming.`)
        }
        if (!verifyRewardProof(onChain.root, w.address, cumulativeAmount, record.proof)) {
          throw new Error(`The coordinator's proof does not prove ${formatToken(cumulativeAmount, chain.token)} for this address under epoch ${record.epoch}'s root; not claiming.`)
        }
        const amountNow = cumulativeAmount - (last?.claimed ?? 0n)
        setStatus(el, `Proof checked. Claiming ${formatToken(amountNow, chain.token)}: confirm in the wallet…`)
        const receipt = await sendContractTransaction(
          reader.publicClient,
          walletClient,
          { address: chain.contracts.rewardDistributor, abi: rewardDistributorAbi, functionName: 'claim', args: [BigInt(record.epoch), w.address, cumulativeAmount, record.proof] },
          (hash) => setStatus(el, 'Claim sent, waiting for it to be mined:', 'info', hash),
        )
        await reread()
        setStatus(el, `Claimed ${formatToken(amountNow, chain.token)}:`, 'good', receipt.transactionHash)
        log(`Claimed ${formatToken(amountNow, chain.token)} (epoch ${record.epoch}) in ${receipt.transactionHash}`, 'good')
      } catch (error) {
        setStatus(el, explainError(error, explainContext()), 'bad')
      }
    })
    void reread()
  }

  const faucetOnce = async (automatic: boolean) => {
    const w = session.wallet
    if (!w) return
    const el = byId('faucet-status')
    await exclusive(session, async () => {
      setStatus(el, automatic ? 'This burner has no gas: asking the local faucet for test tokens and gas…' : 'Asking the local faucet…')
      try {
        const result = await session.client.faucet(w.address)
        const staked = BigInt(result.staked ?? 0)
        const what = `${formatToken(BigInt(result.ether), ETHER)} and ${formatToken(BigInt(result.tokens), token())}${staked > 0n ? `, and staked ${formatToken(staked, token())} for it` : ''}`
        await reread()
        if (result.txHashes.length === 0) setStatus(el, `Already topped up (${what}).`, 'good')
        else setStatus(el, `Sent ${what}:`, 'good', result.txHashes.at(-1))
        log(`Faucet: ${what} to ${w.address}`, 'good')
      } catch (error) {
        setStatus(el, `Faucet failed: ${explainError(error, { token: token(), chainTime: null })}`, 'bad')
      }
    })
    void reread()
  }

  /** One faucet request at a time: a Start that meets stake_required waits for the one in flight. */
  const faucet = (automatic: boolean): Promise<void> => {
    if (faucetRun) return faucetRun
    const run = faucetOnce(automatic)
    faucetRun = run
    void run.finally(() => {
      if (faucetRun === run) faucetRun = null
    })
    return run
  }

  if (settlement) {
    byId('rewards-card').hidden = false
    byId('faucet-row').hidden = !settlement.chain.faucet
    byId('claim').addEventListener('click', () => void claim())
    byId('faucet').addEventListener('click', () => void faucet(false))
  } else {
    byId('rewards-off').hidden = false
  }
  session.onBusyChange.add(updateButtons)

  return {
    refresh,
    async firstRead() {
      for (let attempt = 0; ; attempt++) {
        try {
          await refresh()
          return
        } catch {
          await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * 2 ** attempt)))
        }
      }
    },
    clear,
    faucet,
    updateButtons,
    explainContext,
  }
}
