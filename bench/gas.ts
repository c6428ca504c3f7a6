/**
 * Gas table of TabTrain's contracts: writes bench/results/gas.md and bench/results/gas.json.
 *
 * A fresh anvil, the default deployment, then one realistic life cycle that calls every public
 * state-changing function at least once: requesters escrow jobs, contributors stake, the coordinator
 * posts epochs (1 and 10 job charges; reward trees of 10 and 1,000 leaves; claims trees of 1,000 digests),
 * contributors claim with real proofs, a watcher proves double signing, the referee posts a verdict
 * proven against an epoch's claims tree, frozen rewards are swept, jobs close and refund, stakes unstake
 * and withdraw. Every figure is `gasUsed` from the transaction's receipt, so it includes the
 * 21,000 base cost and calldata. Gas is deterministic for a given compiler and EVM version; the deploy
 * wall time is this machine's.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { getAddress, keccak256, toHex, type Address, type Hash, type TransactionReceipt } from 'viem'
import solc from 'solc'
import { signWorkClaim, workClaimDigest, type ClaimDomainParams, type WorkClaim } from '../src/protocol/claim.ts'
import { buildRewardTree, rewardProof, type RewardTree } from '../src/protocol/rewards.ts'
import { EVM_VERSION, OPTIMIZER_RUNS } from '../contracts/build.ts'
import { DEFAULT_DEPLOY_PARAMETERS, deployTabTrain } from '../contracts/deploy.ts'
import { startTestChain, type AccountName } from '../contracts/testing.ts'
import { buildClaimsTree, claimProof, claimsRootOf, type ClaimsTree } from '../coordinator/settlement/claimsTree.ts'

const RESULTS = join(dirname(fileURLToPath(import.meta.url)), 'results')

interface GasRow {
  contract: string
  function: string
  case: string
  gasUsed: number
}

const rows: GasRow[] = []
const record = (contract: string, fn: string, situation: string, receipt: TransactionReceipt) => {
  rows.push({ contract, function: fn, case: situation, gasUsed: Number(receipt.gasUsed) })
}

const t = await startTestChain({ parameters: DEFAULT_DEPLOY_PARAMETERS })
try {
  const { accounts, contracts, deployment } = t
  const as = t.as
  const mined = t.mined

  // Deployment: read back every transaction deployTabTrain sent, in order.
  {
    const names: Record<string, string> = {
      [contracts.token.toLowerCase()]: 'TabToken',
      [contracts.stakeManager.toLowerCase()]: 'StakeManager',
      [contracts.jobEscrow.toLowerCase()]: 'JobEscrow',
      [contracts.rewardDistributor.toLowerCase()]: 'RewardDistributor',
      [contracts.disputeResolver.toLowerCase()]: 'DisputeResolver',
    }
    const roleNames: Record<string, string> = {
      [keccak256(toHex('CHARGER_ROLE'))]: 'CHARGER_ROLE → RewardDistributor',
      [keccak256(toHex('COORDINATOR_ROLE'))]: 'COORDINATOR_ROLE → coordinator',
      [keccak256(toHex('POSTER_ROLE'))]: 'POSTER_ROLE → coordinator',
      [keccak256(toHex('FREEZER_ROLE'))]: 'FREEZER_ROLE → DisputeResolver',
      [keccak256(toHex('SLASHER_ROLE'))]: 'SLASHER_ROLE → DisputeResolver',
      [keccak256(toHex('REFEREE_ROLE'))]: 'REFEREE_ROLE → coordinator',
    }
    const latest = await t.publicClient.getBlockNumber({ cacheTime: 0 })
    for (let n = deployment.blockNumber; n <= latest; n++) {
      const block = await t.publicClient.getBlock({ blockNumber: n, includeTransactions: true })
      for (const tx of block.transactions) {
        const receipt = await t.publicClient.getTransactionReceipt({ hash: tx.hash })
        if (receipt.contractAddress) {
          record(names[receipt.contractAddress.toLowerCase()] ?? '?', 'constructor', 'deploy', receipt)
        } else if (tx.to) {
          const role = `0x${tx.input.slice(10, 74)}`
          record(names[tx.to.toLowerCase()] ?? '?', 'grantRole', roleNames[role] ?? role, receipt)
        }
      }
    }
  }
  const deploymentRows = rows.length
  const deployTimes: number[] = []
  for (let i = 0; i < 5; i++) {
    const started = performance.now()
    await deployTabTrain({
      walletClient: t.wallets.deployer,
      publicClient: t.publicClient,
      admin: accounts.deployer.address,
      coordinator: accounts.coordinator.address,
      treasury: accounts.treasury.address,
      ...DEFAULT_DEPLOY_PARAMETERS,
    })
    deployTimes.push(performance.now() - started)
  }

  // Token.
  const E18 = 10n ** 18n
  record('TabToken', 'mint', 'to a new holder', await mined(as('deployer').token.write.mint([accounts.requester.address, 1_000_000n * E18])))
  record('TabToken', 'mint', 'to an existing holder', await mined(as('deployer').token.write.mint([accounts.requester.address, 1n])))
  record('TabToken', 'transfer', 'to a new holder', await mined(as('requester').token.write.transfer([accounts.carol.address, 1_000n * E18])))
  record('TabToken', 'approve', 'first allowance', await mined(as('requester').token.write.approve([contracts.jobEscrow, 2n ** 256n - 1n])))
  for (const name of ['alice', 'bob', 'carol'] as const) {
    await mined(as('deployer').token.write.mint([accounts[name].address, 1_000n * E18]))
    await mined(as(name).token.write.approve([contracts.stakeManager, 2n ** 256n - 1n]))
  }

  // Escrow: eleven jobs, so that epochs can charge one or ten of them.
  const jobs = Array.from({ length: 11 }, (_, i) => keccak256(toHex(`gas bench job ${i}`)) as Hash)
  const deadline = (await t.now()) + 30n * 86_400n
  for (const [i, job] of jobs.entries()) {
    const receipt = await mined(as('requester').jobEscrow.write.deposit([job, 10_000n * E18, deadline]))
    if (i === 0) record('JobEscrow', 'deposit', 'new job', receipt)
  }
  record('JobEscrow', 'deposit', 'top-up, later deadline', await mined(as('requester').jobEscrow.write.deposit([jobs[0]!, 1_000n * E18, deadline + 86_400n])))

  // Stakes.
  record('StakeManager', 'stake', 'first stake', await mined(as('alice').stakeManager.write.stake([100n * E18])))
  record('StakeManager', 'stake', 'top-up', await mined(as('alice').stakeManager.write.stake([100n * E18])))
  await mined(as('bob').stakeManager.write.stake([100n * E18]))
  await mined(as('carol').stakeManager.write.stake([100n * E18]))
  record('StakeManager', 'requestUnstake', 'first request', await mined(as('carol').stakeManager.write.requestUnstake([10n * E18])))
  record('StakeManager', 'requestUnstake', 'second request (adds, restarts delay)', await mined(as('carol').stakeManager.write.requestUnstake([10n * E18])))
  await mined(as('alice').stakeManager.write.requestUnstake([50n * E18]))
  await mined(as('deployer').token.write.mint([accounts.deployer.address, 10n * E18]))
  await mined(as('deployer').token.write.approve([contracts.stakeManager, 2n ** 256n - 1n]))
  record('StakeManager', 'stakeFor', 'first stake of a new account (the faucet)', await mined(as('deployer').stakeManager.write.stakeFor([accounts.outsider.address, 10n * E18])))

  // Epochs. Leaves are cumulative amounts; each epoch charges the escrows exactly the growth of the total.
  const syntheticAccount = (i: number) => getAddress(`0x${keccak256(toHex(`leaf ${i}`)).slice(26)}`)
  let previousTotal = 0n
  // Claims trees hold 1,000 digests: what an epoch of 1,000 units commits.
  const syntheticDigests = (epoch: bigint) => Array.from({ length: 1_000 }, (_, i) => keccak256(toHex(`claim ${epoch} ${i}`)) as Hash)
  const postEpoch = async (epoch: bigint, leaves: Map<Address, bigint>, chargedJobs: Hash[], situation: string, claims: ClaimsTree | null = buildClaimsTree(syntheticDigests(epoch))) => {
    const tree = buildRewardTree(leaves)
    const total = [...leaves.values()].reduce((a, b) => a + b, 0n)
    const growth = total - previousTotal
    const share = growth / BigInt(chargedJobs.length)
    const requester = accounts.requester.address
    const charges = chargedJobs.map((specHash, i) => ({ specHash, requester, amount: i === 0 ? growth - share * BigInt(chargedJobs.length - 1) : share }))
    record('RewardDistributor', 'postRoot', situation, await mined(as('coordinator').rewardDistributor.write.postRoot([epoch, tree.root as Hash, claimsRootOf(claims), total, charges])))
    previousTotal = total
    return tree
  }
  const contributorsOf = (size: number, amount: (i: number) => bigint) => {
    const leaves = new Map<Address, bigint>([
      [accounts.alice.address, amount(0)],
      [accounts.bob.address, amount(1)],
    ])
    for (let i = 2; i < size; i++) leaves.set(syntheticAccount(i), amount(i))
    return leaves
  }
  const tree1 = await postEpoch(1n, contributorsOf(10, () => 1n * E18), [jobs[0]!], 'first epoch, 1 job charge, 10-leaf tree')
  await t.increaseTime(DEFAULT_DEPLOY_PARAMETERS.challengeWindowSeconds)
  const tree2 = await postEpoch(2n, contributorsOf(1_000, () => 3n * E18), jobs.slice(1, 11), '10 job charges, 1,000-leaf tree')

  const claim = async (by: AccountName, epoch: bigint, tree: RewardTree, account: Address, situation: string) => {
    const p = rewardProof(tree, account)!
    record('RewardDistributor', 'claim', `${situation} (${p.proof.length}-hash proof)`, await mined(as(by).rewardDistributor.write.claim([epoch, account, p.cumulativeAmount, p.proof])))
  }
  await claim('alice', 1n, tree1, accounts.alice.address, '10-leaf tree, first claim, account already holds tokens')
  await t.increaseTime(DEFAULT_DEPLOY_PARAMETERS.challengeWindowSeconds)
  await claim('alice', 2n, tree2, accounts.alice.address, '1,000-leaf tree, after an earlier claim')
  await claim('bob', 2n, tree2, accounts.bob.address, '1,000-leaf tree, first claim, account already holds tokens')
  await claim('outsider', 2n, tree2, syntheticAccount(500), '1,000-leaf tree, sent by a third party for an account holding no tokens yet')

  // Disputes: the domain is the deployed resolver on this chain.
  const domain: ClaimDomainParams = { chainId: t.anvil.chainId, verifyingContract: contracts.disputeResolver }
  const claimOf = (contributor: Address, output: string, unit: number): WorkClaim => ({
    jobId: jobs[0]!,
    round: 1,
    unit,
    inputHash: keccak256(toHex(`input ${unit}`)) as Hash,
    outputHash: keccak256(toHex(output)) as Hash,
    contributor,
    deviceClass: 'webgpu|google/swiftshader|chrome-130|bundle',
  })
  const a = await signWorkClaim(accounts.bob, claimOf(accounts.bob.address, 'out A', 1), domain)
  const b = await signWorkClaim(accounts.bob, claimOf(accounts.bob.address, 'out B', 1), domain)
  record(
    'DisputeResolver',
    'slashDoubleSign',
    'slash 50% to reporter and treasury, first freeze',
    await mined(as('reporter').disputeResolver.write.slashDoubleSign([a.claim, a.signature, b.claim, b.signature])),
  )
  const v = await signWorkClaim(accounts.carol, claimOf(accounts.carol.address, 'wrong output', 2), domain)
  const w = await signWorkClaim(accounts.carol, claimOf(accounts.carol.address, 'wrong output', 3), domain)
  const committed = [v, w].map((s) => workClaimDigest(s.claim, domain))
  const claims3 = buildClaimsTree([...syntheticDigests(3n).slice(2), ...committed])
  const tree3 = await postEpoch(3n, contributorsOf(1_000, () => 4n * E18), [jobs[0]!], '1 job charge, 1,000-leaf tree (the tree size costs nothing here)', claims3)
  record(
    'DisputeResolver',
    'postVerdict',
    'inside the window, claim in a 1,000-claim tree, slash with pending stake, first freeze',
    await mined(
      as('coordinator').disputeResolver.write.postVerdict([v.claim, v.signature, 3n, claimProof(claims3, committed[0]!)!, keccak256(toHex('referee output')) as Hash, accounts.reporter.address]),
    ),
  )
  record(
    'DisputeResolver',
    'postVerdict',
    'already frozen, no reporter',
    await mined(
      as('coordinator').disputeResolver.write.postVerdict([
        w.claim,
        w.signature,
        3n,
        claimProof(claims3, committed[1]!)!,
        keccak256(toHex('referee output')) as Hash,
        '0x0000000000000000000000000000000000000000',
      ]),
    ),
  )

  // Settlement: close and refund; unstake after the delay.
  record('JobEscrow', 'close', 'by the coordinator', await mined(as('coordinator').jobEscrow.write.close([jobs[0]!, accounts.requester.address])))
  record('JobEscrow', 'refund', 'after close, partly charged', await mined(as('requester').jobEscrow.write.refund([jobs[0]!])))
  await t.increaseTime(DEFAULT_DEPLOY_PARAMETERS.unstakeDelaySeconds)
  record('StakeManager', 'withdraw', 'all pending, after the delay', await mined(as('alice').stakeManager.write.withdraw()))
  // Bob double-signed before epoch 3 was posted: his epoch-3 leaf is frozen; what he had not claimed of it goes to the treasury.
  const bob3 = rewardProof(tree3, accounts.bob.address)!
  record(
    'RewardDistributor',
    'sweepFrozen',
    `1,000-leaf tree, after an earlier claim (${bob3.proof.length}-hash proof)`,
    await mined(as('coordinator').rewardDistributor.write.sweepFrozen([3n, accounts.bob.address, bob3.cumulativeAmount, bob3.proof])),
  )
  await t.increaseTime(30 * 86_400 + DEFAULT_DEPLOY_PARAMETERS.settlementPeriodSeconds)
  record('JobEscrow', 'refund', 'unclosed, after deadline + settlement period', await mined(as('requester').jobEscrow.write.refund([jobs[1]!])))

  // Roles the deployment does not exercise: AccessControl's own functions.
  const someone = accounts.outsider.address
  record('JobEscrow', 'grantRole', 'COORDINATOR_ROLE → a second coordinator', await mined(as('deployer').jobEscrow.write.grantRole([keccak256(toHex('COORDINATOR_ROLE')), someone])))
  record('JobEscrow', 'revokeRole', 'COORDINATOR_ROLE', await mined(as('deployer').jobEscrow.write.revokeRole([keccak256(toHex('COORDINATOR_ROLE')), someone])))
  record('TabToken', 'transferOwnership', 'to another address', await mined(as('deployer').token.write.transferOwnership([someone])))

  // Sanity: the run must have covered every state-changing function of every contract.
  const abis = await import('../contracts/generated/index.ts')
  const covered = new Set(rows.map((r) => `${r.contract}.${r.function}`))
  const uncovered: string[] = []
  for (const [contract, abi] of [
    ['TabToken', abis.tabTokenAbi],
    ['StakeManager', abis.stakeManagerAbi],
    ['JobEscrow', abis.jobEscrowAbi],
    ['RewardDistributor', abis.rewardDistributorAbi],
    ['DisputeResolver', abis.disputeResolverAbi],
  ] as const) {
    for (const entry of abi) {
      if (entry.type !== 'function' || !['nonpayable', 'payable'].includes(entry.stateMutability)) continue
      // Called by other contracts only, so their cost is inside their callers' rows.
      const internal = ['JobEscrow.charge', 'RewardDistributor.freeze', 'StakeManager.slash']
      // AccessControl/Ownable administration beyond what the table shows: same code paths as grantRole/revokeRole/transferOwnership.
      const administration = ['renounceRole', 'renounceOwnership', 'transferFrom', 'grantRole', 'revokeRole']
      const id = `${contract}.${entry.name}`
      if (!covered.has(id) && !internal.includes(id) && !administration.includes(entry.name)) uncovered.push(id)
    }
  }
  if (uncovered.length > 0) throw new Error(`gas bench misses: ${uncovered.join(', ')}`)

  const sortedTimes = [...deployTimes].sort((x, y) => x - y)
  const deployMedianMs = sortedTimes[Math.floor(sortedTimes.length / 2)]!
  const meta = {
    generatedAt: new Date().toISOString(),
    solc: solc.version(),
    evmVersion: EVM_VERSION,
    optimizerRuns: OPTIMIZER_RUNS,
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}`,
    deployParameters: DEFAULT_DEPLOY_PARAMETERS,
    deployWallMs: { median: Math.round(deployMedianMs), runs: deployTimes.map((ms) => Math.round(ms)) },
  }
  await mkdir(RESULTS, { recursive: true })
  await writeFile(join(RESULTS, 'gas.json'), `${JSON.stringify({ ...meta, rows }, null, 2)}\n`)
  const deployTotal = rows.slice(0, deploymentRows).reduce((sum, r) => sum + r.gasUsed, 0)
  const md = [
    '# TabTrain contracts: gas used',
    '',
    `Run ${meta.generatedAt} on anvil (fresh chain), solc ${meta.solc}, optimizer ${meta.optimizerRuns} runs, EVM ${meta.evmVersion}. Reproduce with \`npx tsx bench/gas.ts\` (part of \`npm run bench\`).`,
    '',
    "Each figure is the receipt's `gasUsed`: the 21,000 base cost and calldata included. Cold/warm storage matters, so the case column says what was already written. `JobEscrow.charge`, `RewardDistributor.freeze` and `StakeManager.slash` are only callable by the other contracts; their cost is inside `postRoot`, `slashDoubleSign` and `postVerdict`.",
    '',
    '| contract | function | case | gas used |',
    '| --- | --- | --- | ---: |',
    ...rows.map((r) => `| ${r.contract} | ${r.function} | ${r.case} | ${r.gasUsed.toLocaleString('en-US')} |`),
    '',
    `Whole deployment (5 contracts + 6 role grants): ${deployTotal.toLocaleString('en-US')} gas; wall time on anvil ${meta.deployWallMs.median} ms (median of ${deployTimes.length}, ${meta.machine}).`,
    '',
  ].join('\n')
  await writeFile(join(RESULTS, 'gas.md'), md)
  console.log(md)
} finally {
  await t.stop()
}
