// A coordinator process started ahead of need (spawnCoordinator.ts, `prepareCoordinator`): it loads the
// coordinator's modules and its aggregation thread (seconds of a start that do not depend on the store), says so, and
// runs coordinator/main.ts, unchanged, when a line arrives on stdin. A test that kills a coordinator again and
// again starts the next one from here, so that what it measures is the coordinator's own recovery, not
// module loading. It touches no store and no port before the line, so it can wait beside a running one.
import { createInterface } from 'node:readline'

await Promise.all([import('@tensorflow/tfjs'), import('../config.ts'), import('../server.ts')])
// The aggregation thread is modules too: the coordinator starts it first thing (server.ts), this starts it sooner.
;(await import('../aggregation/aggregator.ts')).prestartAggregationThread()
process.stdout.write('[warm] modules loaded\n')
const lines = createInterface({ input: process.stdin })
const go = await new Promise<boolean>((resolve) => {
  lines.once('line', () => resolve(true))
  // The test process went away without starting it: leave with it.
  lines.once('close', () => resolve(false))
})
lines.close()
if (!go) process.exit(0)
await import('../main.ts')
