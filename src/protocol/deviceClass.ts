/**
 * Device class = (backend, adapter vendor + architecture, browser engine + major version, kernel bundle).
 * Two runs in the same class must agree bit for bit; across classes only within a job's tolerance, except
 * in exact mode, where every class must agree bit for bit (`promisesSameBitsEverywhere`).
 */
export interface DeviceClassParts {
  backend: string
  vendor: string
  architecture: string
  engine: string
  kernelBundle: string
}

export function formatDeviceClass(p: DeviceClassParts): string {
  const clean = (s: string) => (s.trim() || 'unknown').replace(/[|\s]+/g, '-').toLowerCase()
  return [p.backend, `${clean(p.vendor)}/${clean(p.architecture)}`, clean(p.engine), p.kernelBundle].join('|')
}

/** Prefix of exact-mode kernel bundle ids (src/kernels/registerExact.ts, pinned in its tests). */
export const EXACT_MODE_BUNDLE_PREFIX = 'tabtrain-exact-'

/**
 * True for a kernel bundle that gives the same bits on every device (exact mode): for its units a different
 * hash is evidence against a claim whatever the two device classes are. Kept here, apart from the kernels,
 * so pages can decide it without loading tfjs.
 */
export function promisesSameBitsEverywhere(kernelBundle: string): boolean {
  return kernelBundle.startsWith(EXACT_MODE_BUNDLE_PREFIX)
}
