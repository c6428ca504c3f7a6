import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, createWalletClient, http, parseEther } from 'viem'
import { afterAll, describe, expect, it } from 'vitest'
import { anvilAccount, anvilBinaryPath, anvilChain, AnvilStartError, startAnvil, ANVIL_MNEMONIC, type AnvilInstance } from './anvil.ts'

const started: AnvilInstance[] = []
afterAll(async () => {
  await Promise.all(started.map((a) => a.stop()))
})

async function start(options: Parameters<typeof startAnvil>[0] = {}) {
  const anvil = await startAnvil(options)
  started.push(anvil)
  return anvil
}

describe('startAnvil', () => {
  it('finds the bundled binary', () => {
    expect(anvilBinaryPath()).toMatch(/@foundry-rs\/anvil-linux-amd64\/bin\/anvil$/)
  })

  it('picks free ports, so several chains run side by side, and stops', async () => {
    const [a, b] = await Promise.all([start(), start({ chainId: 4242 })])
    expect(a.port).not.toBe(b.port)
    expect(a.rpcUrl).toBe(`http://127.0.0.1:${a.port}`)
    const client = createPublicClient({ transport: http(b.rpcUrl) })
    expect(await client.getChainId()).toBe(4242)
    expect(b.chainId).toBe(4242)
    await a.stop()
    await a.stop() // idempotent
    expect(a.process.exitCode !== null || a.process.signalCode !== null).toBe(true)
    await expect(createPublicClient({ transport: http(a.rpcUrl, { retryCount: 0 }) }).getChainId()).rejects.toThrow()
  })

  it("fails with anvil's own message when it cannot start", async () => {
    const anvil = await start()
    const error = await startAnvil({ port: anvil.port }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AnvilStartError)
    expect((error as AnvilStartError).output).toMatch(/Address already in use/)
  })

  it('funds the accounts of ANVIL_MNEMONIC', async () => {
    const anvil = await start()
    const client = createPublicClient({ transport: http(anvil.rpcUrl) })
    expect(ANVIL_MNEMONIC.split(' ')).toHaveLength(12)
    expect(anvilAccount(0).address).toBe('0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266')
    expect(await client.getBalance({ address: anvilAccount(9).address })).toBe(parseEther('10000'))
  })

  it('persists chain state to a state file across restarts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tabtrain-anvil-'))
    try {
      const stateFile = join(dir, 'state.json')
      const first = await start({ stateFile })
      const wallet = createWalletClient({ account: anvilAccount(0), chain: anvilChain(first), transport: http(first.rpcUrl) })
      const client = createPublicClient({ chain: anvilChain(first), transport: http(first.rpcUrl), pollingInterval: 20 })
      const hash = await wallet.sendTransaction({ to: anvilAccount(1).address, value: 12345n })
      await client.waitForTransactionReceipt({ hash })
      await first.stop()

      const second = await start({ stateFile })
      const reopened = createPublicClient({ transport: http(second.rpcUrl) })
      expect(await reopened.getBalance({ address: anvilAccount(1).address })).toBe(parseEther('10000') + 12345n)
      expect(await reopened.getBlockNumber()).toBeGreaterThanOrEqual(1n)
      expect((await reopened.getTransaction({ hash })).value).toBe(12345n)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('mines on an interval with blockTime', async () => {
    const anvil = await start({ blockTime: 1 })
    const client = createPublicClient({ transport: http(anvil.rpcUrl) })
    const before = await client.getBlockNumber({ cacheTime: 0 })
    let after = before
    for (const giveUp = Date.now() + 3_000; after === before && Date.now() < giveUp; ) {
      await new Promise((r) => setTimeout(r, 100))
      after = await client.getBlockNumber({ cacheTime: 0 })
    }
    expect(after).toBeGreaterThan(before)
  })
})
