import { formatUnits, isAddressEqual, type Address } from 'viem'
import { CoordinatorRequestError, type CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { ChainInfo, JobDetail } from '../../src/protocol/index.ts'
import { refundEscrow, type EscrowStep } from '../lib/escrow.ts'
import { FormFieldError, readAmount } from '../lib/jobForm.ts'
import { signIn } from '../lib/signIn.ts'
import { explainError } from '../lib/transactions.ts'
import { createWalletPicker, type WalletPicker } from '../lib/walletPicker.ts'

/**
 * What only the job's owner (the requester its spec names) may do: pause, resume, cancel, change the
 * budget, and take back the unspent escrow once the coordinator closed it. The coordinator checks
 * ownership with Sign-In with Ethereum; the page only hides what another wallet could not do anyway.
 */
export function createOwnerCard(root: HTMLElement, client: CoordinatorClient, chain: ChainInfo, initial: JobDetail) {
  const $ = <T extends HTMLElement = HTMLElement>(selector: string) => root.querySelector(selector) as T
  const requester = initial.spec.payment?.requester as Address | undefined
  if (!requester) {
    root.hidden = true
    return { update(_job: JobDetail) {} }
  }
  root.hidden = false
  $('#owner-address').textContent = requester
  let job = initial
  let busy = false
  /** Set once this page's refund was mined: the coordinator's next read of the chain will say so too. */
  let refundedHere = false
  const status = (text: string, kind: 'muted' | 'good' | 'bad' = 'muted') => {
    const el = $('#owner-status')
    el.textContent = text
    el.className = `small ${kind}`
  }
  const picker: WalletPicker = createWalletPicker({ current: $('#owner-wallet'), options: $('#owner-wallet-options') }, chain, () => render())
  const isOwner = () => picker.current !== null && isAddressEqual(picker.current.address, requester)

  function render() {
    const owner = isOwner()
    const s = job.status
    $('#owner-not-you').hidden = owner || picker.current === null
    const buttons = {
      pause: $<HTMLButtonElement>('#owner-pause'),
      resume: $<HTMLButtonElement>('#owner-resume'),
      cancel: $<HTMLButtonElement>('#owner-cancel'),
      budget: $<HTMLButtonElement>('#owner-budget-set'),
      refund: $<HTMLButtonElement>('#owner-refund'),
    }
    const live = s === 'active' || s === 'paused'
    buttons.pause.hidden = s !== 'active'
    buttons.resume.hidden = s !== 'paused'
    buttons.cancel.hidden = !live
    for (const b of [buttons.pause, buttons.resume, buttons.cancel, buttons.budget]) b.disabled = busy || !owner || !live
    buttons.budget.hidden = !live
    $('#owner-budget').closest('.field')!.toggleAttribute('hidden', !live)
    $('#owner-budget-help').hidden = !live
    const payment = job.payment
    const refundable = payment && payment.status === 'closed' && !payment.refunded && !refundedHere && BigInt(payment.refundable) > 0n
    buttons.refund.hidden = !refundable
    buttons.refund.disabled = busy || !owner
    if (refundable) buttons.refund.textContent = `Take back ${formatUnits(BigInt(payment.refundable), chain.token.decimals)} ${chain.token.symbol}`
  }

  async function act(label: string, action: (token: string) => Promise<unknown>) {
    const wallet = picker.current
    if (!wallet || busy) return
    busy = true
    render()
    try {
      status('Signing in with your wallet (a message, no gas)…')
      const session = await signIn(client, wallet)
      status(`${label}…`)
      await action(session.token)
      job = await client.job(job.id)
      status(`${label}: done.`, 'good')
    } catch (error) {
      if (error instanceof CoordinatorRequestError) status(`${error.message} (${error.code})`, 'bad')
      else if (error instanceof FormFieldError) status(error.message, 'bad')
      else status(explainError(error, { token: chain.token, chainTime: null }), 'bad')
    } finally {
      busy = false
      render()
    }
  }

  $('#owner-pause').addEventListener('click', () => void act('Pausing', (token) => client.pauseJob(job.id, token)))
  $('#owner-resume').addEventListener('click', () => void act('Resuming', (token) => client.resumeJob(job.id, token)))
  $('#owner-cancel').addEventListener('click', () => {
    const sure = confirm('Cancel this job? No new units are handed out; units already in flight may still be handed in and are paid. The rest of the escrow comes back to you once the coordinator closes it.')
    if (sure) void act('Cancelling', (token) => client.cancelJob(job.id, token))
  })
  $('#owner-budget-set').addEventListener('click', () =>
    void act('Changing the budget', (token) => {
      const budget = readAmount('owner-budget', 'Budget', $<HTMLInputElement>('#owner-budget').value, chain.token.decimals)
      return client.setJobBudget(job.id, String(budget), token)
    }),
  )
  $('#owner-refund').addEventListener('click', async () => {
    const wallet = picker.current
    if (!wallet?.walletClient || busy) return
    busy = true
    render()
    try {
      status('Refunding: confirm in the wallet…')
      await refundEscrow(chain, wallet.walletClient, job.id, (step: EscrowStep) => {
        const li = document.createElement('li')
        li.className = 'tx'
        li.dataset.kind = step.kind
        li.dataset.txHash = step.hash
        li.textContent = `Refund: ${step.hash}`
        $('#owner-txs').append(li)
      })
      refundedHere = true
      job = await client.job(job.id)
      status('Refunded: the unspent escrow is back in your wallet.', 'good')
    } catch (error) {
      status(explainError(error, { token: chain.token, chainTime: null }), 'bad')
    } finally {
      busy = false
      render()
    }
  })

  render()
  return {
    update(next: JobDetail) {
      job = next
      if (!$<HTMLInputElement>('#owner-budget').value && next.payment) {
        $<HTMLInputElement>('#owner-budget').value = formatUnits(BigInt(next.payment.budgetCap ?? next.payment.budget), chain.token.decimals)
      }
      if (!busy) render()
    },
  }
}
