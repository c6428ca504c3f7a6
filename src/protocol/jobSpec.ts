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

export const datasetSchema = z.object({
  format: z.literal('idx-classification'),
  name: z.string().min(1).max(200),
  /** Shape of one example after flattening the IDX item, e.g. [784] for 28x28 digits. */
  inputShape: z.array(positiveInt(1 << 20)).min(1).max(4),
  classes: positiveInt(100_000),
  /** Pixels are divided by this before training (255 for uint8 images in [0, 1]). */
  scale: z.number().positive(),
  train: idxSplitSchema,
  heldOut: idxSplitSchema,
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
  /** How the averaged update is applied: `average` is C_{r+1} = C_r + outerLearningRate * mean(Δ). */
  outerOptimizer: z.literal('average'),
  outerLearningRate: z.number().positive().max(10),
  leaseTtlSeconds: positiveInt(24 * 3600),
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

/** Examples one unit trains on: H steps of B examples. Updates are averaged weighted by this. */
export function examplesPerUnit(training: TrainingConfig): number {
  return training.innerSteps * training.batchSize
}
