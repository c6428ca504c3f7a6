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

/**
 * How every preset job runs, beyond its inner schedule: asynchronous rounds that follow the live pool with
 * answers up to 2 rounds stale (docs/scale.md; 1 left a fifth of prefetched units stale in bench/throughput.ts),
 * int8 updates in blocks of 256 (3.9× smaller, bench/communication.ts), and DiLoCo's outer Nesterov step
 * tuned per preset below. Outer settings chosen among (lr, μ) from {(1, 0.5), (1, 0.7), (0.7, 0.7),
 * (0.7, 0.9), (0.5, 0.9), (0.4, 0.8), (0.3, 0.9)} (the larger presets ran the subset listed below) against
 * `average` (lr 1), each preset at its own H = 10 and K = 4, trained in Node through `trainUnit` and
 * `outerStep` on the tfjs wasm backend (cpu for the convolutional preset), and judged on the mean held-out
 * accuracy and loss over the last 5 evaluations:
 *
 * - mnist-mlp, 40 rounds: average 93.95% / loss 0.207; (0.4, 0.8) 94.39% / 0.222; (0.7, 0.7) 94.38% / 0.242;
 *   (0.3, 0.9) 94.63% / 0.270; (0.7, 0.9) 94.12% / 0.458 (the plain loop on the same examples: 95.08%).
 * - shakespeare-char, 30 rounds: average 30.99% / 2.589; (0.7, 0.7) 32.88% / 2.616; (0.3, 0.9) 32.72% / 2.623;
 *   (0.4, 0.8) 32.24% / 2.609; (0.7, 0.9) 30.47% / 2.956 (plain loop 34.41%).
 * - mnist-cnn, 10 rounds (cpu backend, 500 held out; its units are slow there): average 89.80% / 0.306;
 *   (0.7, 0.7) 90.96% / 0.246; (0.4, 0.8) 90.64% / 0.269.
 *
 * DiLoCo's own (0.7, 0.9) overshoots here: its effective step lr/(1−μ) = 7 gives the best accuracy on some
 * runs but a held-out loss that rises round after round (twice the others' on mnist-mlp at H = 10, and on
 * the MLP at H = 100 as well: 0.339 against 0.187 for (0.4, 0.8), bench/communication.ts). Where two settings
 * tie on accuracy the lower held-out loss decided.
 *
 * Those are synchronous figures. In asynchronous rounds most answers were computed from a checkpoint a round
 * old, and momentum on stale pseudo-gradients overshoots: with 4 contributors on the MLP at H = 100
 * (bench/network.ts, `BENCH_NETWORK_OUTER`), (0.4, 0.8) swung between 79% and 94% held-out accuracy round to
 * round, `average` (lr 1) between 49% and 94%, while (0.4, 0.5), an effective step lr/(1−μ) of 0.8, climbed
 * steadily to 96% (the plain loop's). So every preset takes (0.4, 0.5); the synchronous values above are for a
 * requester who turns asynchronous rounds off (maxStaleness 0). The convolutional and character presets were
 * not run asynchronously; they take the MLP's setting by the same effective-step rule.
 */
const scale = { maxStaleness: 2, compression: { kind: 'int8', blockSize: 256 } } as const
const outer = (outerLearningRate: number, outerMomentum: number) => ({ outerOptimizer: 'nesterov', outerLearningRate, outerMomentum, ...scale }) as const

export const PRESETS: readonly PresetInfo[] = [
  {
    id: 'mnist-mlp',
    title: 'MNIST digits, dense network',
    description: 'Handwritten digits with a 784-64-10 perceptron: about 90% held-out accuracy in a few minutes of a few tabs.',
    training: { innerOptimizer: 'adam', learningRate: 0.003, batchSize: 32, innerSteps: 10, unitsPerRound: 4, rounds: 40, ...outer(0.4, 0.5), leaseTtlSeconds: 120 },
    bundles: ['default', 'exact'],
  },
  {
    id: 'mnist-cnn',
    title: 'MNIST digits, convolutional network',
    description: 'Handwritten digits with 8 3×3 convolution filters, 2×2 max pooling and a dense layer: fewer weights, better accuracy per round.',
    training: { innerOptimizer: 'adam', learningRate: 0.003, batchSize: 32, innerSteps: 10, unitsPerRound: 4, rounds: 40, ...outer(0.4, 0.5), leaseTtlSeconds: 180 },
    bundles: ['default'],
    bundleNotes: { exact: 'Exact mode has no exact convolution or max-pooling kernels yet.' },
  },
  {
    id: 'shakespeare-char',
    title: 'Tiny Shakespeare, character model',
    description:
      'Predicts the next character of Shakespeare from the 24 before it (one-hot window, a 128-unit hidden layer, 65 characters); sample text from it on the job page.',
    training: { innerOptimizer: 'adam', learningRate: 0.003, batchSize: 64, innerSteps: 10, unitsPerRound: 4, rounds: 60, ...outer(0.4, 0.5), leaseTtlSeconds: 120 },
    bundles: ['default', 'exact'],
  },
]

export function presetInfo(id: string): PresetInfo | undefined {
  return PRESETS.find((p) => p.id === id)
}
