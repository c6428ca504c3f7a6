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
console.log(`\nTabTrain is running. Open ${coordinator.url}/contribute.html to train, ${coordinator.url}/ for jobs.\n`)

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: closing`)
    void coordinator.close().finally(() => process.exit(0))
  })
}
