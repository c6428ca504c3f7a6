import type { JobSpec, WorkUnit } from '../protocol/index.ts'
import type { DeviceInfo } from './backend.ts'
import type { UnitOutput } from './unitRunner.ts'

/** What the training Worker exposes over comlink. Everything crossing it is structured-clonable. */
export interface TrainingWorkerApi {
  /** Picks the backend and reports the device; `coordinatorUrl` is where blobs are fetched from. */
  init(coordinatorUrl: string): Promise<DeviceInfo>
  /**
   * Runs a unit. A WebGPU device lost meanwhile is re-created and the unit run again on it (`deviceLosses`
   * in the output says how often); a job whose batch does not fit the device fails with BatchTooLargeError.
   */
  runUnit(spec: JobSpec, unit: WorkUnit): Promise<UnitOutput>
  /** Fetches the checkpoint and shards of a unit that will run next, while this one computes. */
  prefetch(spec: JobSpec, unit: WorkUnit): Promise<void>
}

export type { DeviceInfo, UnitOutput }
