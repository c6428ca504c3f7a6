import { privateKeyToAccount } from 'viem/accounts'
import type { Hex } from 'viem'
import { CoordinatorClient } from '../client/coordinatorClient.ts'
import * as tf from '@tensorflow/tfjs'
import { formatDeviceClass, type Hash, type JobSpec } from '../protocol/index.ts'
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE, knownKernelBundles, UnsupportedKernelBundleError } from '../kernels/config.ts'
import { registerExactCpuKernels, type ExactCpuKernels } from '../kernels/exactCpu.ts'
import { memoryCached } from './blobSource.ts'
import { Scheduler, type SchedulerEvent } from './scheduler.ts'
import { createUnitRunner } from './unitRunner.ts'

/** The process's tfjs backend cannot compute the job's kernel bundle. */
export class KernelBundleBackendError extends Error {
  override name = 'KernelBundleBackendError'
}

/**
 * The kernels a CPU contributor computes a job's units with. Exact mode is one arithmetic on every
 * implementation, and its CPU form (exactCpu.ts) is one of them, so exact-mode jobs get exact-mode bits here,
 * equal to a GPU contributor's. Other jobs run on tfjs's own CPU kernels, as before; their device class says
 * `cpu`, which keeps them apart from GPU results.
 */
function cpuKernelsFor(spec: JobSpec, current: ExactCpuKernels | null): ExactCpuKernels | null {
  if (!knownKernelBundles().includes(spec.kernelBundle)) throw new UnsupportedKernelBundleError(spec.kernelBundle)
  if (spec.kernelBundle === EXACT_KERNEL_BUNDLE) {
    if (tf.getBackend() !== 'cpu') throw new KernelBundleBackendError(`exact mode in Node runs on the cpu backend, not ${tf.getBackend()}`)
    return current ?? registerExactCpuKernels()
  }
  current?.restore()
  return null
}

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
  const classParts = { backend: 'cpu', vendor: 'node', architecture: process.arch, engine: `node-${process.versions.node.split('.')[0]}` }
  let exact: ExactCpuKernels | null = null
  return new Scheduler({
    client,
    executor: {
      async runUnit(spec, unit) {
        exact = cpuKernelsFor(spec, exact)
        return { ...(await runner.run(spec, unit)), deviceClass: formatDeviceClass({ ...classParts, kernelBundle: spec.kernelBundle }) }
      },
    },
    signer: privateKeyToAccount(params.privateKey),
    deviceClass: formatDeviceClass({ ...classParts, kernelBundle: KERNEL_BUNDLE }),
    jobId: params.jobId,
    onEvent: params.onEvent,
  })
}
