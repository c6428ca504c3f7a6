/**
 * Device class = (backend, adapter vendor + architecture, browser engine + major version, kernel bundle).
 * Two runs in the same class must agree bit for bit; across classes only within a job's tolerance.
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
