import { formatDeviceClass } from '../protocol/index.ts'

/** The WebGPU adapter a Node contributor computes on through Dawn's `webgpu` package (nodeBackend.ts). */
export interface NodeGpuClass {
  /** The adapter's `info.vendor` and `info.architecture`, as a browser reports them. */
  vendor: string
  architecture: string
  /** The `webgpu` package's version: it pins the Dawn build (and so the shader compiler) that computed the bits. */
  dawn: string
}

/** `node-20`: the engine part of a Node contributor's device class. */
export function nodeEngine(): string {
  return `node-${process.versions.node.split('.')[0]}`
}

/**
 * The device class of a unit computed in Node. Without `gpu`, on tfjs's cpu backend (useCpuKernelsFor(spec,
 * 'cpu')): exact-mode jobs on exact mode's CPU kernels, others on tfjs's own. One function for the Node
 * contributor (nodeContributor.ts) and the coordinator's referee (coordinator/verification/referee.ts), so
 * the class a referee reports for its answer is the class an honest Node contributor claims for the same unit.
 *
 * With `gpu`, on tfjs's webgpu backend over Dawn: the adapter's vendor and architecture as a tab names them,
 * and an engine that says Node and the Dawn build (`node-20-dawn-0.6.2`), so these units never share a
 * class with a browser's even where the bits happen to agree.
 */
export function nodeDeviceClass(kernelBundle: string, gpu?: NodeGpuClass): string {
  if (gpu) {
    return formatDeviceClass({ backend: 'webgpu', vendor: gpu.vendor, architecture: gpu.architecture, engine: `${nodeEngine()}-dawn-${gpu.dawn}`, kernelBundle })
  }
  return formatDeviceClass({ backend: 'cpu', vendor: 'node', architecture: process.arch, engine: nodeEngine(), kernelBundle })
}
