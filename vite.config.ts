import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { defineConfig, type Plugin } from 'vite'

const coordinator = process.env.TABTRAIN_COORDINATOR ?? 'http://127.0.0.1:8547'

/**
 * The favicon, once for every page: emitted as /favicon.svg and linked from each HTML entry at build
 * (and in `vite` dev, where web/ is the root), so a page added later has it too and no browser asks for a
 * missing /favicon.ico (the coordinator answers that path with the SVG as well).
 */
function favicon(): Plugin {
  const file = resolve(import.meta.dirname, 'web/favicon.svg')
  return {
    name: 'tabtrain-favicon',
    generateBundle() {
      this.emitFile({ type: 'asset', fileName: 'favicon.svg', source: readFileSync(file) })
    },
    transformIndexHtml: () => [{ tag: 'link', attrs: { rel: 'icon', type: 'image/svg+xml', href: '/favicon.svg' }, injectTo: 'head' }],
  }
}

/**
 * Entries whose file name is a public address other sites link to, so it must not carry a content hash:
 * `<script type="module" src="https://<coordinator>/widget.js">` on a host page.
 */
const STABLE_ENTRIES = new Set(['widget'])

/** The static site: one HTML entry per page under web/, built to dist/web and served by the coordinator. */
export default defineConfig({
  plugins: [favicon()],
  root: resolve(import.meta.dirname, 'web'),
  publicDir: false,
  build: {
    outDir: resolve(import.meta.dirname, 'dist/web'),
    emptyOutDir: true,
    target: 'es2022',
    // Two chunks are big on purpose and load only where needed: the training worker (tfjs core, layers
    // and the webgpu, wasm and cpu backends, ~1.8 MB minified) fetched once by a contributing tab, and
    // WalletConnect (~0.9 MB) imported only when a visitor picks it. The pages' own chunks stay far below.
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      input: {
        index: resolve(import.meta.dirname, 'web/index.html'),
        contribute: resolve(import.meta.dirname, 'web/contribute.html'),
        job: resolve(import.meta.dirname, 'web/job.html'),
        new: resolve(import.meta.dirname, 'web/new.html'),
        verify: resolve(import.meta.dirname, 'web/verify.html'),
        kernels: resolve(import.meta.dirname, 'web/kernels.html'),
        // The embeddable widget: the custom element (widget.js, stable name) and the page it frames.
        widget: resolve(import.meta.dirname, 'web/widget.ts'),
        embed: resolve(import.meta.dirname, 'web/embed.html'),
        // Served by the coordinator, with status 404, for any unknown non-API path.
        notFound: resolve(import.meta.dirname, 'web/404.html'),
      },
      output: {
        entryFileNames: (chunk) => (STABLE_ENTRIES.has(chunk.name) ? '[name].js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  worker: { format: 'es' },
  server: {
    // `vite` alone serves the pages with hot reload against a coordinator started separately.
    proxy: { '/api': { target: coordinator, ws: true } },
  },
})
