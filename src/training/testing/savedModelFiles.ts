import * as tf from '@tensorflow/tfjs'

export interface SavedModelFiles {
  /** model.json as tfjs `browserFiles`/`http` save handlers write it. */
  modelJson: string
  weights: Map<string, Uint8Array>
}

/**
 * What `model.save('downloads://model')` would give a requester, captured through a custom IOHandler:
 * model.json (topology + weightsManifest) and one weights file, or several shards of `shardBytes`.
 * Test helper.
 */
export async function savedModelFiles(model: tf.LayersModel, options: { shardBytes?: number; fileName?: string } = {}): Promise<SavedModelFiles> {
  let artifacts: tf.io.ModelArtifacts | null = null
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }),
  )
  const a = artifacts! as tf.io.ModelArtifacts
  const bytes = new Uint8Array(tf.io.CompositeArrayBuffer.join(a.weightData!))
  const base = options.fileName ?? 'model.weights'
  const shard = options.shardBytes ?? bytes.byteLength
  const weights = new Map<string, Uint8Array>()
  const paths: string[] = []
  for (let at = 0, i = 0; at < bytes.byteLength || i === 0; at += shard, i++) {
    const name = options.shardBytes ? `${base}.shard${i + 1}.bin` : `${base}.bin`
    weights.set(name, bytes.slice(at, at + shard))
    paths.push(`./${name}`)
  }
  const modelJson = JSON.stringify({
    modelTopology: a.modelTopology,
    format: a.format,
    generatedBy: a.generatedBy,
    convertedBy: a.convertedBy,
    weightsManifest: [{ paths, weights: a.weightSpecs }],
  })
  return { modelJson, weights }
}
