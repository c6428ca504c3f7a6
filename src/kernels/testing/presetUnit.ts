import { buildMnistPreset, type PresetBlobs } from '../../../coordinator/presets/mnist.ts'
import { jobSpecHash, parseJobSpec, type JobSpec, type WorkUnit } from '../../protocol/index.ts'
import { mapBlobSource } from '../../worker/blobSource.ts'
import { createUnitRunner, type UnitRunner } from '../../worker/unitRunner.ts'

export interface PresetUnit {
  preset: PresetBlobs
  spec: JobSpec
  /** Round 0, unit 1, from the initial checkpoint. */
  unit: WorkUnit
  /** A fresh unit runner over the preset's blobs (each keeps its own model cache). */
  runner(): UnitRunner
}

/**
 * One MNIST preset unit with fewer inner steps (default 2: forward, backward and two Adam updates, the second
 * with non-zero moments): every op of a full unit at a fraction of the SwiftShader time. Test and benchmark
 * helper.
 */
export async function presetUnit(options: { innerSteps?: number; kernelBundle?: string } = {}): Promise<PresetUnit> {
  const preset = await buildMnistPreset({ paid: false, ...(options.kernelBundle ? { kernelBundle: options.kernelBundle } : {}) })
  const spec = parseJobSpec({ ...preset.spec, training: { ...preset.spec.training, innerSteps: options.innerSteps ?? 2 } })
  const unit: WorkUnit = { jobId: jobSpecHash(spec), round: 0, unit: 1, inputHash: spec.model.initialWeights }
  return { preset, spec, unit, runner: () => createUnitRunner(mapBlobSource(preset.blobs, 'preset blob source')) }
}
