/**
 * `npm run bench` (settlement part): time from closing an epoch to a claimable root, on the embedded
 * store and the local anvil, for reward trees of 10, 100 and 1,000 contributors. Writes
 * bench/results/settlement.md and settlement.json.
 *
 * Accepted units are written straight into the store (a real paid job, funded on-chain, with distinct
 * contributor addresses), because this measures the epoch, not the claim path `bench/run.ts` covers.
 * A root is claimable `challengeWindow` seconds after it is posted; that window is a parameter, so the
 * table reports the measured part (build + post + receipt) and adds the window separately.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createWalletClient, http } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { anvilAccount } from '../contracts/anvil.ts'
import { jobEscrowAbi, rewardDistributorAbi, tabTokenAbi } from '../contracts/generated/index.ts'
import { parseJobSpec } from '../src/protocol/index.ts'
import { buildMnistPreset } from '../coordinator/presets/mnist.ts'
import { startTemporaryCoordinator } from '../coordinator/testing/inProcess.ts'
import { ROOT } from '../coordinator/testing/spawnCoordinator.ts'

const RESULTS = join(ROOT, 'bench/results')
const ACCOUNT_COUNTS = [10, 100, 1000]
const REPEATS = Number(process.env.BENCH_EPOCH_REPEATS ?? 5)
const PRICE = 10n ** 18n

interface EpochRow {
  accounts: number
  buildMs: number
  postMs: number
  totalMs: number
  proofMs: number
  claimGas: bigint
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function main() {
  const coordinator = await startTemporaryCoordinator()
  const rows: EpochRow[] = []
  try {
    const settlement = coordinator.settlement!
    const chain = coordinator.chain!
    await settlement.stop() // the bench closes epochs itself
    const preset = await buildMnistPreset()
    const units = ACCOUNT_COUNTS.reduce((a, b) => a + b, 0) * (REPEATS + 1)
    const spec = parseJobSpec({
      ...preset.spec,
      name: 'bench: epochs',
      training: { ...preset.spec.training, unitsPerRound: units, rounds: 1 },
      payment: { pricePerUnit: String(PRICE), budget: String(BigInt(units) * PRICE) },
    })
    const jobId = await coordinator.jobs.createJob(spec, preset.blobs.values())
    const requester = anvilAccount(6)
    const owner = chain.transactions.wallet
    const { contracts } = chain.chain
    const wait = (hash: `0x${string}`) => chain.publicClient.waitForTransactionReceipt({ hash })
    const asRequester = createWalletClient({ account: requester, chain: owner.chain, transport: http(chain.chain.rpcUrl) })
    const budget = BigInt(units) * PRICE
    await wait(await owner.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'mint', args: [requester.address, budget] }))
    await wait(await asRequester.writeContract({ address: contracts.token, abi: tabTokenAbi, functionName: 'approve', args: [contracts.jobEscrow, budget] }))
    await wait(
      await asRequester.writeContract({
        address: contracts.jobEscrow,
        abi: jobEscrowAbi,
        functionName: 'deposit',
        args: [jobId, budget, BigInt(Math.floor(Date.now() / 1000) + 86_400)],
      }),
    )
    await settlement.escrow.sync()

    let nextUnit = 0
    for (const accounts of ACCOUNT_COUNTS) {
      const addresses = Array.from({ length: accounts }, () => privateKeyToAccount(generatePrivateKey()).address)
      const samples: Omit<EpochRow, 'accounts' | 'claimGas'>[] = []
      let claimGas = 0n
      for (let repeat = 0; repeat <= REPEATS; repeat++) {
        // Each repeat: every account earns one more unit, so every epoch has `accounts` leaves.
        await coordinator.db.query(
          `UPDATE units SET status = 'accepted', leased_to = a.address, accepted_at = $2 + a.i, examples = 320, output_hash = '0x'
             FROM unnest($3::text[]) WITH ORDINALITY AS a(address, i)
            WHERE units.job_id = $1 AND units.round = 0 AND units.unit = $4 + a.i - 1`,
          [jobId, Date.now(), addresses, nextUnit],
        )
        nextUnit += accounts
        const t0 = performance.now()
        await settlement.epochs.prepare()
        const t1 = performance.now()
        const epoch = await settlement.closeEpoch()
        const t2 = performance.now()
        const p0 = performance.now()
        const view = await settlement.rewards(addresses[accounts - 1]!)
        const proofMs = performance.now() - p0
        if (!epoch || epoch.status !== 'posted' || !view.latest) throw new Error('epoch was not posted')
        if (repeat === 0) {
          // The first epoch of a size warms caches (and pays for first-time storage writes); not counted.
          continue
        }
        samples.push({ buildMs: t1 - t0, postMs: t2 - t1, totalMs: t2 - t0, proofMs })
        if (repeat === REPEATS) {
          await chain.publicClient.request({ method: 'evm_increaseTime' as never, params: [chain.chain.challengeWindowSeconds + 1] as never })
          await chain.publicClient.request({ method: 'evm_mine' as never, params: [] as never })
          const claimable = (await settlement.rewards(addresses[0]!)).claimable!
          const hash = await owner.writeContract({
            address: contracts.rewardDistributor,
            abi: rewardDistributorAbi,
            functionName: 'claim',
            args: [BigInt(claimable.epoch), addresses[0]!, BigInt(claimable.cumulativeAmount), claimable.proof],
          })
          claimGas = (await wait(hash)).gasUsed
        }
      }
      rows.push({
        accounts,
        buildMs: median(samples.map((s) => s.buildMs)),
        postMs: median(samples.map((s) => s.postMs)),
        totalMs: median(samples.map((s) => s.totalMs)),
        proofMs: median(samples.map((s) => s.proofMs)),
        claimGas,
      })
      console.log(`epoch with ${accounts} accounts: ${rows.at(-1)!.totalMs.toFixed(0)} ms to posted`)
    }
    const window = chain.chain.challengeWindowSeconds
    const md = [
      '# Settlement: from epoch close to claimable root',
      '',
      `Embedded PGlite and a local anvil (one block per transaction), median of ${REPEATS} epochs per size after one warm-up.`,
      'Build = earnings query + Merkle tree + stored row; post = `postRoot` sent, mined and recorded.',
      `A root becomes claimable the challenge window after it is posted: ${window} s on the local chain (a deployment parameter).`,
      '',
      '| accounts in tree | build | post (tx + receipt) | close → posted | close → claimable | proof lookup | claim gas |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...rows.map(
        (r) =>
          `| ${r.accounts} | ${r.buildMs.toFixed(0)} ms | ${r.postMs.toFixed(0)} ms | ${r.totalMs.toFixed(0)} ms | ${window} s + ${(r.totalMs / 1000).toFixed(2)} s | ${r.proofMs.toFixed(1)} ms | ${r.claimGas} |`,
      ),
      '',
      'Reproduce: `npm run bench` (or `npx tsx bench/settlement.ts`).',
      '',
    ].join('\n')
    await mkdir(RESULTS, { recursive: true })
    await writeFile(join(RESULTS, 'settlement.md'), md)
    await writeFile(join(RESULTS, 'settlement.json'), JSON.stringify({ challengeWindowSeconds: window, rows }, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v), 2))
    console.log(md)
  } finally {
    await coordinator.dispose()
  }
}

await main()
