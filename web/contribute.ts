import { CoordinatorClient } from '../src/client/coordinatorClient.ts'
import type { JobSummary } from '../src/protocol/index.ts'
import { createChainReader } from './lib/chainClient.ts'
import { openHistory, memoryHistory } from './lib/history.ts'
import { coordinatorUrlFromPage } from './lib/liveProgress.ts'
import { createReputationCard } from './lib/reputationCard.ts'
import { createActivityLog } from './contribute/activityLog.ts'
import { createCapabilityCard } from './contribute/capabilityCard.ts'
import { byId } from './contribute/dom.ts'
import { createJobPicker } from './contribute/jobPicker.ts'
import { createLiveStats } from './contribute/liveStats.ts'
import { createPauseControls } from './contribute/pauseControls.ts'
import { createRewardsCard } from './contribute/rewardsCard.ts'
import { createWalletSession } from './contribute/session.ts'
import { createStakeCard } from './contribute/stakeCard.ts'
import { createTrainingCard, type TrainingCard } from './contribute/trainingCard.ts'
import { startTrainingWorker } from './contribute/trainingWorker.ts'
import { createWalletCard } from './contribute/walletCard.ts'

/**
 * The contribute page: this tab trains a job in a Worker and earns for the chosen wallet. Each card is its
 * own module under contribute/; this file only wires them together, passing the state they share.
 */

/** How often the wallet's balances and rewards are read again without any event to prompt it. */
const REFRESH_MS = 4000

async function main(log: ReturnType<typeof createActivityLog>) {
  const client = new CoordinatorClient(coordinatorUrlFromPage())
  const capability = createCapabilityCard()
  const [worker, info, jobs, history] = await Promise.all([
    startTrainingWorker(client.baseUrl),
    client.info(),
    client.listJobs(),
    openHistory().catch(() => memoryHistory()),
  ])
  capability.showDevice(worker.device)

  const session = createWalletSession(client, info.chain ? { chain: info.chain, reader: createChainReader(info.chain) } : null)
  const reputation = createReputationCard(byId('reputation-card'), client)
  const rewards = createRewardsCard({ session, log, alsoRead: (address) => reputation.show(address) })
  const stake = createStakeCard({ session, log, rewards })
  const stats = createLiveStats({ client, history, onSpeed: (rate) => capability.showSpeed(rate) })

  // The pause watchers call into the training card, which needs their rest rule: bound once both exist.
  let training: TrainingCard | null = null
  const pauses = createPauseControls((reasons) => training?.pausesChanged(reasons))
  training = createTrainingCard({
    client,
    executor: worker.executor,
    deviceClass: worker.device.deviceClass,
    pauses,
    stats,
    log,
    onAccepted: () => void rewards.refresh().catch(() => {}),
    onLeased: () => stake.leased(),
    onStakeRequired: (reason, jobId) => stake.stakeRequired(reason, jobId),
  })
  const card = training

  const wallet = createWalletCard({
    session,
    log,
    explainContext: () => rewards.explainContext(),
    adopted: async (next) => {
      rewards.clear()
      await card.setWallet(next)
      // A failed read is shown by the rewards card and retried by the timer; the switch itself succeeded.
      await rewards.refresh().catch(() => {})
    },
  })
  session.onBusyChange.add(() => wallet.updateButtons())

  const picker = createJobPicker(jobs, info.chain?.token ?? null, (job: JobSummary) => {
    log(`Job: ${job.name}`)
    void card.setJob(job)
  })
  await card.setJob(picker.current)
  await wallet.restore(info.chain).catch((error: unknown) => log(`Wallet: ${error instanceof Error ? error.message : String(error)}`, 'bad'))
  setInterval(() => void rewards.refresh().catch(() => {}), REFRESH_MS)
  if (session.settlement) await rewards.firstRead()

  if (!picker.current) log('The coordinator has no jobs.', 'bad')
  else if (picker.current.status !== 'active') log('This job has finished.', 'good')
  document.body.dataset.ready = 'true'
}

const log = createActivityLog(byId('log'))
main(log).catch((error: unknown) => {
  log(`Could not start: ${error instanceof Error ? error.message : String(error)}`, 'bad')
  document.body.dataset.ready = 'error'
})
