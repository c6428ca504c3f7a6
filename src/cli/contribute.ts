import { formatUnits } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { CoordinatorClient, CoordinatorRequestError, CoordinatorUnreachableError } from '../client/coordinatorClient.ts'
import type { CoordinatorInfo, Hash, JobDetail, JobSummary } from '../protocol/index.ts'
import { createNodeContributor, startNodeExecutor } from '../worker/nodeContributor.ts'
import { WebgpuUnavailableError } from '../worker/nodeBackend.ts'
import type { NodeExecutor } from '../worker/nodeThreadExecutor.ts'
import type { SchedulerEvent } from '../worker/scheduler.ts'
import { EXIT, type ContributeOptions } from './args.ts'
import { defaultKeyFile, KeyFileError, loadOrCreateKey } from './keyFile.ts'
import { examplesPerSecond, formatDuration, ProgressReporter, type ProgressOutput } from './progress.ts'

export interface CliIo {
  out: ProgressOutput
  /** Errors: one sentence that says what went wrong and what to do. */
  error(text: string): void
}

/** Stopping the command: the contribution loop ends, then this exits the process with this status. */
class Exit extends Error {
  override name = 'Exit'
  constructor(
    readonly status: number,
    message = '',
  ) {
    super(message)
  }
}

/** How often what the address earned is asked for while it trains a paid job. */
const EARNED_EVERY_MS = 10_000

const shortId = (id: string) => `${id.slice(0, 10)}…`
const jobLabel = (job: JobSummary) => `"${job.name}" (${shortId(job.id)})`

/** An amount in base units with the chain's token, e.g. `1.5 TTT`. */
function tokenAmount(info: CoordinatorInfo, amount: string | bigint): string {
  const token = info.chain?.token ?? { symbol: 'tokens', decimals: 18 }
  return `${formatUnits(BigInt(amount), token.decimals)} ${token.symbol}`
}

/** Why a job issues no unit to anybody now, or null when it does (or may, after a wait the loop handles). */
function notIssuing(job: JobSummary): string | null {
  if (job.status === 'finished') return 'it is finished'
  if (job.status === 'cancelled') return 'its owner cancelled it'
  if (job.payment?.status === 'closed') return 'its escrow is closed'
  return null
}

/** The coordinator's /api/info, or an Exit that says why there is none. */
async function connect(client: CoordinatorClient): Promise<CoordinatorInfo> {
  try {
    const info = await client.info()
    if (typeof info?.chainId !== 'number' || typeof info.coordinatorId !== 'string') throw new SyntaxError('not a coordinator answer')
    return info
  } catch (error) {
    if (error instanceof CoordinatorUnreachableError) {
      throw new Exit(EXIT.failure, `${error.message}. Check the address, and that the coordinator is running and reachable from here.`)
    }
    const what = error instanceof CoordinatorRequestError ? `HTTP ${error.status}` : 'something that is not a coordinator answer'
    throw new Exit(EXIT.failure, `${client.baseUrl} answered /api/info with ${what}: is it a TabTrain coordinator's address?`)
  }
}

/**
 * The job to train: `requested`, or the first active job the coordinator lists that can issue units (the
 * contribute page picks the same way), leaving out `done` (jobs this run already saw end).
 */
async function chooseJob(client: CoordinatorClient, requested: Hash | null, done: ReadonlySet<string>): Promise<{ job: JobDetail; why: string } | null> {
  if (requested) {
    let job: JobDetail
    try {
      job = await client.job(requested)
    } catch (error) {
      if (error instanceof CoordinatorRequestError && (error.code === 'job_not_found' || error.status === 404)) {
        const active = (await client.listJobs().catch(() => [])).filter((j) => j.status === 'active')
        const list = active.length ? ` Its active jobs: ${active.map((j) => `${j.id} ${JSON.stringify(j.name)}`).join('; ')}.` : ' It has no active job.'
        throw new Exit(EXIT.failure, `the coordinator at ${client.baseUrl} has no job ${requested}.${list}`)
      }
      throw error
    }
    const reason = notIssuing(job)
    if (reason) throw new Exit(done.has(job.id) ? EXIT.ok : EXIT.failure, `job ${jobLabel(job)} issues no more units: ${reason}.`)
    return { job, why: 'chosen with --job' }
  }
  const jobs = await client.listJobs()
  // Awaiting a deposit or paused: none of these issue a unit now; an active one that can pay (or needs no pay) does.
  const candidates = jobs.filter((j) => j.status === 'active' && !done.has(j.id) && (j.payment === null || j.payment.status === 'funded'))
  const first = candidates[0]
  if (!first) return null
  const why =
    candidates.length === 1
      ? 'the only active job the coordinator lists'
      : `the first of ${candidates.length} active jobs the coordinator lists (oldest first); --job ID picks another`
  return { job: await client.job(first.id), why }
}

/** What to do about a paid job's stake, for a person: the faucet on a local chain, StakeManager elsewhere. */
function stakeAdvice(info: CoordinatorInfo, address: string, refusal: string): string {
  const chain = info.chain
  if (chain?.faucet) {
    return `${refusal}\nThis coordinator runs a local chain with a faucet: run again with --faucet and it gives ${address} gas and test tokens and stakes the minimum for it.`
  }
  const where = chain ? `StakeManager ${chain.contracts.stakeManager} on chain ${chain.chainId} (RPC ${chain.rpcUrl}), in ${chain.token.symbol} (token ${chain.contracts.token})` : 'StakeManager'
  return (
    `${refusal}\nStake for ${address} in ${where}: from any wallet that holds the token, approve StakeManager for the amount and call ` +
    `stakeFor(${address}, amount); or import this key into a browser wallet and use the Stake card of the contribute page. Then run again.`
  )
}

/** The contribution loop on one job, until it finishes, stops by itself, or a signal stops it. */
async function trainJob(params: {
  url: string
  info: CoordinatorInfo
  job: JobDetail
  account: PrivateKeyAccount
  executor: NodeExecutor
  io: CliIo
  totals: { accepted: number; refused: number; examples: number; handedBack: number; lastLoss: number | null }
  onScheduler: (stop: (() => Promise<void>) | null) => void
}): Promise<{ finished: boolean; stopped: { reason: string; code?: string } | null }> {
  const { url, info, job, account, executor, io, totals } = params
  const client = new CoordinatorClient(url)
  const paid = job.spec.payment !== undefined && job.spec.payment !== null && info.chain !== null
  const progress = new ProgressReporter(io.out, {
    job: jobLabel(job),
    round: job.round,
    rounds: job.rounds,
    accepted: 0,
    refused: 0,
    examples: 0,
    lastLoss: null,
    earned: null,
    status: 'starting',
  })
  let stopped: { reason: string; code?: string } | null = null
  let lastNote = ''
  const noteOnce = (line: string) => {
    if (line !== lastNote) progress.note(line)
    lastNote = line
  }
  let earnedAsked = 0
  const askEarned = () => {
    if (!paid || Date.now() - earnedAsked < EARNED_EVERY_MS) return
    earnedAsked = Date.now()
    client.rewards(account.address).then(
      (rewards) => progress.update({ earned: tokenAmount(info, rewards.earned) }),
      () => {},
    )
  }
  askEarned()
  const earnedTimer = setInterval(askEarned, EARNED_EVERY_MS)
  earnedTimer.unref?.()

  let settle: (finished: boolean) => void = () => {}
  const ended = new Promise<boolean>((resolve) => (settle = resolve))
  const onEvent = (event: SchedulerEvent) => {
    switch (event.type) {
      case 'state':
        if (event.state === 'stopping') progress.update({ status: 'stopping' })
        if (event.state === 'finished' || event.state === 'idle') settle(event.state === 'finished')
        return
      case 'leased':
        // A lease that lands after a stop goes straight back: no training to announce.
        if (!event.prefetched && scheduler.currentState === 'running') progress.update({ round: event.lease.unit.round, status: 'training' })
        return
      case 'unit-accepted': {
        const s = progress.state
        const first = s.accepted === 0
        totals.accepted++
        totals.examples += event.report.examples
        totals.lastLoss = event.report.meanLoss
        lastNote = ''
        progress.update({ accepted: s.accepted + 1, examples: s.examples + event.report.examples, lastLoss: event.report.meanLoss, round: event.report.round }, { force: first })
        if (first) earnedAsked = 0
        askEarned()
        return
      }
      case 'unit-refused':
        totals.refused++
        progress.state.refused++
        progress.note(`unit ${event.unit} of round ${event.round} refused (${event.code}): ${event.message}`)
        return
      case 'waiting':
        progress.update({ status: `waiting: ${event.reason}` })
        noteOnce(`waiting: ${event.reason} (asking again in ${formatDuration(event.retryAfterMs)})`)
        return
      case 'resting':
        return
      case 'error':
        progress.update({ status: `retrying in ${formatDuration(event.retryAfterMs)}` })
        noteOnce(`error: ${event.message} (retrying, next in ${formatDuration(event.retryAfterMs)})`)
        return
      case 'released':
        // A prefetched unit dropped as stale is no news; a unit handed back on a stop is.
        if (event.reason) return
        if (event.handedBack) totals.handedBack++
        progress.note(
          event.handedBack
            ? `handed unit ${event.unit} of round ${event.round} back to the coordinator: it is leasable again at once`
            : `could not hand unit ${event.unit} of round ${event.round} back (${event.message ?? 'no answer'}): its lease runs out by itself`,
        )
        return
      case 'stopped':
        stopped = { reason: event.reason, ...(event.code ? { code: event.code } : {}) }
        return
    }
  }

  const scheduler = createNodeContributor({ coordinatorUrl: url, jobId: job.id, signer: account, executor, onEvent })
  params.onScheduler(() => scheduler.stop())
  scheduler.start()
  const finished = await ended
  params.onScheduler(null)
  clearInterval(earnedTimer)
  // A loop that stopped at its first request (a stake missing, a ban) has no progress worth a line.
  const worked = progress.state.accepted + progress.state.refused > 0 || stopped === null
  progress.update({ status: finished ? 'finished' : 'stopped' }, { force: worked })
  progress.end()
  if (finished) io.out.write(`Job ${jobLabel(job)} finished.\n`)
  return { finished, stopped }
}

/**
 * `tabtrain contribute`: the key, the coordinator, the job, the backend, then the loop with a progress line
 * until the job finishes or a signal stops it; a summary at the end. Returns the exit status.
 */
export async function contribute(options: ContributeOptions, io: CliIo): Promise<number> {
  const say = (line: string) => io.out.write(`${line}\n`)
  const startedAt = Date.now()
  const totals = { accepted: 0, refused: 0, examples: 0, handedBack: 0, lastLoss: null as number | null }
  let stopLoop: (() => Promise<void>) | null = null
  let stopping = false
  let executor: NodeExecutor | null = null

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      io.error(`\n${signal} again: exiting at once.`)
      process.exit(EXIT.interrupted)
    }
    stopping = true
    if (!stopLoop) {
      // Setting up, or between jobs: no unit is held, so nothing to hand back.
      io.error(`\n${signal}: stopped; no unit was in flight.`)
      process.exit(EXIT.ok)
    }
    io.out.write(`\n${signal}: stopping; the unit in flight goes back to the coordinator (${signal === 'SIGINT' ? 'Ctrl-C' : signal} again quits at once).\n`)
    void stopLoop()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    // The key first: a person who only wanted their address sees it even when the coordinator is down.
    let key: Awaited<ReturnType<typeof loadOrCreateKey>>
    try {
      key = await loadOrCreateKey(options.keyFile ?? defaultKeyFile())
    } catch (error) {
      if (error instanceof KeyFileError) throw new Exit(EXIT.failure, error.message)
      throw error
    }
    const { account } = key
    if (key.created) {
      say(`Created a new key in ${key.path} (mode 0600) for address ${account.address}.`)
      say(`  Keep this file and back it up: whatever ${account.address} earns is claimed with it. Anyone who reads it can claim too.`)
    } else {
      say(`Key: ${key.path} (address ${account.address})`)
    }
    if (key.warning) io.error(`warning: ${key.warning}`)

    const client = new CoordinatorClient(options.coordinatorUrl)
    const info = await connect(client)
    const chain = info.chain
    say(
      `Coordinator: ${client.baseUrl} (${chain ? `chain ${chain.chainId}${chain.faucet ? ', a local chain with a faucet' : ''}; rewards in ${chain.token.symbol}` : 'no chain: volunteer jobs only'})`,
    )

    if (options.faucet) {
      if (!chain?.faucet) {
        throw new Exit(EXIT.failure, `--faucet: ${chain ? `this coordinator settles on chain ${chain.chainId}, which has no faucet (local chains only); stake from a wallet instead (README, "Give a server")` : 'this coordinator runs without a chain, so there is nothing to stake'}.`)
      }
      const drip = await client.faucet(account.address)
      say(
        drip.txHashes.length === 0
          ? `Faucet: ${account.address} already had gas, tokens and the minimum stake.`
          : `Faucet: ${account.address} now holds ${tokenAmount(info, drip.tokens)} and ${formatUnits(BigInt(drip.ether), 18)} ETH for gas, with ${tokenAmount(info, drip.staked)} staked.`,
      )
    }

    // The job before the backend: a wrong --job is said at once, not after a GPU has started.
    const done = new Set<string>()
    let chosen = await chooseJob(client, options.jobId, done)
    if (!chosen) {
      throw new Exit(EXIT.failure, `the coordinator at ${client.baseUrl} has no active job that issues units now. Try later, or name one with --job ID (it waits while the job is paused or awaits its deposit).`)
    }

    // On the cpu backend units compute in a worker thread: this one stays free for the loop and Ctrl-C.
    try {
      executor = await startNodeExecutor(client.baseUrl, options.backend)
    } catch (error) {
      if (error instanceof WebgpuUnavailableError) throw new Exit(EXIT.failure, `--backend webgpu: no WebGPU here: ${error.message}. --backend cpu (or auto) trains on the CPU.`)
      throw error
    }
    const backend = executor.backend
    say(`Backend: ${backend.description}`)
    if (backend.fallbackReason) say(`  (no WebGPU: ${backend.fallbackReason})`)

    let lastStop: { reason: string; code?: string } | null = null
    for (;;) {
      if (stopping) break
      chosen ??= await chooseJob(client, options.jobId, done)
      if (!chosen) {
        say(`No other active job at ${client.baseUrl}.`)
        break
      }
      const { job, why } = chosen
      const price = job.payment && chain ? `pays ${tokenAmount(info, job.payment.pricePerUnit)} per accepted unit` : 'volunteer job (no pay)'
      say(`Job: ${jobLabel(job)}, ${why}; round ${job.round} of ${job.rounds}; ${price}`)
      say(`  ${job.id}`)
      say(`Device class: ${backend.deviceClass(job.spec.kernelBundle)}`)
      const result = await trainJob({
        url: client.baseUrl,
        info,
        job,
        account,
        executor,
        io,
        totals,
        onScheduler: (stop) => (stopLoop = stop),
      })
      done.add(job.id)
      chosen = null
      if (stopping) break
      if (result.stopped) {
        lastStop = result.stopped
        // A job cancelled under a run that chose it itself: on to the next one.
        if (!(result.stopped.code === 'job_cancelled' && options.jobId === null)) break
        say(`Job ${jobLabel(job)} stopped: ${result.stopped.reason}`)
        continue
      }
      if (!result.finished || options.jobId !== null) break
    }

    const elapsed = Date.now() - startedAt
    const answered = totals.accepted + totals.refused
    if (lastStop && !stopping && answered === 0) throw new Exit(EXIT.failure, lastStop.code === 'stake_required' ? stakeAdvice(info, account.address, lastStop.reason) : lastStop.reason)
    say(
      `${stopping ? 'Stopped' : 'Done'} after ${formatDuration(elapsed)}: ${answered} unit${answered === 1 ? '' : 's'} answered (${totals.accepted} accepted, ${totals.refused} refused), ` +
        `${totals.examples} training examples, ${examplesPerSecond(totals.examples, elapsed).toFixed(1)} examples/s` +
        `${totals.lastLoss === null ? '' : `, last loss ${totals.lastLoss.toFixed(4)}`}.`,
    )
    if (totals.handedBack > 0) say(`Handed ${totals.handedBack} unit${totals.handedBack === 1 ? '' : 's'} in flight back to the coordinator.`)
    if (chain) {
      const rewards = await client.rewards(account.address).catch(() => null)
      if (rewards) say(`${account.address} has earned ${tokenAmount(info, rewards.earned)} at this coordinator; claim it on ${client.baseUrl}/contribute.html.`)
    }
    if (lastStop && !stopping) {
      const message = lastStop.code === 'stake_required' ? stakeAdvice(info, account.address, lastStop.reason) : lastStop.reason
      throw new Exit(EXIT.failure, message)
    }
    return EXIT.ok
  } catch (error) {
    if (error instanceof Exit) {
      if (error.message) (error.status === EXIT.ok ? say : io.error)(error.status === EXIT.ok ? error.message : `tabtrain contribute: ${error.message}`)
      return error.status
    }
    if (error instanceof CoordinatorUnreachableError) {
      io.error(`tabtrain contribute: ${error.message}. Check the address, and that the coordinator is running.`)
      return EXIT.failure
    }
    if (error instanceof CoordinatorRequestError) {
      io.error(`tabtrain contribute: the coordinator refused (${error.code}): ${error.message}`)
      return EXIT.failure
    }
    throw error
  } finally {
    // Still listening while the thread closes: a second Ctrl-C then exits at once, as promised.
    await executor?.close().catch(() => {})
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
