import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { ApiErrorBody } from '../src/protocol/index.ts'

/** The page the widget frames on other sites (web/embed.html): the only page any site may frame. */
const EMBED_PATHS = new Set(['/embed.html', '/embed'])

/**
 * What the site answers besides its built files:
 * - an unknown path gets the built 404 page (status 404) that says so and links back, while an unknown
 *   `/api/...` path keeps a JSON refusal with a stable code, as every API answer;
 * - `/favicon.ico`, which browsers ask for on their own, answers with the site's SVG icon;
 * - `embed.html` may be framed by any site (`frame-ancestors *`): it holds the widget's consent, which
 *   only works inside someone else's page. No other page gets that header, so a later policy that forbids
 *   framing elsewhere does not need to know about the widget.
 */
export function registerSitePages(app: FastifyInstance, siteDir: string | undefined): void {
  const page = (name: string) => {
    const file = siteDir ? join(siteDir, name) : null
    return file && existsSync(file) ? readFileSync(file) : null
  }
  const notFoundPage = page('404.html')
  const icon = page('favicon.svg')

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!
    if (path === '/api' || path.startsWith('/api/') || !notFoundPage || (req.method !== 'GET' && req.method !== 'HEAD')) {
      const body: ApiErrorBody = { error: 'NotFoundError', code: 'not_found', message: `no route ${req.method} ${path}` }
      return reply.status(404).send(body)
    }
    return reply.status(404).type('text/html; charset=utf-8').send(notFoundPage)
  })

  if (icon) {
    app.get('/favicon.ico', (_req, reply) => reply.type('image/svg+xml').header('cache-control', 'public, max-age=86400').send(icon))
  }

  app.addHook('onSend', async (req, reply) => {
    if (EMBED_PATHS.has(req.url.split('?')[0]!)) void reply.header('content-security-policy', 'frame-ancestors *')
  })
}
