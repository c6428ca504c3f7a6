/**
 * Loads a trained model the way a requester would, in a process of its own: stock
 * `tf.loadLayersModel(url)` over HTTP, nothing of TabTrain's training code. Then measures its accuracy on
 * the job's held-out digits (fetched as the job spec names them) and prints one JSON line:
 * `{accuracy, correct, count, metadata, weights}`.
 *
 *   npx tsx coordinator/testing/loadModel.ts <model.json URL> <coordinator URL> <job id>
 */
import * as tf from '@tensorflow/tfjs'

const [modelUrl, coordinatorUrl, jobId] = process.argv.slice(2)
if (!modelUrl || !coordinatorUrl || !jobId) {
  console.error('usage: loadModel.ts <model.json URL> <coordinator URL> <job id>')
  process.exit(2)
}

/** The payload of an uncompressed IDX file of unsigned bytes (0x08) or big-endian float32 (0x0D), and its dimensions. */
function idx(bytes: Uint8Array): { dims: number[]; data: ArrayLike<number> } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const type = view.getUint8(2)
  if (view.getUint16(0) !== 0 || (type !== 0x08 && type !== 0x0d)) throw new Error('not an IDX file of unsigned bytes or float32')
  const rank = view.getUint8(3)
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i))
  const start = 4 + 4 * rank
  if (type === 0x08) return { dims, data: bytes.subarray(start) }
  const data = new Float32Array((bytes.byteLength - start) / 4)
  for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(start + 4 * i)
  return { dims, data }
}

async function get(path: string): Promise<Response> {
  const response = await fetch(`${coordinatorUrl}${path}`)
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`)
  return response
}

const job = (await (await get(`/api/jobs/${jobId}`)).json()) as {
  spec: { data: { inputShape: number[]; scale: number; heldOut: { images: string; labels: string } } }
}
const { inputShape, scale, heldOut } = job.spec.data
const images = idx(new Uint8Array(await (await get(`/api/blobs/${heldOut.images}`)).arrayBuffer()))
const labels = idx(new Uint8Array(await (await get(`/api/blobs/${heldOut.labels}`)).arrayBuffer()))
const count = labels.dims[0]!
const size = inputShape.reduce((a, b) => a * b, 1)
const x = new Float32Array(count * size)
for (let i = 0; i < x.length; i++) x[i] = images.data[i]! / scale

const model = await tf.loadLayersModel(modelUrl)
const predictions = model.predict(tf.tensor(x, [count, ...inputShape]), { batchSize: 500 }) as tf.Tensor
const predicted = await tf.argMax(predictions, -1).data()
let correct = 0
for (let i = 0; i < count; i++) if (predicted[i] === labels.data[i]) correct++
const artifacts = (await (await fetch(modelUrl)).json()) as { userDefinedMetadata?: unknown }
console.log(
  JSON.stringify({
    accuracy: correct / count,
    correct,
    count,
    metadata: artifacts.userDefinedMetadata ?? null,
    weights: model.weights.map((w) => w.originalName),
  }),
)
