/**
 * Trains a preset job with one set of WebGPU kernels the way the coordinator does (units from the real
 * unit runner, averaged with the coordinator's `applyAveragedUpdate`, the checkpoint evaluated on the
 * held-out split after every round), so that stock tfjs-webgpu, TabTrain's deterministic matmul and the
 * exact-mode bundle can be compared on the same job, round by round.
 *
 * Browser-safe: the caller gives the preset (its spec, blobs and held-out set), so nothing here reads
 * files. Needs tfjs on its WebGPU backend for the kernel modes to mean anything; on another backend
 * `deterministic` and `exact` would change nothing (their kernels are registered for `webgpu` only).
 *
 * All three modes train the same spec, so the job id, and with it every unit's micro-batches, is the
 * same: the kernels are the only difference between the runs.
 */
import type { LabelledSet } from '../data/idx.ts'
import { activateKernelBundle, configureTfjsWebgpu, deactivateKernelBundles, EXACT_KERNEL_BUNDLE, KERNEL_BUNDLE } from '../kernels/config.ts'
import { decodeTensorList, decodeUpdate, hashTensorList, jobSpecHash, parseJobSpec, type Hash, type JobSpec } from '../protocol/index.ts'
import { mapBlobSource } from '../worker/blobSource.ts'
import { createUnitRunner } from '../worker/unitRunner.ts'
import { applyAveragedUpdate, type WeightedUpdate } from './aggregate.ts'
import { evaluateModel, type Evaluation } from './evaluate.ts'
import { buildModel, setModelWeights } from './model.ts'

export type KernelMode = 'stock' | 'deterministic' | 'exact'

export const KERNEL_MODES: readonly KernelMode[] = ['stock', 'deterministic', 'exact']

/** What a preset builder returns that training needs (PresetBlobs from coordinator/presets fits). */
export interface ConvergencePreset {
  spec: JobSpec
  /** Every blob the spec references (initial weights, data shards), by hash. Not modified. */
  blobs: Map<string, Uint8Array>
  heldOut: LabelledSet
}

/** The kernel bundle a mode trains with (null: stock tfjs-webgpu, matmul program pinned). */
export function bundleOfMode(mode: KernelMode): string | null {
  return mode === 'stock' ? null : mode === 'exact' ? EXACT_KERNEL_BUNDLE : KERNEL_BUNDLE
}

/** Puts a mode's kernels in place on tfjs's WebGPU backend (taking out whatever bundle was there). */
export function activateKernelMode(mode: KernelMode): void {
  const bundle = bundleOfMode(mode)
  if (bundle === null) {
    deactivateKernelBundles()
    configureTfjsWebgpu()
  } else {
    activateKernelBundle(bundle)
  }
}

export interface RoundPoint {
  /** 0 is the initial checkpoint; r is the checkpoint after r rounds. */
  round: number
  /** Held-out loss and accuracy of this checkpoint. */
  loss: number
  accuracy: number
  /** Mean over the round's units of their mean inner-step training loss (NaN for round 0). */
  trainLoss: number
  /** Time since training started, at the end of this checkpoint's evaluation. */
  elapsedMs: number
}

export interface ConvergenceTimings {
  totalMs: number
  /** Units, as the unit runner measured them (fetch + train + hash), summed. */
  unitMs: number
  /** `applyAveragedUpdate` and hashing of the checkpoints, summed. */
  aggregateMs: number
  evaluateMs: number
  /** The first unit alone: shader compilation and the preset's one-time setup land here. */
  firstUnitMs: number
  /** Median unit after the first. */
  medianUnitMs: number
}

export interface ConvergenceRun {
  mode: KernelMode
  bundle: string | null
  rounds: number
  unitsPerRound: number
  innerSteps: number
  heldOutCount: number
  curve: RoundPoint[]
  final: Evaluation
  finalCheckpoint: Hash
  timings: ConvergenceTimings
}

export interface ConvergenceOptions {
  mode: KernelMode
  preset: ConvergencePreset
  rounds: number
  /** Units averaged per round; the spec's `unitsPerRound` when absent. */
  unitsPerRound?: number
  /** Inner steps per unit; the spec's when absent (a different value changes the spec and the job id). */
  innerSteps?: number
  /** Held-out examples to evaluate on (the first ones of the split); all of them when absent. */
  heldOutCount?: number
  /** Evaluate every this many rounds (and always after the last); 1 when absent. */
  evaluateEvery?: number
  /** Leave the mode's kernels in place afterwards instead of putting stock ones back. */
  keepKernels?: boolean
  onPoint?: (point: RoundPoint, mode: KernelMode) => void
  now?: () => number
}

/** The spec trained under a given number of inner steps (the preset's own spec when unchanged). */
export function specWithInnerSteps(spec: JobSpec, innerSteps: number | undefined): JobSpec {
  if (innerSteps === undefined || innerSteps === spec.training.innerSteps) return spec
  return parseJobSpec({ ...spec, training: { ...spec.training, innerSteps } })
}

function median(values: number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** One mode's training, a round at a time, so that several modes can take turns on one device. */
export interface ConvergenceSession {
  readonly mode: KernelMode
  readonly roundsDone: number
  readonly done: boolean
  /** Puts the mode's kernels in place, trains one round, and evaluates when due (returning that point). */
  nextRound(): Promise<RoundPoint | null>
  /** The curve and timings so far (after the last round: the whole run). */
  result(): ConvergenceRun
  /** Frees the model (the kernels in place stay as they are). */
  dispose(): void
}

/**
 * Starts training a preset with one mode's kernels: builds the model and evaluates the initial
 * checkpoint (round 0). Each round then runs `unitsPerRound` units through the real unit runner and
 * averages them with `applyAveragedUpdate`, as the coordinator does. Times count only this session's own
 * work, so interleaved sessions are timed fairly even on a machine whose load changes.
 */
export async function startConvergenceSession(options: ConvergenceOptions): Promise<ConvergenceSession> {
  const { mode, preset, rounds } = options
  const now = options.now ?? (() => performance.now())
  const spec = specWithInnerSteps(preset.spec, options.innerSteps)
  const unitsPerRound = options.unitsPerRound ?? spec.training.unitsPerRound
  const evaluateEvery = Math.max(1, options.evaluateEvery ?? 1)
  const heldOut: LabelledSet = { ...preset.heldOut, count: Math.min(options.heldOutCount ?? preset.heldOut.count, preset.heldOut.count) }
  const blobs = new Map(preset.blobs)
  const runner = createUnitRunner(mapBlobSource(blobs, 'convergence run'))
  const jobId = jobSpecHash(spec)

  let activeMs = 0
  let evaluateMs = 0
  let aggregateMs = 0
  const unitTimes: number[] = []
  const curve: RoundPoint[] = []
  let checkpoint = spec.model.initialWeights
  let roundsDone = 0
  let latest: Evaluation | null = null

  activateKernelMode(mode)
  const t0 = now()
  const model = await buildModel(spec)

  // Checkpoints are evaluated with stock kernels in every mode, as the coordinator evaluates them with its
  // own backend whatever kernels the units ran with: only training differs between modes (and the exact
  // bundle refuses ops such as ArgMax that it has no exact form for).
  const evaluate = async (round: number, trainLoss: number, startedAt: number): Promise<RoundPoint> => {
    activateKernelMode('stock')
    const te = now()
    setModelWeights(model, decodeTensorList(blobs.get(checkpoint)!))
    const evaluation = await evaluateModel(model, spec, heldOut)
    latest = evaluation
    evaluateMs += now() - te
    const point: RoundPoint = { round, loss: evaluation.loss, accuracy: evaluation.accuracy, trainLoss, elapsedMs: activeMs + (now() - startedAt) }
    curve.push(point)
    options.onPoint?.(point, mode)
    return point
  }

  try {
    await evaluate(0, NaN, t0)
  } catch (error) {
    model.dispose()
    throw error
  }
  activeMs += now() - t0

  return {
    mode,
    get roundsDone() {
      return roundsDone
    },
    get done() {
      return roundsDone >= rounds
    },
    async nextRound() {
      if (roundsDone >= rounds) return null
      activateKernelMode(mode)
      const tr = now()
      const round = roundsDone
      const updates: WeightedUpdate[] = []
      let trainLossSum = 0
      for (let unit = 0; unit < unitsPerRound; unit++) {
        const tu = now()
        const out = await runner.run(spec, { jobId, round, unit, inputHash: checkpoint })
        unitTimes.push(now() - tu)
        if (!out.losses.every(Number.isFinite)) throw new Error(`${mode}: round ${round} unit ${unit} gave a non-finite loss`)
        trainLossSum += out.meanLoss
        updates.push({ update: decodeUpdate(spec.training.compression, out.updateBytes), examples: out.examples })
      }
      const ta = now()
      const next = hashTensorList(applyAveragedUpdate(decodeTensorList(blobs.get(checkpoint)!), updates, spec.training.outerLearningRate))
      blobs.set(next.hash, next.bytes)
      if (checkpoint !== spec.model.initialWeights) blobs.delete(checkpoint)
      checkpoint = next.hash
      aggregateMs += now() - ta
      roundsDone++
      let point: RoundPoint | null = null
      if (roundsDone % evaluateEvery === 0 || roundsDone === rounds) point = await evaluate(roundsDone, trainLossSum / unitsPerRound, tr)
      activeMs += now() - tr
      return point
    },
    result() {
      const unitMs = unitTimes.reduce((a, b) => a + b, 0)
      return {
        mode,
        bundle: bundleOfMode(mode),
        rounds: roundsDone,
        unitsPerRound,
        innerSteps: spec.training.innerSteps,
        heldOutCount: heldOut.count,
        curve: [...curve],
        final: latest!,
        finalCheckpoint: checkpoint,
        timings: {
          totalMs: activeMs,
          unitMs,
          aggregateMs,
          evaluateMs,
          firstUnitMs: unitTimes[0] ?? NaN,
          medianUnitMs: median(unitTimes.slice(1)),
        },
      }
    },
    dispose() {
      model.dispose()
    },
  }
}

/**
 * Trains `rounds` rounds of `unitsPerRound` units from the preset's initial checkpoint with one mode's
 * kernels, averaging each round's updates as the coordinator does, and evaluates on the held-out set.
 * Puts stock kernels back afterwards unless `keepKernels`.
 */
export async function trainPresetWithKernels(options: ConvergenceOptions): Promise<ConvergenceRun> {
  const session = await startConvergenceSession(options)
  try {
    while (!session.done) await session.nextRound()
    return session.result()
  } finally {
    session.dispose()
    if (!options.keepKernels) activateKernelMode('stock')
  }
}

/**
 * Trains the same preset in several modes taking turns round by round (mode A round 1, mode B round 1,
 * ...), so that a change in the machine's load during the run weighs on every mode alike. Each mode's
 * first unit compiles its shaders; pass `warmUp` to run one throwaway unit per mode first (not counted).
 */
export async function trainModesInterleaved(
  modes: readonly KernelMode[],
  options: Omit<ConvergenceOptions, 'mode'> & { warmUp?: boolean },
): Promise<Record<KernelMode, ConvergenceRun | undefined>> {
  if (options.warmUp) {
    for (const mode of modes) await trainPresetWithKernels({ ...options, mode, rounds: 1, unitsPerRound: 1, heldOutCount: 1, evaluateEvery: 1, onPoint: undefined, keepKernels: true })
  }
  const sessions: ConvergenceSession[] = []
  try {
    for (const mode of modes) sessions.push(await startConvergenceSession({ ...options, mode }))
    while (sessions.some((s) => !s.done)) {
      for (const session of sessions) await session.nextRound()
    }
    const out: Record<KernelMode, ConvergenceRun | undefined> = { stock: undefined, deterministic: undefined, exact: undefined }
    for (const session of sessions) out[session.mode] = session.result()
    return out
  } finally {
    for (const session of sessions) session.dispose()
    if (!options.keepKernels) activateKernelMode('stock')
  }
}
