import { parseUnits, type Hex } from 'viem'
import { stakeManagerAbi, tabTokenAbi } from '../../contracts/generated/index.ts'
import { verificationPolicy, type Hash } from '../../src/protocol/index.ts'
import { formatToken, formatUnits } from '../lib/amounts.ts'
import { explainError, sendContractTransaction } from '../lib/transactions.ts'
import type { Log } from './activityLog.ts'
import { byId, setStatus } from './dom.ts'
import type { RewardsCard } from './rewardsCard.ts'
import { exclusive, type WalletSession } from './session.ts'

/** An amount typed into the stake box that cannot be staked; the message says why. */
export class StakeAmountError extends Error {
  override name = 'StakeAmountError'
  readonly code = 'bad_stake_amount'
}

/** The amount in the stake box in base units: exactly what was typed, or a StakeAmountError. */
export function parseStakeAmount(text: string, decimals: number, symbol: string): bigint {
  const trimmed = text.trim()
  const match = /^(\d*)(?:\.(\d*))?$/.exec(trimmed)
  if (!match || trimmed === '' || trimmed === '.') throw new StakeAmountError(`Enter an amount of ${symbol}, like 10 or 2.5.`)
  // parseUnits would round digits past the token's decimals; an amount is meant exactly or not at all.
  if ((match[2] ?? '').length > decimals) throw new StakeAmountError(`${symbol} has ${decimals} decimals: the amount has more.`)
  const amount = parseUnits(trimmed, decimals)
  if (amount <= 0n) throw new StakeAmountError('The amount must be more than zero.')
  return amount
}

export type StakeRequiredOutcome = 'retry' | 'stake'

export interface StakeCard {
  /**
   * Start met `stake_required`: this job pays, so it wants stake at risk. A burner on the local chain gets
   * the minimum from the faucet (once) and the caller is told to `retry` once the coordinator sees it; anyone
   * else is shown the stake card, with the missing amount filled in (`stake`).
   */
  stakeRequired(reason: string, jobId: Hash): Promise<StakeRequiredOutcome>
  /** A unit was leased: the stake is seen, so a later refusal may be retried afresh. */
  leased(): void
  updateButtons(): void
}

/**
 * The coordinator reads stake through a cache of a few seconds, so a Start right after staking may still be
 * refused: when the chain already holds enough, the page starts again after STAKE_RECHECK_MS, a few times.
 */
export const STAKE_RECHECK_MS = 6000
const STAKE_RECHECKS = 3

type StakeAction = 'stake' | 'unstake' | 'withdraw'

/** The stake card: stake, request an unstake, withdraw; its numbers are read by the rewards card. */
export function createStakeCard({ session, log, rewards }: { session: WalletSession; log: Log; rewards: RewardsCard }): StakeCard {
  const settlement = session.settlement
  const input = byId<HTMLInputElement>('stake-amount')
  const el = byId('stake-status')
  /** Burners for which a stake_required refusal already sent the page to the faucet once (it stakes the minimum). */
  const stakeFauceted = new Set<string>()
  const rechecks = new Map<string, number>()

  const updateButtons = () => {
    const canSend = !session.busy && session.wallet?.walletClient != null && settlement !== null
    for (const id of ['stake', 'unstake', 'withdraw']) byId<HTMLButtonElement>(id).disabled = !canSend
  }

  const act = async (action: StakeAction) => {
    const w = session.wallet
    if (!w?.walletClient || !settlement) return
    const walletClient = w.walletClient
    const { reader, chain } = settlement
    const { publicClient } = reader
    const { stakeManager, token: tokenAddress } = chain.contracts
    const fmt = (x: bigint) => formatToken(x, chain.token)
    const sent = (what: string) => (hash: Hex) => setStatus(el, `${what} sent, waiting for it to be mined:`, 'info', hash)
    await exclusive(session, async () => {
      try {
        let receipt
        if (action === 'stake') {
          const amount = parseStakeAmount(input.value, chain.token.decimals, chain.token.symbol)
          if ((await reader.allowance(w.address, stakeManager)) < amount) {
            setStatus(el, `Approving ${fmt(amount)} for the stake manager: confirm in the wallet…`)
            await sendContractTransaction(publicClient, walletClient, { address: tokenAddress, abi: tabTokenAbi, functionName: 'approve', args: [stakeManager, amount] }, sent('Approval'))
          }
          setStatus(el, `Staking ${fmt(amount)}: confirm in the wallet…`)
          receipt = await sendContractTransaction(publicClient, walletClient, { address: stakeManager, abi: stakeManagerAbi, functionName: 'stake', args: [amount] }, sent('Stake'))
          await rewards.refresh().catch(() => {})
          setStatus(el, `Staked ${fmt(amount)}:`, 'good', receipt.transactionHash)
        } else if (action === 'unstake') {
          const amount = parseStakeAmount(input.value, chain.token.decimals, chain.token.symbol)
          setStatus(el, `Requesting to unstake ${fmt(amount)}: confirm in the wallet…`)
          receipt = await sendContractTransaction(
            publicClient,
            walletClient,
            { address: stakeManager, abi: stakeManagerAbi, functionName: 'requestUnstake', args: [amount] },
            sent('Unstake request'),
          )
          await rewards.refresh().catch(() => {})
          setStatus(el, `Unstake of ${fmt(amount)} requested; it can be withdrawn after ${chain.unstakeDelaySeconds} s:`, 'good', receipt.transactionHash)
        } else {
          setStatus(el, 'Withdrawing unlocked stake: confirm in the wallet…')
          receipt = await sendContractTransaction(publicClient, walletClient, { address: stakeManager, abi: stakeManagerAbi, functionName: 'withdraw' }, sent('Withdrawal'))
          await rewards.refresh().catch(() => {})
          setStatus(el, 'Withdrawn:', 'good', receipt.transactionHash)
        }
        log(`${action === 'stake' ? 'Staked' : action === 'unstake' ? 'Unstake requested' : 'Withdrew stake'} in ${receipt.transactionHash}`, 'good')
      } catch (error) {
        setStatus(el, explainError(error, rewards.explainContext()), 'bad')
      }
    })
    void rewards.refresh().catch(() => {})
  }

  if (settlement) {
    byId('stake-card').hidden = false
    byId('stake-symbol').textContent = settlement.chain.token.symbol
    byId('stake').addEventListener('click', () => void act('stake'))
    byId('unstake').addEventListener('click', () => void act('unstake'))
    byId('withdraw').addEventListener('click', () => void act('withdraw'))
  }
  session.onBusyChange.add(updateButtons)

  return {
    async stakeRequired(reason, jobId) {
      const w = session.wallet
      if (!w || !settlement) return 'stake'
      if (settlement.chain.faucet && w.kind === 'burner' && !stakeFauceted.has(w.address)) {
        stakeFauceted.add(w.address)
        log('This job needs stake: asking the local faucet to stake the minimum for this burner, then starting again…')
        await rewards.faucet(false)
      }
      // Stake a slash of the wallet reaches (active and pending, as the coordinator counts it) and the job's minimum.
      const needs = await Promise.all([session.client.job(jobId), settlement.reader.stakeOf(w.address)])
        .then(([detail, stake]) => ({ slashable: stake.active + stake.pending, minimum: BigInt(verificationPolicy(detail.spec).minStake) }))
        .catch(() => null)
      const tries = rechecks.get(w.address) ?? 0
      if (needs && needs.slashable >= needs.minimum && tries < STAKE_RECHECKS) {
        rechecks.set(w.address, tries + 1)
        log(`The stake is on chain; starting again in ${STAKE_RECHECK_MS / 1000} s, once the coordinator sees it…`)
        return 'retry'
      }
      setStatus(el, reason, 'bad')
      byId('stake-card').scrollIntoView({ behavior: 'smooth', block: 'center' })
      if (needs && input.value.trim() === '' && needs.minimum > needs.slashable) input.value = formatUnits(needs.minimum - needs.slashable, settlement.chain.token.decimals)
      input.focus()
      return 'stake'
    },
    leased: () => rechecks.clear(),
    updateButtons,
  }
}
