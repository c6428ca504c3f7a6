import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { JobSpec } from '../../src/protocol/index.ts'
import { encodeContext, oneHot, sampleIndex } from '../lib/textSampling.ts'

/** Characters one click writes: enough to read a line or two, quick on a CPU-only page. */
const SAMPLE_LENGTH = 200

/**
 * For a character-level language model: writes text from the latest checkpoint in this browser, with
 * stock tfjs loading the same model.json anyone can download. tfjs is loaded only when asked.
 */
export function createSampleCard(root: HTMLElement, client: CoordinatorClient, jobId: string, spec: JobSpec) {
  const vocabulary = spec.data.vocabulary
  const depth = spec.data.inputEncoding?.depth
  if (!vocabulary || !depth) {
    root.hidden = true
    return { setRound(_round: number | null) {} }
  }
  root.hidden = false
  const contextLength = spec.data.inputShape[0]!
  const prompt = root.querySelector<HTMLInputElement>('#sample-prompt')!
  const temperature = root.querySelector<HTMLInputElement>('#sample-temperature')!
  const button = root.querySelector<HTMLButtonElement>('#sample-button')!
  const output = root.querySelector<HTMLTextAreaElement>('#sample-output')!
  const status = root.querySelector<HTMLElement>('#sample-status')!
  let round: number | null = null
  let busy = false
  button.disabled = true

  button.addEventListener('click', async () => {
    const chosen = round
    if (chosen === null || busy) return
    busy = true
    button.disabled = true
    status.textContent = `Loading the checkpoint of round ${chosen + 1}…`
    try {
      const tf = await import('@tensorflow/tfjs')
      await tf.setBackend('cpu')
      const model = await tf.loadLayersModel(client.modelUrl(jobId, chosen))
      // Whatever the topology's input layout ([context, depth] or flattened), the values are the same one-hot rows.
      const inputShape = [1, ...(model.inputs[0]!.shape.slice(1) as number[])]
      let text = prompt.value
      const chars = [...vocabulary]
      status.textContent = 'Writing…'
      for (let i = 0; i < SAMPLE_LENGTH; i++) {
        const ids = encodeContext(text, vocabulary, contextLength)
        const logits = tf.tidy(() => (model.predict(tf.tensor(oneHot(ids, depth), inputShape)) as import('@tensorflow/tfjs').Tensor).dataSync())
        text += chars[sampleIndex(logits, Number(temperature.value), Math.random)]
        if (i % 20 === 0) {
          output.value = text
          await new Promise((resolve) => setTimeout(resolve))
        }
      }
      output.value = text
      model.dispose()
      status.textContent = `Sampled from the checkpoint of round ${chosen + 1}.`
    } catch (error) {
      status.textContent = error instanceof Error ? error.message : String(error)
    } finally {
      busy = false
      button.disabled = round === null
    }
  })

  return {
    /** The latest closed round (the coordinator's numbering, from 0), or null before the first closes. */
    setRound(latest: number | null) {
      round = latest
      if (!busy) button.disabled = round === null
    },
  }
}
