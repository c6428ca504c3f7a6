import * as tf from '@tensorflow/tfjs'
import { configFromEnv } from './config.ts'
import { startCoordinator } from './server.ts'

// Production mode skips tfjs's debug checks and its advice to install tfjs-node (a native build that
// cannot be fetched on these machines); the coordinator only evaluates small models on held-out data.
tf.enableProdMode()

const config = configFromEnv()
const log = (message: string) => console.log(`[coordinator] ${message}`)
log(`store: ${config.databaseUrl ? 'PostgreSQL at DATABASE_URL' : `embedded PGlite in ${config.dataDir}`}`)
const coordinator = await startCoordinator(config, { log })
const chain = coordinator.chain?.chain
if (chain) {
  log(`chain ${chain.chainId} at ${chain.rpcUrl}; claims are signed for DisputeResolver ${chain.contracts.disputeResolver}`)
  log(`contracts: ${JSON.stringify(chain.contracts)}`)
  log(`epochs every ${config.epochSeconds} s; roots claimable ${chain.challengeWindowSeconds} s after posting`)
} else {
  log('no chain (TABTRAIN_CHAIN=off): volunteer jobs only, no rewards')
}
console.log(
  `\nTabTrain is running.\n  Contribute: ${coordinator.url}/contribute.html\n  Post a job: ${coordinator.url}/new.html\n  Jobs:       ${coordinator.url}/\n  Embed:      <script type="module" src="${coordinator.url}/widget.js"></script>\n`,
)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: closing`)
    void coordinator.close().finally(() => process.exit(0))
  })
}
