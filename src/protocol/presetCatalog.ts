/**
 * The presets a requester can start a job from: what the new-job page shows and the job-creation route
 * accepts. Pure data (no tfjs, no Node): the coordinator's builders (coordinator/presets/) make the specs.
 */
import type { TrainingConfig } from './jobSpec.ts'

export type PresetId = 'mnist-mlp' | 'mnist-cnn' | 'shakespeare-char'
export const PRESET_IDS = ['mnist-mlp', 'mnist-cnn', 'shakespeare-char'] as const satisfies readonly PresetId[]

/** A kernel bundle as a requester chooses it; the spec records the full bundle id. */
export type KernelBundleChoice = 'default' | 'exact'

/** One line of help per hyperparameter, shown next to its field. */
export const TRAINING_HELP: Record<keyof TrainingConfig, string> = {
  innerOptimizer: 'Optimizer inside a unit: Adam adapts its step per weight and forgives a rough learning rate; SGD is plain gradient descent.',
  learningRate: 'Step size of the inner optimizer; too high diverges (loss grows), too low learns slowly.',
  batchSize: 'Examples per inner step; larger batches give smoother gradients and longer units.',
  innerSteps: 'Optimizer steps a contributor runs per unit (H); more steps mean less traffic per example but staler averages.',
  unitsPerRound: 'Accepted units averaged into each new checkpoint (K); more units per round use more tabs at once.',
  rounds: 'Rounds after which the job is finished; the job costs about rounds × units per round × price per unit, plus checks.',
  outerOptimizer:
    'How a round applies its averaged update: "average" adds outer learning rate × the mean update; "nesterov" (DiLoCo) treats the mean update as a gradient and keeps momentum across rounds.',
  outerLearningRate: 'Scale of the averaged update applied each round; with "average", 1 takes the mean update as it is.',
  outerMomentum: 'Momentum of the "nesterov" outer optimizer (0.9 when empty): how much of earlier rounds\' updates each round carries on.',
  leaseTtlSeconds: 'Seconds a contributor has to return a unit before it is offered to someone else.',
  maxStaleness:
    'Rounds an update may lag behind the newest checkpoint; 1 or more makes rounds asynchronous so every live tab gets work, 0 or empty keeps rounds of exactly K units.',
  maxInnerSteps: 'Most steps per unit a tab may choose when it sizes units to its device; empty: every unit runs exactly H steps.',
  compression: 'How updates travel: empty sends float32; int8 sends one byte per weight plus a scale per block, about 4× less traffic.',
}

/** What each bundle costs, for the page. */
export const KERNEL_BUNDLE_HELP: Record<KernelBundleChoice, string> = {
  default:
    'Deterministic kernels: the same bits on the same kind of device; across devices, updates are compared within a tolerance. Stock speed.',
  exact:
    'Exact mode: the same bits on every WebGPU device, so any disagreement is caught for certain; about 1.5-2.3× the time per unit, and only for models of dense layers.',
}

export interface PresetInfo {
  id: PresetId
  title: string
  description: string
  /** Hyperparameters a job gets unless the requester overrides them. */
  training: TrainingConfig
  bundles: KernelBundleChoice[]
  /** Why a bundle is missing, where one is. */
  bundleNotes?: Partial<Record<KernelBundleChoice, string>>
}

const common = { outerOptimizer: 'average', outerLearningRate: 1 } as const

export const PRESETS: readonly PresetInfo[] = [
  {
    id: 'mnist-mlp',
    title: 'MNIST digits, dense network',
    description: 'Handwritten digits with a 784-64-10 perceptron: about 90% held-out accuracy in a few minutes of a few tabs.',
    training: { innerOptimizer: 'adam', learningRate: 0.003, batchSize: 32, innerSteps: 10, unitsPerRound: 4, rounds: 40, ...common, leaseTtlSeconds: 120 },
    bundles: ['default', 'exact'],
  },
  {
    id: 'mnist-cnn',
    title: 'MNIST digits, convolutional network',
    description: 'Handwritten digits with 8 3×3 convolution filters, 2×2 max pooling and a dense layer: fewer weights, better accuracy per round.',
    training: { innerOptimizer: 'adam', learningRate: 0.003, batchSize: 32, innerSteps: 10, unitsPerRound: 4, rounds: 40, ...common, leaseTtlSeconds: 180 },
    bundles: ['default'],
    bundleNotes: { exact: 'Exact mode has no exact convolution or max-pooling kernels yet.' },
  },
  {
    id: 'shakespeare-char',
    title: 'Tiny Shakespeare, character model',
    description:
      'Predicts the next character of Shakespeare from the 24 before it (one-hot window, a 128-unit hidden layer, 65 characters); sample text from it on the job page.',
    training: { innerOptimizer: 'adam', learningRate: 0.003, batchSize: 64, innerSteps: 10, unitsPerRound: 4, rounds: 60, ...common, leaseTtlSeconds: 120 },
    bundles: ['default', 'exact'],
  },
]

export function presetInfo(id: string): PresetInfo | undefined {
  return PRESETS.find((p) => p.id === id)
}
