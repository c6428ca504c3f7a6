/**
 * The preset registry: what the new-job page lists (`listPresets`, the pure catalogue of
 * src/protocol/presetCatalog.ts) and what builds a preset job with the requester's choices (`buildPreset`).
 */
import { EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import { parseJobSpec, PRESETS, presetInfo, trainingSchema, type KernelBundleChoice, type PaymentTerms, type PresetInfo, type TrainingConfig } from '../../src/protocol/index.ts'
import { checkModelForBundle } from '../../src/training/layerSupport.ts'
import { buildMnistPreset, type PresetBlobs } from './mnist.ts'
import { buildMnistConvPreset } from './mnistConv.ts'
import type { PresetBuildOptions } from './options.ts'
import { buildShakespearePreset } from './shakespeare.ts'

export type { PresetBlobs } from './mnist.ts'

export class PresetError extends Error {
  override name = 'PresetError'
  constructor(
    readonly code: 'unknown_preset' | 'unsupported_by_bundle' | 'invalid_training',
    message: string,
  ) {
    super(message)
  }
}

export function listPresets(): readonly PresetInfo[] {
  return PRESETS
}

export function kernelBundleId(choice: KernelBundleChoice): string {
  return choice === 'exact' ? EXACT_KERNEL_BUNDLE : KERNEL_BUNDLE
}

export interface BuildPresetOptions {
  /** Overrides of the preset's default hyperparameters. */
  training?: Partial<TrainingConfig>
  kernelBundle: KernelBundleChoice
  /** Without payment terms the job is a volunteer job (no escrow, no rewards). */
  payment?: PaymentTerms
  name?: string
  description?: string
}

const BUILDERS: Record<PresetInfo['id'], (options: PresetBuildOptions) => Promise<PresetBlobs>> = {
  // Built by its original function (whose spec hashes deployments already know), then given the choices.
  'mnist-mlp': async (options) => {
    const preset = await buildMnistPreset({ paid: false, kernelBundle: options.kernelBundle })
    const spec = parseJobSpec({
      ...preset.spec,
      training: options.training,
      ...(options.name ? { name: options.name } : {}),
      ...(options.description ? { description: options.description } : {}),
      ...(options.payment ? { payment: options.payment } : {}),
    })
    return { ...preset, spec }
  },
  'mnist-cnn': buildMnistConvPreset,
  'shakespeare-char': buildShakespearePreset,
}

/**
 * Builds a preset job's spec and blobs. Refuses (PresetError) an unknown id, a bundle the preset cannot
 * run (saying why), and overrides that make an invalid training config.
 */
export async function buildPreset(id: string, options: BuildPresetOptions): Promise<PresetBlobs> {
  const info = presetInfo(id)
  if (!info) throw new PresetError('unknown_preset', `no preset "${id}"; the presets are ${PRESETS.map((p) => p.id).join(', ')}`)
  if (!info.bundles.includes(options.kernelBundle)) {
    throw new PresetError('unsupported_by_bundle', `preset "${id}" cannot run on the ${options.kernelBundle} kernel bundle: ${info.bundleNotes?.[options.kernelBundle] ?? 'not supported'}`)
  }
  const training = trainingSchema.safeParse({ ...info.training, ...options.training })
  if (!training.success) {
    throw new PresetError('invalid_training', training.error.issues.map((i) => `training.${i.path.join('.')}: ${i.message}`).join('; '))
  }
  const kernelBundle = kernelBundleId(options.kernelBundle)
  const preset = await BUILDERS[info.id]({ ...options, training: training.data, kernelBundle })
  // The catalogue's bundle list and the layer table must agree; a preset that fails here is a bug.
  checkModelForBundle(preset.spec.model.topology, kernelBundle)
  return preset
}
