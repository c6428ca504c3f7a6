import type { FastifyInstance, FastifyReply } from 'fastify'
import { ROUTES } from '../../src/protocol/index.ts'
import type { HttpOptions } from '../http.ts'
import { ModelDownloads, type ModelCheckpoint } from '../modelDownload.ts'
import { addRoute } from '../validate.ts'

/**
 * Trained models, as stock `tf.loadLayersModel(url)` loads them:
 * - `GET /api/jobs/:jobId/rounds/:round/model.json` and `.../weights.bin`: the checkpoint round `round` produced;
 * - `GET /api/jobs/:jobId/model.json`: the latest closed round's, its weights at `rounds/<round>/weights.bin`
 *   beside it (a redirect would not do: tfjs resolves weight paths against the URL it was given).
 * Every answer names its checkpoint in `x-tabtrain-checkpoint` (and `x-tabtrain-round`), and model.json in
 * `userDefinedMetadata.tabtrain`.
 */
export async function registerModelDownloadRoutes(app: FastifyInstance, options: HttpOptions): Promise<void> {
  const downloads = new ModelDownloads({ db: options.jobs.options.db, blobs: options.blobs })

  const describe = (reply: FastifyReply, checkpoint: ModelCheckpoint) => {
    // A rebuild (work in the round later found wrong) changes what a round's URL serves: revalidate by hash.
    void reply.header('x-tabtrain-checkpoint', checkpoint.checkpointHash)
    void reply.header('x-tabtrain-round', String(checkpoint.round))
    void reply.header('etag', `"${checkpoint.checkpointHash}"`)
    void reply.header('cache-control', 'no-cache')
  }

  addRoute(app, ROUTES.roundModel, async ({ params }, _req, reply) => {
    const { model, ...checkpoint } = await downloads.modelJson(params.jobId, String(params.round), () => 'weights.bin')
    describe(reply, checkpoint)
    return model
  })

  addRoute(app, ROUTES.latestModel, async ({ params }, _req, reply) => {
    const { model, ...checkpoint } = await downloads.modelJson(params.jobId, 'latest', (round) => `rounds/${round}/weights.bin`)
    describe(reply, checkpoint)
    return model
  })

  addRoute(app, ROUTES.roundWeights, async ({ params }, _req, reply) => {
    const { bytes, ...checkpoint } = await downloads.weights(params.jobId, String(params.round))
    describe(reply, checkpoint)
    void reply.type('application/octet-stream')
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  })
}
