import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createPublicClient, createWalletClient, http, parseEther } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { anvilAccount, anvilBinaryPath, anvilChain, startAnvil, type AnvilInstance } from './anvil.ts'
import { goodCopyOf, restoreStateFile } from './anvilState.ts'

/**
 * anvil rewrites its state file in place every second; a coordinator killed during that write left it empty,
 * and anvil then refused to start, so the coordinator could not restart at all (found by coordinator/crash.test.ts,
 * which kills a coordinator 20 times). A start now falls back to the last whole copy.
 */
describe('anvil state across a crash in the middle of its state write', () => {
  let dir: string
  const started: AnvilInstance[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-anvil-state-'))
  })
  afterAll(async () => {
    await Promise.all(started.map((a) => a.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('anvil itself cannot start on a state file cut short', async () => {
    const file = join(dir, 'cut.json')
    await writeFile(file, '')
    const run = spawnSync(anvilBinaryPath(), ['--port', '0', '--state', file], { encoding: 'utf8', timeout: 10_000 })
    expect(run.status).not.toBe(0)
    expect(run.stderr + run.stdout).toMatch(/failed to parse json file/)
  })

  it('restores the last whole copy, sets aside a file with none, and leaves whole or absent files alone', async () => {
    const whole = join(dir, 'whole.json')
    await writeFile(whole, '{"block":1}')
    expect(await restoreStateFile(whole)).toBe('whole')
    expect(await restoreStateFile(join(dir, 'absent.json'))).toBe('absent')

    const cut = join(dir, 'restored.json')
    await writeFile(cut, '{"block":{"number":')
    await writeFile(goodCopyOf(cut), '{"block":{"number":7}}')
    expect(await restoreStateFile(cut)).toBe('restored')
    expect(await readFile(cut, 'utf8')).toBe('{"block":{"number":7}}')

    const lost = join(dir, 'lost.json')
    await writeFile(lost, '')
    expect(await restoreStateFile(lost)).toBe('unrecoverable')
    await expect(stat(lost)).rejects.toThrow()
    expect(await readFile(`${lost}.broken`, 'utf8')).toBe('')
  })

  it('a chain whose state file was cut short by a kill starts again with the state of a second or two before', async () => {
    const stateFile = join(dir, 'chain.json')
    const first = await startAnvil({ stateFile })
    started.push(first)
    const client = createPublicClient({ chain: anvilChain(first), transport: http(first.rpcUrl), pollingInterval: 20 })
    const wallet = createWalletClient({ account: anvilAccount(0), chain: anvilChain(first), transport: http(first.rpcUrl) })
    await client.waitForTransactionReceipt({ hash: await wallet.sendTransaction({ to: anvilAccount(1).address, value: 4242n }) })
    // anvil dumps the transfer within a second; the good copy follows within another.
    for (const deadline = Date.now() + 10_000; ; ) {
      const copy = await readFile(goodCopyOf(stateFile), 'utf8').catch(() => '{}')
      if (Number((JSON.parse(copy) as { best_block_number?: number | string }).best_block_number ?? 0) >= 1) break
      if (Date.now() > deadline) throw new Error('no good copy of the state with the transfer within 10 s')
      await new Promise((r) => setTimeout(r, 100))
    }
    // The crash: anvil killed while it rewrote the file (truncated, nothing written yet).
    first.process.kill('SIGKILL')
    await new Promise((r) => first.process.once('exit', r))
    await truncate(stateFile, 0)

    const second = await startAnvil({ stateFile })
    started.push(second)
    const reopened = createPublicClient({ transport: http(second.rpcUrl) })
    expect(await reopened.getBalance({ address: anvilAccount(1).address })).toBe(parseEther('10000') + 4242n)
  })
})
