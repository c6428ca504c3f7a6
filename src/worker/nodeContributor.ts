import { privateKeyToAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { formatDeviceClass, type Hash } from '../protocol/index.ts'
import { KERNEL_BUNDLE } from '../kernels/config.ts'
import { memoryCached } from './blobSource.ts'
import { Scheduler, type SchedulerEvent } from './scheduler.ts'
import { createUnitRunner } from './unitRunner.ts'

/**
 * A headless contributor in Node: the same unit runner and pull loop as a browser tab, on whatever tfjs
 * backend the process has set (cpu by default). Used by the simulation tests and the benchmark.
 */
export function createNodeContributor(params: {
  coordinatorUrl: string
  jobId: Hash
  privateKey: Hex
  onEvent?: (event: SchedulerEvent) => void
}): Scheduler {
  const client = new CoordinatorClient(params.coordinatorUrl)
  const runner = createUnitRunner(memoryCached({ get: (hash) => client.blob(hash) }))
  return new Scheduler({
    client,
    executor: { runUnit: (spec, unit) => runner.run(spec, unit) },
    signer: privateKeyToAccount(params.privateKey),
    deviceClass: formatDeviceClass({ backend: 'cpu', vendor: 'node', architecture: process.arch, engine: `node-${process.versions.node.split('.')[0]}`, kernelBundle: KERNEL_BUNDLE }),
    jobId: params.jobId,
    onEvent: params.onEvent,
  })
}
