import { formatDeviceClass } from '../protocol/index.ts'

/**
 * The device class of a unit computed in Node on tfjs's cpu backend (useCpuKernelsFor(spec, 'cpu')): exact-mode
 * jobs on exact mode's CPU kernels, others on tfjs's own. One function for the Node contributor
 * (nodeContributor.ts) and the coordinator's referee (coordinator/verification/referee.ts), so the class a
 * referee reports for its answer is the class an honest Node contributor claims for the same unit.
 */
export function nodeDeviceClass(kernelBundle: string): string {
  return formatDeviceClass({
    backend: 'cpu',
    vendor: 'node',
    architecture: process.arch,
    engine: `node-${process.versions.node.split('.')[0]}`,
    kernelBundle,
  })
}
