import { z } from 'zod'
import { canonicalJson, canonicalJsonHash } from './canonicalJson.ts'
import { hashSchema, type Hash } from './hash.ts'
import { addressSchema } from './address.ts'
import { amountSchema } from './amount.ts'
import { verificationSchema } from './verification.ts'

/**
 * A training job, as canonical JSON addressed by its hash (`specHash`, which is also the job's id and
 * what the on-chain escrow will record). Everything a contributor or a verifier needs to recompute a
 * unit is in here or reachable from here by hash.
 */
const u32 = z.number().int().min(0).max(0xffff_ffff)
const positiveInt = (max: number) => z.number().int().min(1).max(max)

export const idxSplitSchema = z.object({
  /** Hash of an uncompressed IDX3 file of uint8 images. */
  images: hashSchema,
  /** Hash of an uncompressed IDX1 file of uint8 labels. */
  labels: hashSchema,
  count: positiveInt(10_000_000),
})

/**
 * How a stored example becomes the model's input. Absent: the IDX item's values divided by `scale`.
 * `one-hot`: the item holds integer ids (uint8), each expanded to a one-hot row of `depth` floats when
 * the batch is gathered, so a character model needs no Embedding layer (and no scatter-add gradient, whose
 * order is not fixed on the GPU); `inputShape` is then [item length, depth] and `scale` is not applied.
 */
export const inputEncodingSchema = z.object({ kind: z.literal('one-hot'), depth: positiveInt(256) })

/**
 * Per-feature standardisation already applied to stored float32 features (CSV uploads): feature j was
 * stored as (x − mean[j]) / std[j], with mean and std of the training split. Recorded so that whoever uses
 * the trained model feeds new rows through the same transform.
 */
export const standardizationSchema = z.object({
  mean: z.array(z.number()).min(1).max(1 << 16),
  std: z.array(z.number().positive()).min(1).max(1 << 16),
})

/**
 * Every field after `heldOut` is optional and absent in the MNIST presets, so adding them changed no
 * existing spec hash (jobSpec.test.ts pins them).
 */
export const datasetSchema = z.object({
  format: z.literal('idx-classification'),
  name: z.string().min(1).max(200),
  /** Shape of one example as the model takes it, e.g. [784] for 28x28 digits (the IDX item, flattened or not, same size). */
  inputShape: z.array(positiveInt(1 << 20)).min(1).max(4),
  classes: positiveInt(100_000),
  /** Stored values are divided by this before training (255 for uint8 images in [0, 1]; 1 for float32 features). */
  scale: z.number().positive(),
  train: idxSplitSchema,
  heldOut: idxSplitSchema,
  inputEncoding: inputEncodingSchema.optional(),
  /** Text data sets: the characters of the vocabulary in id order (id i is the i-th code point). */
  vocabulary: z.string().min(1).max(4096).optional(),
  /** Class names in id order (CSV labels that were strings: their sorted distinct values). */
  labelNames: z.array(z.string().max(200)).min(1).max(100_000).optional(),
  /** Input feature names in stored order (CSV: a numeric column's header, a categorical one's `column=value`). */
  featureNames: z.array(z.string().max(400)).min(1).max(1 << 16).optional(),
  standardization: standardizationSchema.optional(),
})

export const trainingSchema = z.object({
  innerOptimizer: z.enum(['sgd', 'adam']),
  learningRate: z.number().positive().max(10),
  batchSize: positiveInt(4096),
  /** H: optimizer steps inside one unit. H = 1 is synchronous data-parallel SGD; larger H is DiLoCo-style. */
  innerSteps: positiveInt(10_000),
  /** K: accepted updates that close a round. */
  unitsPerRound: positiveInt(10_000),
  /** R: rounds after which the job is finished. */
  rounds: positiveInt(1_000_000),
  /**
   * How the averaged update is applied. `average`: C_{r+1} = C_r + outerLearningRate · mean(Δ).
   * `nesterov` (DiLoCo's outer optimizer): the averaged update is a pseudo-gradient g = −mean(Δ), a momentum
   * buffer m ← μ·m + g is kept with the checkpoint, and C_{r+1} = C_r − outerLearningRate · (g + μ·m).
   */
  outerOptimizer: z.enum(['average', 'nesterov']),
  outerLearningRate: z.number().positive().max(10),
  /** μ of the `nesterov` outer optimizer; 0.9 when absent (DiLoCo's value). Ignored by `average`. */
  outerMomentum: z.number().min(0).max(0.999).optional(),
  leaseTtlSeconds: positiveInt(24 * 3600),
  /**
   * S, the rounds an answer may lag. Absent or 0: synchronous rounds of exactly K units, each trained
   * from the round's checkpoint. S ≥ 1: asynchronous rounds whose size follows the live contributor pool:
   * every lease request gets a unit of the current round (created on demand), a round closes once it holds
   * max(K, live contributors) settled answers, and an answer computed from a checkpoint at most S rounds
   * old is averaged into the round open when it settles. Every unit stays a pure function of its input
   * checkpoint and its example indices, so a check re-executes it bit for bit.
   */
  maxStaleness: z.number().int().min(0).max(16).optional(),
  /**
   * Upper bound for H when a contributor sizes its units to its device (auto-sizing): a lease may ask for
   * any H in [innerSteps, maxInnerSteps]; the unit records the H it was given. Absent: H is innerSteps.
   */
  maxInnerSteps: positiveInt(10_000).optional(),
  /**
   * How an update travels. Absent: canonical float32 tensor bytes. `int8`: each block of `blockSize` values
   * as int8 with one float32 scale (src/protocol/updateCodec.ts); the claim's output hash is the hash of
   * exactly those bytes, and decoding is deterministic, so a re-execution yields the same bytes.
   */
  compression: z.object({ kind: z.literal('int8'), blockSize: positiveInt(1 << 16) }).optional(),
})

export const modelSchema = z.object({
  format: z.literal('tfjs-layers'),
  /** `model.toJSON()` of a tfjs Layers model: the topology only, weights live in the checkpoint. */
  topology: z.record(z.string(), z.unknown()),
  /** Hash of the canonical tensor bytes of the initial weights: the checkpoint of round 0. */
  initialWeights: hashSchema,
})

/**
 * What the requester pays. Optional: a job without it is a volunteer job and runs without escrow.
 * With it, units are issued only once the escrow on-chain holds `budget`, each accepted unit earns its
 * contributor `pricePerUnit`, and no unit is issued that the rest of the escrow could not pay for.
 */
export const paymentSchema = z
  .object({
    pricePerUnit: amountSchema,
    budget: amountSchema,
    /**
     * The only address whose escrow deposit funds this job (JobEscrow keys deposits by spec hash and
     * depositor), so nobody can squat another requester's spec hash.
     */
    requester: addressSchema,
  })
  .refine((p) => BigInt(p.pricePerUnit) > 0n, { message: 'pricePerUnit must be positive', path: ['pricePerUnit'] })
  .refine((p) => BigInt(p.budget) >= BigInt(p.pricePerUnit), { message: 'budget must pay for at least one unit', path: ['budget'] })

export const jobSpecSchema = z.object({
  version: z.literal(1),
  name: z.string().min(1).max(200),
  description: z.string().max(2000),
  seed: u32,
  model: modelSchema,
  data: datasetSchema,
  training: trainingSchema,
  /** Identifies the kernels a unit must run with; part of every device class. */
  kernelBundle: z.string().min(1).max(200),
  payment: paymentSchema.optional(),
  /** How units are checked; DEFAULT_VERIFICATION when absent. */
  verification: verificationSchema.optional(),
})

export type JobSpec = z.infer<typeof jobSpecSchema>
export type TrainingConfig = z.infer<typeof trainingSchema>
export type PaymentTerms = z.infer<typeof paymentSchema>
export type DatasetSpec = z.infer<typeof datasetSchema>
export type InputEncoding = z.infer<typeof inputEncodingSchema>

export class JobSpecError extends Error {
  override name = 'JobSpecError'
  constructor(readonly issues: string[]) {
    super(`invalid job spec: ${issues.join('; ')}`)
  }
}

/** Validates untrusted input into a JobSpec, or throws a JobSpecError naming every bad field. */
export function parseJobSpec(input: unknown): JobSpec {
  const result = jobSpecSchema.safeParse(input)
  if (!result.success) {
    throw new JobSpecError(result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`))
  }
  return result.data
}

export function jobSpecJson(spec: JobSpec): string {
  return canonicalJson(spec)
}

/** The job's id: SHA-256 of its canonical JSON. */
export function jobSpecHash(spec: JobSpec): Hash {
  return canonicalJsonHash(spec)
}

/** S: how many rounds an answer may lag behind the round it is averaged into (0: synchronous rounds). */
export function maxStaleness(training: TrainingConfig): number {
  return training.maxStaleness ?? 0
}

/** True for a job whose rounds follow the live contributor pool (see `maxStaleness` in the schema). */
export function isAsynchronous(training: TrainingConfig): boolean {
  return maxStaleness(training) > 0
}

/** Examples one unit trains on: H steps of B examples. Updates are averaged weighted by this. */
export function examplesPerUnit(training: TrainingConfig): number {
  return training.innerSteps * training.batchSize
}
