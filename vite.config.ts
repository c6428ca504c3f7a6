import { resolve } from 'node:path'
import { defineConfig } from 'vite'

const coordinator = process.env.TABTRAIN_COORDINATOR ?? 'http://127.0.0.1:8547'

/** The static site: one HTML entry per page under web/, built to dist/web and served by the coordinator. */
export default defineConfig({
  root: resolve(import.meta.dirname, 'web'),
  publicDir: false,
  build: {
    outDir: resolve(import.meta.dirname, 'dist/web'),
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: {
        index: resolve(import.meta.dirname, 'web/index.html'),
        contribute: resolve(import.meta.dirname, 'web/contribute.html'),
        job: resolve(import.meta.dirname, 'web/job.html'),
        verify: resolve(import.meta.dirname, 'web/verify.html'),
        kernels: resolve(import.meta.dirname, 'web/kernels.html'),
      },
    },
  },
  worker: { format: 'es' },
  server: {
    // `vite` alone serves the pages with hot reload against a coordinator started separately.
    proxy: { '/api': { target: coordinator, ws: true } },
  },
})
