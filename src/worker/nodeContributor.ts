import { privateKeyToAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import type { Hash } from '../protocol/index.ts'
import { KERNEL_BUNDLE } from '../kernels/config.ts'
import { useCpuKernelsFor } from './cpuKernels.ts'
import { memoryCached } from './blobSource.ts'
import { nodeDeviceClass } from './nodeDeviceClass.ts'
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
  return new Scheduler({
    client,
    executor: {
      async runUnit(spec, unit) {
        await useCpuKernelsFor(spec, 'cpu')
        return { ...(await runner.run(spec, unit)), deviceClass: nodeDeviceClass(spec.kernelBundle) }
      },
      prefetch: (spec, unit) => runner.prefetch(spec, unit),
    },
    signer: privateKeyToAccount(params.privateKey),
    deviceClass: nodeDeviceClass(KERNEL_BUNDLE),
    jobId: params.jobId,
    onEvent: params.onEvent,
  })
}
