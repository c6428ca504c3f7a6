import type { TrainingConfig } from '../protocol/index.ts'

/**
 * How a contributor sizes its units to its device: H (inner steps) so that a unit takes about a target
 * wall time, within the job's bounds, and whether the job's batch fits the adapter's buffers at all.
 * Pure functions and a small estimator; the scheduler asks for the H in its signed lease request and the
 * Worker checks the batch before training.
 */

/** A unit of about this long: long enough that a lease round trip is noise, short enough to lose little to a closed tab. */
export const DEFAULT_TARGET_UNIT_MS = 30_000

/** The H a job allows: [training.innerSteps, training.maxInnerSteps]; a job without maxInnerSteps has one H. */
export function innerStepsBounds(training: Pick<TrainingConfig, 'innerSteps' | 'maxInnerSteps'>): { min: number; max: number } {
  const min = training.innerSteps
  return { min, max: Math.max(min, training.maxInnerSteps ?? min) }
}

/** True when the job lets a contributor choose its H. */
export function isSizable(training: Pick<TrainingConfig, 'innerSteps' | 'maxInnerSteps'>): boolean {
  const { min, max } = innerStepsBounds(training)
  return max > min
}

export interface StepEstimate {
  /** Wall time of one inner step. */
  stepMs: number
  /** Wall time of a unit that does not grow with H: fetch, hash, sign. */
  overheadMs: number
}

/**
 * The H whose unit takes about `targetMs`: (target − overhead) / step time, rounded down (a unit a little
 * short is better than one that overruns its lease), clamped to the job's bounds. Without an estimate
 * the job's smallest H: the first unit is quick, and it measures the device.
 */
export function chooseInnerSteps(estimate: StepEstimate | null, bounds: { min: number; max: number }, targetMs = DEFAULT_TARGET_UNIT_MS): number {
  if (!estimate || !(estimate.stepMs > 0) || !Number.isFinite(estimate.stepMs)) return bounds.min
  const h = Math.floor(Math.max(0, targetMs - Math.max(0, estimate.overheadMs)) / estimate.stepMs)
  return Math.min(bounds.max, Math.max(bounds.min, h))
}

/** What one finished unit tells about the device: its H, the training time and the executor's whole time. */
export interface UnitMeasurement {
  innerSteps: number
  trainMs: number
  computeMs: number
}

/**
 * Step time and overhead measured over finished units. A unit faster than the estimate is believed at once:
 * a device cannot run faster than it can, and the slow outliers are the first unit of a Worker (it compiles
 * the shaders) and a tab the browser throttles. A slower one moves the estimate part of the way (an
 * exponential moving average, weight `alpha` on the newest unit), so one throttled unit does not shrink the
 * next ones much, while a device that really slowed down is followed within a few units.
 */
export class UnitSizer {
  private current: StepEstimate | null = null

  constructor(
    readonly targetMs = DEFAULT_TARGET_UNIT_MS,
    private readonly alpha = 0.5,
  ) {}

  get estimate(): StepEstimate | null {
    return this.current
  }

  observe(m: UnitMeasurement): void {
    if (!(m.innerSteps > 0) || !(m.trainMs >= 0) || !(m.computeMs >= 0)) return
    const next = { stepMs: m.trainMs / m.innerSteps, overheadMs: Math.max(0, m.computeMs - m.trainMs) }
    if (!(next.stepMs > 0)) return
    const prev = this.current
    const toward = (old: number, now: number) => (now <= old ? now : old + this.alpha * (now - old))
    this.current = prev ? { stepMs: toward(prev.stepMs, next.stepMs), overheadMs: toward(prev.overheadMs, next.overheadMs) } : next
  }

  /** The H to ask for in `training`'s job, or null to ask for nothing (a fixed-H job, or the job's own H). */
  innerStepsFor(training: Pick<TrainingConfig, 'innerSteps' | 'maxInnerSteps'>): number | null {
    if (!isSizable(training)) return null
    const h = chooseInnerSteps(this.current, innerStepsBounds(training), this.targetMs)
    return h === training.innerSteps ? null : h
  }
}

/** The adapter limits that bound one tensor of a batch (WebGPU's GPUSupportedLimits, in bytes). */
export interface BufferLimits {
  maxStorageBufferBindingSize: number
  maxBufferSize: number
}

/** The largest float32 tensors a training step of the model allocates, per example and in all. */
export interface ModelFootprint {
  /** Elements per example of the largest layer output (or input): activations and their gradients scale with the batch. */
  largestActivationPerExample: number
  /** Name of that layer, for the message. */
  largestLayer: string
  /** Elements of the largest weight tensor: does not scale with the batch. */
  largestWeight: number
}

type Shape = ReadonlyArray<number | null>

/**
 * The footprint of a built model from its layers' output shapes (the batch dimension, null, left out) and
 * its weight shapes; `inputShape` is one example's input. Takes plain shapes so it stays free of tfjs.
 */
export function modelFootprint(
  inputShape: readonly number[],
  layers: ReadonlyArray<{ name: string; outputShape: Shape | ReadonlyArray<Shape> }>,
  weightShapes: ReadonlyArray<readonly number[]>,
): ModelFootprint {
  const elements = (shape: Shape) => shape.reduce<number>((a, d) => a * (d ?? 1), 1)
  let largestActivationPerExample = elements(inputShape)
  let largestLayer = 'input'
  for (const layer of layers) {
    const shapes = (Array.isArray(layer.outputShape[0]) ? layer.outputShape : [layer.outputShape]) as Shape[]
    for (const shape of shapes) {
      const n = elements(shape.slice(1))
      if (n > largestActivationPerExample) {
        largestActivationPerExample = n
        largestLayer = layer.name
      }
    }
  }
  const largestWeight = weightShapes.reduce((max, shape) => Math.max(max, elements(shape)), 0)
  return { largestActivationPerExample, largestLayer, largestWeight }
}

export interface BatchFit {
  fits: boolean
  /** Bytes of the largest buffer one step needs, and the most one binding may hold. */
  neededBytes: number
  limitBytes: number
  /** The largest batch this device can run (0: not even one example), for the message. */
  maxBatch: number
  /** A sentence for the contributor when it does not fit. */
  message?: string
}

/**
 * Whether a step of `batchSize` examples fits in the adapter's buffers: every activation of the batch is one
 * storage buffer, which may not exceed maxStorageBufferBindingSize (nor maxBufferSize). The job's batch size
 * is part of what each unit computes (verification re-executes it), so a device that cannot run it cannot
 * run the job: it is told so, with the largest batch it could run, instead of failing in a shader.
 */
export function checkBatchFits(batchSize: number, footprint: ModelFootprint, limits: BufferLimits): BatchFit {
  const limitBytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize)
  const perExample = footprint.largestActivationPerExample * 4
  const neededBytes = Math.max(perExample * batchSize, footprint.largestWeight * 4)
  const maxBatch = footprint.largestWeight * 4 > limitBytes ? 0 : perExample > 0 ? Math.floor(limitBytes / perExample) : Number.MAX_SAFE_INTEGER
  if (neededBytes <= limitBytes) return { fits: true, neededBytes, limitBytes, maxBatch }
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
  const message =
    footprint.largestWeight * 4 > limitBytes
      ? `this device cannot run this job: its GPU binds at most ${mib(limitBytes)} per buffer and the model's largest weight needs ${mib(footprint.largestWeight * 4)}`
      : `this device cannot run this job's batch of ${batchSize}: its GPU binds at most ${mib(limitBytes)} per buffer and layer ${footprint.largestLayer} needs ${mib(neededBytes)} for the batch (at most ${maxBatch} examples would fit)`
  return { fits: false, neededBytes, limitBytes, maxBatch, message }
}

/** The job's batch does not fit this device's buffers (checkBatchFits): no retry can help, the loop stops. */
export class BatchTooLargeError extends Error {
  override name = 'BatchTooLargeError'
}
