import type { PaymentTerms, TrainingConfig } from '../../src/protocol/index.ts'

/** What every preset builder takes: the full training config (defaults merged with overrides) and the rest. */
export interface PresetBuildOptions {
  training: TrainingConfig
  /** The full bundle id (KERNEL_BUNDLE or EXACT_KERNEL_BUNDLE). */
  kernelBundle?: string
  payment?: PaymentTerms
  name?: string
  description?: string
}
