import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import * as tf from '@tensorflow/tfjs'
import { datasetSpecAndBlobs } from '../../src/data/prepared.ts'
import { textToDataset } from '../../src/data/text.ts'
import { hashTensorList, parseJobSpec } from '../../src/protocol/index.ts'
import { KERNEL_BUNDLE } from '../../src/kernels/config.ts'
import { seededGlorotWeights, verifyShippedChecksums, type PresetBlobs } from './mnist.ts'
import type { PresetBuildOptions } from './options.ts'

/** Tiny Shakespeare (public domain), see datasets/tinyshakespeare/README.md. */
export const SHAKESPEARE_DIR = fileURLToPath(new URL('../../datasets/tinyshakespeare/', import.meta.url))
export const SHAKESPEARE_CONTEXT = 24
export const SHAKESPEARE_HIDDEN = 128

/**
 * A character model that stock tfjs Layers, the deterministic bundle and exact mode can all run: the last
 * 24 characters, one-hot (expanded at batch time, data/text.ts), flattened → dense 128 relu → dense over
 * the 65 characters. The first matmul is an untied per-position embedding (one-hot @ W is a row lookup),
 * so it needs no Embedding layer and no scatter-add gradient; no recurrence, so a unit is a few large
 * matmuls rather than 24 small steps; and every op is one exact mode has (docs/kernels.md explains why
 * not a transformer or a GRU).
 */
export function shakespeareTopology(vocabularySize: number): Record<string, unknown> {
  const model = tf.sequential({
    name: 'shakespeare_char_mlp',
    layers: [
      tf.layers.flatten({ name: 'window', inputShape: [SHAKESPEARE_CONTEXT, vocabularySize] }),
      tf.layers.dense({ name: 'hidden', units: SHAKESPEARE_HIDDEN, activation: 'relu' }),
      tf.layers.dense({ name: 'logits', units: vocabularySize }),
    ],
  })
  const json = model.toJSON(undefined, false) as unknown as Record<string, unknown>
  model.dispose()
  return json
}

let prepared: Promise<ReturnType<typeof datasetSpecAndBlobs>> | null = null

/** The text's windows, made once per process (about 0.3 s) and shared by every build. */
function shakespeareData() {
  prepared ??= (async () => {
    await verifyShippedChecksums(SHAKESPEARE_DIR)
    const text = new Uint8Array(await readFile(`${SHAKESPEARE_DIR}/input.txt`))
    return datasetSpecAndBlobs(textToDataset(text, { contextLength: SHAKESPEARE_CONTEXT, fileName: 'input.txt' }), 'Tiny Shakespeare (next character after 24)')
  })()
  prepared.catch(() => (prepared = null))
  return prepared
}

export async function buildShakespearePreset(options: PresetBuildOptions): Promise<PresetBlobs> {
  const { data, blobs: dataBlobs, train, heldOut } = await shakespeareData()
  const vocabularySize = data.classes
  const blobs = new Map<string, Uint8Array>(dataBlobs)
  const inputs = SHAKESPEARE_CONTEXT * vocabularySize
  const initial = hashTensorList(
    seededGlorotWeights([[inputs, SHAKESPEARE_HIDDEN], [SHAKESPEARE_HIDDEN], [SHAKESPEARE_HIDDEN, vocabularySize], [vocabularySize]], 'tabtrain/preset/shakespeare-char/v1'),
  )
  blobs.set(initial.hash, initial.bytes)
  const spec = parseJobSpec({
    version: 1,
    name: options.name ?? 'Tiny Shakespeare (character model, 24-character window)',
    description:
      options.description ??
      "Predict the next character of Shakespeare's plays from the 24 before it: 100,000 training windows from the first 90% of " +
        'the text, 2,000 held-out windows from the last 10%; a one-hot window, a 128-unit relu layer and a softmax over the 65 characters.',
    seed: 20261202,
    model: { format: 'tfjs-layers', topology: shakespeareTopology(vocabularySize), initialWeights: initial.hash },
    data,
    training: options.training,
    kernelBundle: options.kernelBundle ?? KERNEL_BUNDLE,
    ...(options.payment ? { payment: options.payment } : {}),
  })
  return { spec, blobs, train, heldOut }
}
