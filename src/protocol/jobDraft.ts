/**
 * What a requester sends to create a job (the `job` field of `POST /api/jobs`), validated by the page
 * before sending and by the coordinator on arrival. Either a preset (`preset`) or the requester's own
 * model and data, sent as files beside it: `model` (model.json), `weights` (its .bin files), and `data`
 * (CSV or text) or `images` + `labels` (IDX).
 */
import { z } from 'zod'
import { paymentSchema, trainingSchema, type TrainingConfig } from './jobSpec.ts'
import { PRESET_IDS } from './presetCatalog.ts'

export const jobDraftDataSchema = z
  .object({
    /** CSV: the column holding the class; every other column is a feature unless featureColumns names some. */
    labelColumn: z.string().min(1).max(200).optional(),
    featureColumns: z.array(z.string().min(1).max(200)).min(1).max(1000).optional(),
    /** CSV: share of rows held out, in (0, 0.5]; 0.2 by default. (Text holds out its last 10%; IDX uploads are split the same way as CSV.) */
    heldOutFraction: z.number().gt(0).max(0.5).optional(),
    /** CSV: drop rows with an empty cell instead of refusing the file. */
    dropIncompleteRows: z.boolean().optional(),
    /** Text: characters the model sees before predicting the next; by default read from the model's input shape. */
    contextLength: z.number().int().min(1).max(1024).optional(),
    /** IDX: stored values are divided by this (255 for uint8 pixels by default, 1 for float32). */
    scale: z.number().positive().optional(),
    /** The data set's name in the job; the file name by default. */
    name: z.string().min(1).max(200).optional(),
  })
  .strict()

export const jobDraftSchema = z
  .object({
    preset: z.enum(PRESET_IDS).optional(),
    name: z.string().trim().min(1).max(200),
    description: z.string().max(2000).optional(),
    training: trainingSchema.partial().strict().optional(),
    kernelBundle: z.enum(['default', 'exact']),
    /** The spec's payment terms as they are: the requester is the only address whose deposit funds the job. */
    payment: paymentSchema,
    data: jobDraftDataSchema.optional(),
  })
  .strict()

export type JobDraft = z.infer<typeof jobDraftSchema>

/**
 * Hyperparameters of an uploaded model's job unless the draft overrides them: the MNIST preset's, which
 * suit small dense and convolutional models, with fewer rounds.
 */
export const CUSTOM_JOB_TRAINING: TrainingConfig = {
  innerOptimizer: 'adam',
  learningRate: 0.003,
  batchSize: 32,
  innerSteps: 10,
  unitsPerRound: 4,
  rounds: 20,
  outerOptimizer: 'average',
  outerLearningRate: 1,
  leaseTtlSeconds: 120,
}
export type JobDraftData = z.infer<typeof jobDraftDataSchema>

/** Validates a draft, or returns every problem as `path: message`. */
export function parseJobDraft(input: unknown): { ok: true; draft: JobDraft } | { ok: false; issues: string[] } {
  const result = jobDraftSchema.safeParse(input)
  if (result.success) return { ok: true, draft: result.data }
  return { ok: false, issues: result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`) }
}
