import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { parseEther } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { anvilAccount } from '../contracts/anvil.ts'
import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import { verificationPolicy, type Hash } from '../src/protocol/index.ts'
import { ARTIFACTS, launchChromium, startSystem, until, type SystemUnderTest } from './harness.ts'

/** Reads an amount element's exact base units: the page writes them to `data-amount` beside the formatted text. */
async function amountOf(page: Page, id: string): Promise<bigint | null> {
  const raw = await page.getAttribute(`#${id}`, 'data-amount')
  return raw === null || raw === '' ? null : BigInt(raw)
}

/**
 * An injected EIP-6963 wallet for the test: announces itself with a name and an icon and forwards every
 * request to the local anvil, whose dev accounts sign and send for themselves. Runs in the page.
 */
function injectTestWallet({ rpcUrl, account, chainIdHex }: { rpcUrl: string; account: string; chainIdHex: string }) {
  const icon =
    'data:image/svg+xml;base64,' + btoa('<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32" fill="#f60"/></svg>')
  let id = 0
  const provider = {
    async request({ method, params }: { method: string; params?: unknown[] }) {
      if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [account]
      if (method === 'wallet_switchEthereumChain' || method === 'wallet_addEthereumChain') return null
      if (method === 'eth_chainId') return chainIdHex
      const response = await fetch(rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params: params ?? [] }),
      })
      const body = (await response.json()) as { result?: unknown; error?: { code: number; message: string } }
      if (body.error) throw Object.assign(new Error(body.error.message), { code: body.error.code })
      return body.result
    },
    on() {},
    removeListener() {},
  }
  const announce = () =>
    window.dispatchEvent(
      new CustomEvent('eip6963:announceProvider', {
        detail: Object.freeze({ info: { uuid: '00000000-0000-4000-8000-000000000001', name: 'E2E Test Wallet', icon, rdns: 'dev.tabtrain.e2e' }, provider }),
      }),
    )
  window.addEventListener('eip6963:requestProvider', announce)
  announce()
}

/**
 * Settlement as a contributor meets it: a tab trains the paid preset job, an epoch posts its root, the
 * challenge window passes, the tab presses Claim, and the token balance on the page rises by exactly what
 * the coordinator computed. Then staking, the job page's escrow, and the other wallets.
 */
describe('a tab earns, claims and stakes on the local chain', () => {
  let system: SystemUnderTest
  let browser: Browser
  let client: CoordinatorClient

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true })
    // Short epochs and window so that a root becomes claimable within the test.
    system = await startSystem({ TABTRAIN_EPOCH_SECONDS: '2', TABTRAIN_CHALLENGE_WINDOW_SECONDS: '4' })
    browser = await launchChromium()
    client = new CoordinatorClient(system.url)
  })

  afterAll(async () => {
    await browser?.close()
    await system?.stop()
  })

  it('trains, claims exactly what the coordinator computed, and stakes', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 1800 } })
    const page = await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (e) => pageErrors.push(e.message))
    await page.goto(`${system.url}/contribute.html`)
    await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
    expect(await page.evaluate(() => document.body.dataset.ready)).toBe('true')
    const address = (await page.textContent('#address'))!.trim() as `0x${string}`
    expect(address).toMatch(/^0x[0-9a-fA-F]{40}$/)

    // A new burner has no gas; the page asks the local faucet by itself, which also stakes the minimum
    // stake the paid preset job asks of a contributor.
    await until(() => amountOf(page, 'eth-balance'), (wei) => wei !== null && wei > 0n, 30_000, 'faucet gas')
    const minStake = BigInt(verificationPolicy((await client.job((await client.listJobs())[0]!.id)).spec).minStake)
    const faucetStake = await until(() => amountOf(page, 'stake-active'), (x) => x !== null && x >= minStake, 60_000, 'faucet stake')
    const startBalance = await until(() => amountOf(page, 'token-balance'), (x) => x !== null && x > 0n, 30_000, 'faucet tokens')

    await page.click('#start')
    await until(async () => Number(await page.textContent('#units-done')), (n) => n >= 2, 8 * 60_000, 'two accepted units')
    await page.click('#stop')
    await until(() => page.textContent('#status'), (s) => s === 'idle', 60_000, 'scheduler stopped')

    // What the coordinator computed: every unit this address got accepted, at the job's price, in a
    // root whose challenge window is over.
    const job = (await client.listJobs())[0]!
    const price = BigInt(job.payment!.pricePerUnit)
    const accepted = (await client.progress(job.id)).contributors.find((c) => c.address === address)!.acceptedUnits
    const rewards = await until(
      () => client.rewards(address),
      (r) => r.claimable !== null && BigInt(r.claimable.cumulativeAmount) === BigInt(accepted) * price,
      60_000,
      'a claimable root covering every accepted unit',
    )
    const owed = BigInt(rewards.claimable!.cumulativeAmount)
    expect(BigInt(rewards.earned)).toBe(owed)
    await until(() => amountOf(page, 'claimable'), (x) => x === owed, 30_000, 'page shows the claimable amount')
    expect(await amountOf(page, 'earned')).toBe(owed)
    expect(await amountOf(page, 'claimed')).toBe(0n)
    const before = await amountOf(page, 'token-balance')
    expect(before).toBe(startBalance)

    await page.click('#claim')
    const after = await until(() => amountOf(page, 'token-balance'), (x) => x !== before, 60_000, 'balance after claim')
    expect(after! - before!).toBe(owed)
    await until(() => amountOf(page, 'claimed'), (x) => x === owed, 30_000, 'page shows the claimed amount')
    expect(await amountOf(page, 'claimable')).toBe(0n)
    expect(await page.textContent('#claim-status')).toMatch(/0x[0-9a-f]{64}/)
    await page.screenshot({ path: join(ARTIFACTS, 'contribute-rewards.png'), fullPage: true })

    // Stake 10 tokens more, then ask to unstake 4: they stay slashable (pending) until the unstake delay ends.
    await page.fill('#stake-amount', '10')
    await page.click('#stake')
    await until(() => amountOf(page, 'stake-active'), (x) => x === faucetStake! + parseEther('10'), 60_000, 'stake shown')
    expect(await amountOf(page, 'token-balance')).toBe(after! - parseEther('10'))
    await page.fill('#stake-amount', '4')
    await page.click('#unstake')
    await until(() => amountOf(page, 'stake-pending'), (x) => x === parseEther('4'), 60_000, 'pending unstake shown')
    expect(await amountOf(page, 'stake-active')).toBe(faucetStake! + parseEther('6'))
    await page.click('#withdraw')
    await until(() => page.textContent('#stake-status'), (s) => /not yet|locked|until/i.test(s ?? ''), 30_000, 'early withdraw refused in words')
    expect(pageErrors).toEqual([])
    await context.close()
  })

  it('shows the escrow deposit, the remaining budget and the posted roots on the job page', async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1600 } })
    const jobId = (await client.listJobs())[0]!.id as Hash
    await page.goto(`${system.url}/job.html?id=${jobId}`)
    const payment = (await client.job(jobId)).payment!
    expect(payment.status).toBe('funded')
    expect(payment.deposits).toHaveLength(1)
    await until(() => page.textContent('#escrow-txs'), (t) => (t ?? '').includes(payment.deposits[0]!.txHash), 30_000, 'deposit tx shown')
    await until(() => amountOf(page, 'escrow-remaining'), (x) => x === BigInt(payment.remaining), 30_000, 'remaining budget shown')
    expect(BigInt(payment.remaining)).toBe(BigInt(payment.deposited) - BigInt(payment.earned))
    const epochs = await client.epochs()
    expect(epochs.length).toBeGreaterThan(0)
    await until(() => page.textContent('#epochs'), (t) => (t ?? '').includes(epochs.at(-1)!.txHash!.slice(0, 10)), 30_000, 'epoch tx shown')
    await page.screenshot({ path: join(ARTIFACTS, 'job-escrow.png'), fullPage: true })
    await page.close()
  })

  it('lists an injected EIP-6963 wallet by name and icon and switches to it; WalletConnect fails clearly', async () => {
    const info = await client.info()
    const account = anvilAccount(7).address
    const context = await browser.newContext()
    await context.addInitScript(injectTestWallet, { rpcUrl: info.chain!.rpcUrl, account, chainIdHex: `0x${info.chain!.chainId.toString(16)}` })
    const page = await context.newPage()
    await page.goto(`${system.url}/contribute.html`)
    await page.waitForFunction(() => document.body.dataset.ready !== undefined, undefined, { timeout: 120_000 })
    const option = page.locator('#wallet-options [data-wallet-kind="injected"]', { hasText: 'E2E Test Wallet' })
    await expect.poll(() => option.count(), { timeout: 10_000 }).toBe(1)
    expect(await option.locator('img').getAttribute('src')).toMatch(/^data:image\/svg\+xml/)
    await option.click()
    await until(async () => (await page.textContent('#address'))?.trim(), (a) => a?.toLowerCase() === account.toLowerCase(), 20_000, 'injected account shown')
    expect(await page.textContent('#wallet-current')).toContain('E2E Test Wallet')

    // No project id is built in here: choosing WalletConnect says so at once instead of hanging.
    const started = Date.now()
    await page.click('#wallet-options [data-wallet-kind="walletconnect"]')
    await until(() => page.textContent('#wallet-status'), (s) => /WalletConnect/.test(s ?? ''), 20_000, 'WalletConnect message')
    expect(await page.textContent('#wallet-status')).toMatch(/project id/i)
    expect(Date.now() - started).toBeLessThan(20_000)
    await context.close()
  })
})
