import type { DeviceInfo } from '../../src/worker/api.ts'
import { byId } from './dom.ts'

export interface CapabilityCard {
  showDevice(device: DeviceInfo): void
  /** Examples per second while computing (the device's speed, rests and pauses left out); null: not yet measured. */
  showSpeed(examplesPerSecond: number | null): void
}

/** What this tab computes with: the adapter (GPUAdapter.info), the backend in use, the measured speed. */
export function createCapabilityCard(): CapabilityCard {
  return {
    showDevice(device) {
      const webgpu = device.backend === 'webgpu'
      byId('backend').textContent = webgpu ? 'WebGPU' : device.backend
      byId('gpu-vendor').textContent = webgpu ? device.vendor : 'none'
      byId('gpu-architecture').textContent = webgpu ? device.architecture : '–'
      byId('adapter').textContent = webgpu
        ? `Adapter: ${device.vendor} / ${device.architecture}${device.isFallbackAdapter ? ' (software fallback adapter)' : ''}${device.description ? ` · ${device.description}` : ''}`
        : `No WebGPU: ${device.fallbackReason ?? 'unknown reason'}. Training on ${device.backend}.`
      byId('device-class').textContent = device.deviceClass
    },
    showSpeed(rate) {
      byId('examples-per-second').textContent = rate === null ? 'not measured yet' : `${formatRate(rate)} examples/s`
    },
  }
}

/** 3 significant digits: "1.23", "45.6", "789", "12,300". */
export function formatRate(rate: number): string {
  if (!Number.isFinite(rate) || rate <= 0) return '0'
  const digits = rate >= 100 ? 0 : rate >= 10 ? 1 : 2
  return rate.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 })
}
