/**
 * `<tabtrain-contributor job="0x…" max-duty="0.5" referrer="0x…">`: the contributor widget any site embeds
 * with two lines (README, "Embed the widget"). Served at the stable address `/widget.js` (vite.config.ts).
 *
 * Why an iframe inside a shadow root, and nothing else here:
 * - The consent text, the indicator and the Stop button live in the coordinator's own page (embed.html),
 *   framed from the coordinator's origin. The host page's scripts cannot read or change a cross-origin
 *   frame, and its CSS does not reach into it, so the host can neither reword the consent nor click it.
 * - The shadow root (closed) keeps the host's CSS off the frame element, and its `:host` rules win over
 *   the host's `!important` ones (CSS Cascade: for important declarations the inner context wins), so a
 *   stylesheet that hides or fades everything does not hide the widget either.
 * - The training Worker, the burner key, the blob cache and the consent all belong to the frame's origin:
 *   nothing is computed, fetched or stored by this script, and every API call is same-origin to the frame.
 *   Browsers that partition third-party storage (Chromium does, per top-level site) keep a separate key
 *   and consent per host site.
 */

/** Where this script was loaded from: the coordinator that serves the frame and the API. */
const COORDINATOR = new URL(import.meta.url).origin

/** The frame's height until it says how tall its content is (message `tabtrain-embed-height`). */
const INITIAL_HEIGHT = 200
const MIN_HEIGHT = 120
const MAX_HEIGHT = 640

const STYLE = `
  :host {
    all: initial !important;
    display: block !important;
    visibility: visible !important;
    opacity: 1 !important;
    position: relative !important;
    transform: none !important;
    filter: none !important;
    clip-path: none !important;
    mask: none !important;
    min-width: 260px !important;
    min-height: ${MIN_HEIGHT}px !important;
    max-width: 560px !important;
    width: auto !important;
    height: auto !important;
    overflow: visible !important;
    margin: 0.5rem 0 !important;
  }
  iframe {
    display: block !important;
    visibility: visible !important;
    opacity: 1 !important;
    width: 100% !important;
    border: 0 !important;
    border-radius: 8px !important;
    color-scheme: normal;
  }
`

class TabTrainContributor extends HTMLElement {
  static readonly observedAttributes = ['job', 'max-duty', 'referrer']
  private frame: HTMLIFrameElement | null = null
  private readonly root: ShadowRoot
  private readonly onMessage = (event: MessageEvent) => {
    // Only our own frame may resize us, and only within bounds.
    if (!this.frame || event.source !== this.frame.contentWindow || event.origin !== COORDINATOR) return
    const data = event.data as { type?: unknown; height?: unknown } | null
    if (data?.type !== 'tabtrain-embed-height' || typeof data.height !== 'number' || !Number.isFinite(data.height)) return
    this.frame.style.height = `${Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, Math.ceil(data.height)))}px`
  }

  constructor() {
    super()
    this.root = this.attachShadow({ mode: 'closed' })
  }

  connectedCallback(): void {
    window.addEventListener('message', this.onMessage)
    this.render()
  }

  disconnectedCallback(): void {
    window.removeEventListener('message', this.onMessage)
    // Removing the element removes the frame, which ends its Worker: leaving the page stops the work.
    this.root.replaceChildren()
    this.frame = null
  }

  attributeChangedCallback(): void {
    if (this.isConnected) this.render()
  }

  /** The frame's address: the attributes as they are, plus the host's origin for the consent's wording. */
  private source(): string {
    const url = new URL('/embed.html', COORDINATOR)
    url.searchParams.set('job', this.getAttribute('job') ?? '')
    const duty = this.getAttribute('max-duty')
    if (duty !== null) url.searchParams.set('duty', duty)
    const referrer = this.getAttribute('referrer')
    if (referrer) url.searchParams.set('referrer', referrer)
    url.searchParams.set('host', location.origin)
    return url.href
  }

  private render(): void {
    const src = this.source()
    if (this.frame?.src === src) return
    const style = document.createElement('style')
    style.textContent = STYLE
    const frame = document.createElement('iframe')
    frame.src = src
    frame.title = 'TabTrain: lend this tab to train a model (asks first)'
    frame.style.height = `${INITIAL_HEIGHT}px`
    this.frame = frame
    this.root.replaceChildren(style, frame)
  }
}

if (!customElements.get('tabtrain-contributor')) customElements.define('tabtrain-contributor', TabTrainContributor)
