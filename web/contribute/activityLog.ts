import type { Tone } from './dom.ts'

export type Log = (message: string, tone?: Tone) => void

/** Keeps the newest entries only: a tab left training for hours would otherwise grow the list forever. */
const MAX_ENTRIES = 200

/** The Activity list at the bottom of the page, newest first. */
export function createActivityLog(list: HTMLElement): Log {
  return (message, tone = 'info') => {
    const item = document.createElement('li')
    item.textContent = `${new Date().toLocaleTimeString()}  ${message}`
    if (tone !== 'info') item.className = tone
    list.prepend(item)
    while (list.children.length > MAX_ENTRIES) list.lastChild?.remove()
  }
}
