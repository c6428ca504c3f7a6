import fastifyMultipart from '@fastify/multipart'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Address } from 'viem'
import { ROUTES, type PresetInfo } from '../../src/protocol/index.ts'
import { checkRequester, createJobFromDraft, readDraft, UPLOAD_FIELDS, type UploadedFile, type UploadField } from '../jobCreation.ts'
import { CoordinatorError } from '../errors.ts'
import type { JobService } from '../jobs.ts'
import { listPresets } from '../presets/index.ts'
import { addRoute } from '../validate.ts'

export interface UploadLimits {
  /** Largest model.json. */
  modelBytes: number
  /** Largest weight, data, images or labels file. */
  fileBytes: number
  /** All files of one request together. */
  totalBytes: number
  /** Most files in one request (model.json, its weight shards, the data). */
  files: number
}

export const DEFAULT_UPLOAD_LIMITS: UploadLimits = {
  modelBytes: 4 * 1024 * 1024,
  fileBytes: 48 * 1024 * 1024,
  totalBytes: 64 * 1024 * 1024,
  files: 64,
}

export interface JobCreationRouteOptions {
  jobs: JobService
  /**
   * Who is asking (Sign-In with Ethereum); when given, only the draft's payment.requester may create the
   * job, so nobody creates jobs in another's name. Throws its own error when nobody is signed in.
   */
  signedIn?: (req: FastifyRequest) => Promise<Address>
  limits?: Partial<UploadLimits>
}

/** A limit as a person reads it. */
const size = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${+(bytes / 1024 / 1024).toFixed(1)} MiB` : bytes >= 1024 ? `${+(bytes / 1024).toFixed(1)} KiB` : `${bytes} bytes`

/**
 * `GET /api/presets`: the presets with their defaults and help. `POST /api/jobs` (multipart/form-data): a
 * `job` field (the draft, src/protocol/jobDraft.ts) and, for the requester's own model, files `model`,
 * `weights` (one or more), and `data` or `images` + `labels`. 201 `{jobId, spec}`; 200 with the existing
 * id for a spec that exists; 400/403/413 with a stable code and a message naming the file, row, layer or
 * field. Register with `app.register(jobCreationRoutes, options)`: multipart parsing stays inside it.
 */
export async function jobCreationRoutes(app: FastifyInstance, options: JobCreationRouteOptions): Promise<void> {
  const limits = { ...DEFAULT_UPLOAD_LIMITS, ...options.limits }
  await app.register(fastifyMultipart, {
    // Busboy's own limit is the largest any field allows; each field's own limit is checked below.
    limits: { fileSize: Math.max(limits.fileBytes, limits.modelBytes), files: limits.files, fields: 4, fieldSize: 1024 * 1024, parts: limits.files + 4 },
  })

  addRoute(app, ROUTES.presets, async (): Promise<{ presets: readonly PresetInfo[] }> => ({ presets: listPresets() }))

  addRoute(app, ROUTES.createJob, async (_input, req, reply) => {
    let draft: ReturnType<typeof readDraft> | null = null
    const files: UploadedFile[] = []
    let total = 0
    for await (const part of req.parts()) {
      if (part.type === 'field') {
        if (part.fieldname !== 'job') throw new CoordinatorError('invalid_job_draft', `unknown field "${part.fieldname}"; the draft goes in "job"`)
        draft = readDraft(part.value)
        // Refuse someone else's job before reading any file.
        if (options.signedIn) checkRequester(await options.signedIn(req), draft)
        continue
      }
      const field = part.fieldname as UploadField
      if (!UPLOAD_FIELDS.includes(field)) {
        throw new CoordinatorError('invalid_job_draft', `unknown file field "${part.fieldname}" (${part.filename}); files go in ${UPLOAD_FIELDS.join(', ')}`)
      }
      const max = field === 'model' ? limits.modelBytes : limits.fileBytes
      let buffer: Buffer
      try {
        buffer = await part.toBuffer()
      } catch (error) {
        if ((error as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
          throw new CoordinatorError('file_too_large', `${field} file "${part.filename}" is larger than ${size(max)}, the most accepted`)
        }
        throw error
      }
      if (buffer.byteLength > max) throw new CoordinatorError('file_too_large', `${field} file "${part.filename}" is larger than ${size(max)}, the most accepted`)
      total += buffer.byteLength
      if (total > limits.totalBytes) {
        throw new CoordinatorError('file_too_large', `the files up to ${field} file "${part.filename}" add up to more than ${size(limits.totalBytes)}, the most accepted in one job`)
      }
      files.push({ field, filename: part.filename, bytes: new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength) })
    }
    if (!draft) throw new CoordinatorError('invalid_job_draft', 'no "job" field: send the draft (JSON) as the first part')
    const created = await createJobFromDraft(options.jobs, draft, files)
    return reply.status(created.created ? 201 : 200).send({ jobId: created.jobId, spec: created.spec })
  }, {
    // Before any byte is read: a body of another type would otherwise be parsed whole, up to the upload limit.
    preParsing: async (req, _reply, payload) => {
      // (req.isMultipart() is only known once the multipart parser ran.)
      if (!/^multipart\/form-data\s*;/i.test(String(req.headers['content-type'] ?? ''))) {
        throw new CoordinatorError('invalid_job_draft', 'send the job as multipart/form-data: a "job" field with the draft (JSON), then any files')
      }
      return payload
    },
  })
}
