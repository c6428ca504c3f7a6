import type { Hex } from 'viem'

/** The page's element with this id; a missing one is a bug in contribute.html, said at once. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id)
  if (!el) throw new Error(`contribute.html has no #${id}`)
  return el as T
}

export type Tone = 'info' | 'good' | 'bad'

/** A status line: the message, its tone, and the transaction it is about (kept in data-tx-hash too). */
export function setStatus(el: HTMLElement, message: string, tone: Tone = 'info', txHash?: Hex): void {
  el.className = tone === 'info' ? 'muted' : tone
  el.replaceChildren(message)
  if (txHash) {
    const hash = document.createElement('span')
    hash.className = 'tx'
    hash.textContent = ` ${txHash}`
    el.append(hash)
    el.dataset.txHash = txHash
  } else {
    delete el.dataset.txHash
  }
}
