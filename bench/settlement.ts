/**
 * `npm run bench` (settlement part): time from closing an epoch to a claimable root, on the embedded
 * store and the local anvil, for reward trees of 10, 100 and 1,000 contributors. Writes
 * bench/results/settlement.md and settlement.json.
 *
 * Payable answers are written straight into the store as `attempts` rows (submitted, verdict 'unchecked',
 * with the claim and its EIP-712 digest as coordinator/jobs.ts writes them; unsigned) of a real paid job,
 * funded on-chain, with distinct contributor addresses, because this measures the epoch (earnings, reward
 * tree, claims tree, post), not the claim path `bench/run.ts` covers.
 * A root is claimable `challengeWindow` seconds after it is posted; that window is a parameter, so the
 * table reports the measured part (build + post + receipt) and adds the window separately.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createWalletClient, http } from 'viem'
import { randomUUID } from 'node:crypto'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { anvilAccount } from '../contracts/anvil.ts'
import { jobEscrowAbi, rewardDistributorAbi, tabTokenAbi } from '../contracts/generated/index.ts'
import { parseJobSpec, workClaimDigest, type Hash, type WorkClaim } from '../src/protocol/index.ts'
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
    const requester = anvilAccount(6)
    const spec = parseJobSpec({
      ...preset.spec,
      name: 'bench: epochs',
      training: { ...preset.spec.training, unitsPerRound: units, rounds: 1 },
      payment: { pricePerUnit: String(PRICE), budget: String(BigInt(units) * PRICE), requester: requester.address },
    })
    const jobId = (await coordinator.jobs.createJob(spec, preset.blobs.values())) as Hash
    const domain = coordinator.jobs.domain
    const inputHash = spec.model.initialWeights
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
        // Each repeat: every account earns one more unit (a payable attempt), so every epoch has `accounts` leaves.
        const now = Date.now()
        const rowsIn = addresses.map((contributor, i) => {
          const unit = nextUnit + i
          const claim: WorkClaim = { jobId, round: 0, unit, inputHash, outputHash: `0x${unit.toString(16).padStart(64, '0')}` as Hash, contributor, deviceClass: 'bench' }
          return { leaseId: randomUUID(), unit, contributor, claim, digest: workClaimDigest(claim, domain), at: now + i }
        })
        await coordinator.db.query(
          `INSERT INTO attempts (lease_id, job_id, round, unit, contributor, kind, status, issued_at, expires_at, input_hash, output_hash,
                                 device_class, claim, claim_digest, examples, submitted_at, verdict)
           SELECT a.lease_id, $1, 0, a.unit, a.contributor, 'primary', 'submitted', a.at, a.at + 120000, $2, a.claim->>'outputHash',
                  'bench', a.claim, a.digest, 320, a.at, 'unchecked'
             FROM unnest($3::text[], $4::int[], $5::text[], $6::jsonb[], $7::text[], $8::bigint[]) AS a(lease_id, unit, contributor, claim, digest, at)`,
          [
            jobId,
            inputHash,
            rowsIn.map((r) => r.leaseId),
            rowsIn.map((r) => r.unit),
            rowsIn.map((r) => r.contributor),
            rowsIn.map((r) => JSON.stringify(r.claim)),
            rowsIn.map((r) => r.digest),
            rowsIn.map((r) => r.at),
          ],
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
      'Build = commit the epoch\'s claims (claims tree of their EIP-712 digests) + earnings query + reward Merkle tree + stored row; post = `postRoot` sent, mined and recorded.',
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
