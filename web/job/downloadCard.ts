import type { CoordinatorClient } from '../../src/client/coordinatorClient.ts'
import type { JobProgress } from '../../src/protocol/index.ts'

/**
 * The trained model at any closed round, as stock `tf.loadLayersModel(url)` loads it: links to the
 * round's model.json and weights, the checkpoint hash they were built from, and the one line of code
 * that loads them. Round r is the checkpoint that closing round r produced (the coordinator's numbering,
 * from 0); nothing is offered until the first round closes.
 */
export function createDownloadCard(root: HTMLElement, client: CoordinatorClient, jobId: string) {
  const select = root.querySelector<HTMLSelectElement>('#download-round')!
  const modelLink = root.querySelector<HTMLAnchorElement>('#download-model')!
  const weightsLink = root.querySelector<HTMLAnchorElement>('#download-weights')!
  const hash = root.querySelector<HTMLElement>('#download-hash')!
  const code = root.querySelector<HTMLElement>('#download-code')!
  const empty = root.querySelector<HTMLElement>('#download-empty')!
  const body = root.querySelector<HTMLElement>('#download-body')!
  let checkpoints: { round: number; hash: string; accuracy: number }[] = []

  const show = () => {
    const chosen = checkpoints.find((c) => String(c.round) === select.value) ?? checkpoints.at(-1)
    root.dataset.round = chosen ? String(chosen.round) : ''
    if (!chosen) return
    const url = client.modelUrl(jobId, chosen.round)
    modelLink.href = url
    weightsLink.href = url.replace(/model\.json$/, 'weights.bin')
    hash.textContent = chosen.hash
    code.textContent = `const model = await tf.loadLayersModel('${new URL(url, location.href).href}')`
  }
  select.addEventListener('change', show)

  return {
    update(progress: JobProgress) {
      const latest = select.value === '' || Number(select.value) === checkpoints.at(-1)?.round
      checkpoints = [...progress.history]
        .sort((a, b) => a.round - b.round)
        .map((r) => ({ round: r.round, hash: r.outputHash, accuracy: r.heldOutAccuracy }))
      empty.hidden = checkpoints.length > 0
      body.hidden = checkpoints.length === 0
      if (select.options.length !== checkpoints.length) {
        const keep = select.value
        select.replaceChildren(
          ...checkpoints.map((c) => new Option(`After round ${c.round + 1} of ${progress.rounds} · ${(c.accuracy * 100).toFixed(1)}% held-out`, String(c.round))),
        )
        select.value = latest && checkpoints.length > 0 ? String(checkpoints.at(-1)!.round) : keep
      }
      show()
    },
  }
}
