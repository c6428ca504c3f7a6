import type { JobSpec, WorkUnit } from '../protocol/index.ts'
import type { DeviceInfo } from './backend.ts'
import type { UnitOutput } from './unitRunner.ts'

/** What the training Worker exposes over comlink. Everything crossing it is structured-clonable. */
export interface TrainingWorkerApi {
  /** Picks the backend and reports the device; `coordinatorUrl` is where blobs are fetched from. */
  init(coordinatorUrl: string): Promise<DeviceInfo>
  runUnit(spec: JobSpec, unit: WorkUnit): Promise<UnitOutput>
}

export type { DeviceInfo, UnitOutput }
