import { privateKeyToAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import { formatDeviceClass, type Hash } from '../protocol/index.ts'
import { KERNEL_BUNDLE } from '../kernels/config.ts'
import { useCpuKernelsFor } from './cpuKernels.ts'
import { memoryCached } from './blobSource.ts'
import { Scheduler, type SchedulerEvent } from './scheduler.ts'
import { createUnitRunner } from './unitRunner.ts'

/**
 * A headless contributor in Node: the same unit runner and pull loop as a browser tab, on tfjs's cpu
 * backend; exact-mode jobs with exact mode's CPU kernels, so their units have the bits a GPU gives
 * (cpuKernels.ts). Used by the simulation tests and the benchmark.
 */
export function createNodeContributor(params: {
  coordinatorUrl: string
  jobId: Hash
  privateKey: Hex
  onEvent?: (event: SchedulerEvent) => void
}): Scheduler {
  const client = new CoordinatorClient(params.coordinatorUrl)
  const runner = createUnitRunner(memoryCached({ get: (hash) => client.blob(hash) }))
  const classParts = { backend: 'cpu', vendor: 'node', architecture: process.arch, engine: `node-${process.versions.node.split('.')[0]}` }
  return new Scheduler({
    client,
    executor: {
      async runUnit(spec, unit) {
        await useCpuKernelsFor(spec, 'cpu')
        return { ...(await runner.run(spec, unit)), deviceClass: formatDeviceClass({ ...classParts, kernelBundle: spec.kernelBundle }) }
      },
    },
    signer: privateKeyToAccount(params.privateKey),
    deviceClass: formatDeviceClass({ ...classParts, kernelBundle: KERNEL_BUNDLE }),
    jobId: params.jobId,
    onEvent: params.onEvent,
  })
}
