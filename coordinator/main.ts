import * as tf from '@tensorflow/tfjs'
import { configFromEnv } from './config.ts'
import { createLogger } from './ops/logging.ts'
import { startCoordinator } from './server.ts'

// Production mode skips tfjs's debug checks and its advice to install tfjs-node (a native build that
// cannot be fetched on these machines); the coordinator only evaluates small models on held-out data.
tf.enableProdMode()

// JSON lines for a log collector (TABTRAIN_LOG_FORMAT=json, or stdout not a terminal); in a terminal, the
// banner and warnings only (TABTRAIN_LOG_LEVEL=info shows rounds, checks and epochs too). docs/operations.md.
const { log, logger, banner } = createLogger()

try {
  const config = configFromEnv()
  const store = config.databaseUrl ? 'PostgreSQL at DATABASE_URL' : `embedded PGlite in ${config.dataDir}`
  log(`store: ${store}`)
  const coordinator = await startCoordinator(config, { log, logger })
  const chain = coordinator.chain?.chain
  if (chain) {
    log(`chain ${chain.chainId} at ${chain.rpcUrl}; claims are signed for DisputeResolver ${chain.contracts.disputeResolver}`, { contracts: chain.contracts })
    log(`epochs every ${config.epochSeconds} s; roots claimable ${chain.challengeWindowSeconds} s after posting`)
  } else {
    log('no chain (TABTRAIN_CHAIN=off): volunteer jobs only, no rewards')
  }
  const url = coordinator.url
  // spawnCoordinator (coordinator/testing/) and people wait for the Contribute line: keep its form.
  banner(
    [
      '',
      'TabTrain is running.',
      `  Contribute: ${url}/contribute.html`,
      `  Post a job: ${url}/new.html`,
      `  Jobs:       ${url}/`,
      `  Embed:      <script type="module" src="${url}/widget.js"></script>`,
      `  Store:      ${store}`,
      `  Chain:      ${chain ? `${chain.chainId} at ${chain.rpcUrl}` : 'none (volunteer jobs only)'}`,
      `  Operate:    ${url}/metrics  ${url}/readyz  ${url}/api/openapi.json`,
      '',
    ].join('\n'),
    { url, contribute: `${url}/contribute.html`, store, chainId: chain?.chainId ?? null },
  )

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: closing`)
      void coordinator.close().finally(() => process.exit(0))
    })
  }
} catch (error) {
  logger.fatal({ err: error }, `the coordinator did not start: ${(error as Error).message}`)
  process.exit(1)
}
