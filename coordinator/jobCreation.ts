/**
 * Creating a job from a requester's draft: a preset with their choices, or their own tfjs model with a
 * data set (CSV, text or IDX). Everything is converted and checked in memory first (the draft, the model
 * file and its weights, the data, the model against the data and against the kernel bundle); only a job
 * that passes every check has its blobs stored and its row written, so a bad upload stores nothing.
 */
import { getAddress } from 'viem'
import { csvToDataset, DEFAULT_HELD_OUT_FRACTION } from '../src/data/csv.ts'
import { DatasetError } from '../src/data/datasetError.ts'
import { parseIdx, validateIdxPair } from '../src/data/idx.ts'
import { datasetSpecAndBlobs, splitLabelledIdx, type PreparedDataset } from '../src/data/prepared.ts'
import { textToDataset } from '../src/data/text.ts'
import {
  CUSTOM_JOB_TRAINING,
  hashTensorList,
  JOB_CREATION_FILE_FIELDS,
  jobSpecHash,
  parseJobDraft,
  parseJobSpec,
  trainingSchema,
  type CreatedJob,
  type Hash,
  type JobDraft,
  type JobSpec,
} from '../src/protocol/index.ts'
import { checkModelAgainstData, checkModelForBundle, importModel, ModelFileError, type ImportedModel } from '../src/training/importModel.ts'
import { CoordinatorError } from './errors.ts'
import type { JobService } from './jobs.ts'
import { buildPreset, kernelBundleId, PresetError } from './presets/index.ts'

/** The file fields of `POST /api/jobs`. */
/** The file fields of `POST /api/jobs`, as the protocol names them. */
export const UPLOAD_FIELDS = JOB_CREATION_FILE_FIELDS
export type UploadField = (typeof UPLOAD_FIELDS)[number]

export interface UploadedFile {
  field: UploadField
  filename: string
  bytes: Uint8Array
}


/** Most examples an uploaded data set may hold (bounds the coordinator's memory per job). */
export const MAX_UPLOAD_EXAMPLES = 1_000_000

/** Parses the `job` field (JSON text or an object) into a draft, or refuses with every bad field named. */
export function readDraft(input: unknown): JobDraft {
  let value = input
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input)
    } catch (error) {
      throw new CoordinatorError('invalid_job_draft', `the job field is not JSON: ${(error as Error).message}`)
    }
  }
  const parsed = parseJobDraft(value)
  if (!parsed.ok) throw new CoordinatorError('invalid_job_draft', `job: ${parsed.issues.join('; ')}`)
  return parsed.draft
}

/** Turns the library's typed refusals into the route's codes, keeping their messages. */
function asCoordinatorError(error: unknown): unknown {
  if (error instanceof DatasetError) return new CoordinatorError('invalid_dataset', error.message)
  if (error instanceof ModelFileError) {
    if (error.code === 'model_data_mismatch' || error.code === 'unsupported_by_bundle') return new CoordinatorError(error.code, error.message)
    return new CoordinatorError('invalid_model', error.message)
  }
  if (error instanceof PresetError) {
    return new CoordinatorError(error.code === 'unsupported_by_bundle' ? 'unsupported_by_bundle' : 'invalid_job_draft', error.message)
  }
  return error
}

/** A spec and every blob it references, checked, nothing stored yet. */
export interface PreparedJob {
  spec: JobSpec
  blobs: Map<string, Uint8Array>
  origin: 'preset' | 'upload'
}

export async function prepareJob(draft: JobDraft, files: UploadedFile[]): Promise<PreparedJob> {
  try {
    if (draft.preset) {
      if (files.length > 0) throw new CoordinatorError('invalid_job_draft', `a preset job takes no files; got ${files.map((f) => `${f.field} (${f.filename})`).join(', ')}`)
      if (draft.data) throw new CoordinatorError('invalid_job_draft', 'job.data: a preset brings its own data set')
      const preset = await buildPreset(draft.preset, {
        kernelBundle: draft.kernelBundle,
        payment: draft.payment,
        name: draft.name,
        ...(draft.description ? { description: draft.description } : {}),
        ...(draft.training ? { training: draft.training } : {}),
      })
      return { spec: preset.spec, blobs: preset.blobs, origin: 'preset' }
    }
    return await prepareUpload(draft, files)
  } catch (error) {
    throw asCoordinatorError(error)
  }
}

function single(files: UploadedFile[], field: UploadField): UploadedFile | undefined {
  const matching = files.filter((f) => f.field === field)
  if (matching.length > 1) throw new CoordinatorError('invalid_job_draft', `one ${field} file is expected, got ${matching.length}`)
  return matching[0]
}

async function prepareUpload(draft: JobDraft, files: UploadedFile[]): Promise<PreparedJob> {
  const modelFile = single(files, 'model')
  if (!modelFile) throw new CoordinatorError('missing_file', 'no model file: upload the model.json that tfjs model.save() writes (field "model"), or choose a preset')
  const weights = new Map<string, Uint8Array>()
  for (const f of files.filter((f) => f.field === 'weights')) {
    if (weights.has(f.filename)) throw new CoordinatorError('invalid_job_draft', `weight file "${f.filename}" was uploaded twice`)
    weights.set(f.filename, f.bytes)
  }
  const model = await importModel(modelFile.bytes, weights)
  const bundle = kernelBundleId(draft.kernelBundle)
  checkModelForBundle(model.topology, bundle)

  const { prepared, name } = prepareData(draft, files, model)
  const exampleSize = prepared.itemShape.reduce((a, b) => a * b, 1) * (prepared.inputEncoding?.depth ?? 1)
  checkModelAgainstData(model, { exampleSize, classes: prepared.classes, describe: describeData(prepared, name) })
  const { data, blobs } = datasetSpecAndBlobs(prepared, draft.data?.name ?? name, model.inputShape)

  const initial = hashTensorList(model.initialWeights)
  blobs.set(initial.hash, initial.bytes)
  const training = trainingSchema.safeParse({ ...CUSTOM_JOB_TRAINING, ...draft.training })
  if (!training.success) throw new CoordinatorError('invalid_job_draft', training.error.issues.map((i) => `training.${i.path.join('.')}: ${i.message}`).join('; '))
  const spec = parseJobSpec({
    version: 1,
    name: draft.name,
    description: draft.description ?? '',
    // Example sampling differs between jobs, and is fixed by what the job is.
    seed: Number.parseInt(initial.hash.slice(2, 10), 16),
    model: { format: 'tfjs-layers', topology: model.topology, initialWeights: initial.hash },
    data,
    training: training.data,
    kernelBundle: bundle,
    payment: draft.payment,
  })
  return { spec, blobs, origin: 'upload' }
}

function describeData(prepared: PreparedDataset, name: string): string {
  if (prepared.inputEncoding) return `${name} (windows of ${prepared.itemShape[0]} characters, one-hot over ${prepared.inputEncoding.depth})`
  if (prepared.featureNames) return `${name} (${prepared.featureNames.length} features)`
  return `${name} (examples of shape [${prepared.itemShape.join(',')}])`
}

function prepareData(draft: JobDraft, files: UploadedFile[], model: ImportedModel): { prepared: PreparedDataset; name: string } {
  const options = draft.data ?? {}
  const dataFile = single(files, 'data')
  const images = single(files, 'images')
  const labels = single(files, 'labels')
  if (dataFile && (images || labels)) throw new CoordinatorError('invalid_job_draft', 'upload either a data file (CSV or text) or IDX images and labels, not both')
  if (images || labels) {
    if (!images || !labels) throw new CoordinatorError('missing_file', `IDX data needs both an images and a labels file; ${images ? 'labels' : 'images'} is missing`)
    validateIdxPair(images.bytes, labels.bytes, { classes: model.outputUnits, maxCount: MAX_UPLOAD_EXAMPLES })
    const x = parseIdx(images.bytes)
    const y = parseIdx(labels.bytes)
    const { train, heldOut } = splitLabelledIdx(x, y, options.heldOutFraction ?? DEFAULT_HELD_OUT_FRACTION)
    const scale = options.scale ?? (x.data instanceof Float32Array ? 1 : 255)
    return { prepared: { train, heldOut, classes: model.outputUnits, itemShape: x.shape.slice(1), scale }, name: images.filename }
  }
  if (!dataFile) throw new CoordinatorError('missing_file', 'no data: upload a CSV or text file (field "data"), or IDX images and labels')
  if (options.labelColumn !== undefined || dataFile.filename.toLowerCase().endsWith('.csv')) {
    if (options.labelColumn === undefined) throw new CoordinatorError('invalid_job_draft', `job.data.labelColumn: name the column of ${dataFile.filename} that holds the classes`)
    const prepared = csvToDataset(dataFile.bytes, {
      labelColumn: options.labelColumn,
      fileName: dataFile.filename,
      ...(options.featureColumns ? { featureColumns: options.featureColumns } : {}),
      ...(options.heldOutFraction !== undefined ? { heldOutFraction: options.heldOutFraction } : {}),
      ...(options.dropIncompleteRows !== undefined ? { dropIncompleteRows: options.dropIncompleteRows } : {}),
    })
    if (prepared.train.images.shape[0]! + prepared.heldOut.images.shape[0]! > MAX_UPLOAD_EXAMPLES) {
      throw new DatasetError('too_large', `${dataFile.filename}: more than ${MAX_UPLOAD_EXAMPLES} rows`)
    }
    return { prepared, name: dataFile.filename }
  }
  // Text: the window length is the model's first input axis unless the draft says otherwise.
  const contextLength = options.contextLength ?? (model.inputShape.length === 2 ? model.inputShape[0] : undefined)
  if (contextLength === undefined) {
    throw new CoordinatorError(
      'invalid_job_draft',
      `job.data.contextLength: the model's input has shape [${model.inputShape.join(',')}]; give the window length for ${dataFile.filename}, or a model whose input is [window, vocabulary]`,
    )
  }
  return { prepared: textToDataset(dataFile.bytes, { contextLength, fileName: dataFile.filename }), name: dataFile.filename }
}

/**
 * Creates the job unless its spec exists (then answers the existing id with created: false). Blobs are
 * stored only after prepareJob accepted everything.
 */
export async function createJobFromDraft(jobs: JobService, draft: JobDraft, files: UploadedFile[]): Promise<CreatedJob> {
  const prepared = await prepareJob(draft, files)
  const jobId = jobSpecHash(prepared.spec)
  const existing = await jobs.options.db.query(`SELECT 1 FROM jobs WHERE id = $1`, [jobId])
  if (existing.length > 0) return { jobId, spec: prepared.spec, created: false }
  await jobs.createJob(prepared.spec, prepared.blobs.values(), prepared.origin)
  return { jobId, spec: prepared.spec, created: true }
}

/** The signed-in address must be the one that will escrow and own the job. */
export function checkRequester(signedIn: string, draft: JobDraft): void {
  if (getAddress(signedIn) !== getAddress(draft.payment.requester)) {
    throw new CoordinatorError('not_requester', `signed in as ${getAddress(signedIn)}, but the job's payment.requester is ${draft.payment.requester}: sign in with the requester's wallet`)
  }
}
