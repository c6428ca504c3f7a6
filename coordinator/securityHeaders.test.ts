import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fastifyStatic from '@fastify/static'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { registerWidgetCors } from './cors.ts'
import { contentSecurityPolicy, inlineScriptHashes, registerSecurityHeaders } from './securityHeaders.ts'
import { registerSitePages } from './sitePages.ts'

const INLINE = "document.getElementById('missing-path').textContent = location.pathname"

/** The site's pages carry security headers and a content security policy; widget.js and the widget's calls stay loadable anywhere. */
describe('security headers', () => {
  let app: FastifyInstance
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-headers-'))
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>jobs</title><script type="module" src="/assets/index.js"></script>')
    await writeFile(join(dir, '404.html'), `<!doctype html><title>404</title><script>${INLINE}</script>`)
    await writeFile(join(dir, 'embed.html'), '<!doctype html><title>embed</title>')
    await writeFile(join(dir, 'widget.js'), 'export {}')
    app = Fastify()
    await registerWidgetCors(app)
    app.get('/api/info', async () => ({ ok: true }))
    app.get('/api/jobs/:jobId/progress', async () => ({ ok: true }))
    registerSitePages(app, dir)
    await registerSecurityHeaders(app, { siteDir: dir, rpcUrl: 'http://127.0.0.1:8545/' })
    await app.register(fastifyStatic, { root: dir, extensions: ['html'] })
    await app.ready()
  })

  afterAll(async () => {
    await app.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('gives the pages a policy that allows wasm, module and blob workers, the chain RPC and WalletConnect, and nothing inline but known scripts', async () => {
    const answer = await app.inject({ method: 'GET', url: '/index.html' })
    const csp = answer.headers['content-security-policy'] as string
    const directive = (name: string) => csp.split('; ').find((d) => d.startsWith(`${name} `))
    expect(directive('script-src')).toBe(`script-src 'self' 'wasm-unsafe-eval' ${inlineScriptHashes(dir)[0]}`)
    expect(directive('script-src')).not.toContain("'unsafe-inline'")
    expect(directive('script-src')).not.toContain("'unsafe-eval'")
    expect(directive('worker-src')).toBe("worker-src 'self' blob:")
    expect(directive('connect-src')).toContain("connect-src 'self' http://127.0.0.1:8545 wss://relay.walletconnect.org")
    expect(directive('img-src')).toContain("img-src 'self' data:")
    expect(directive('object-src')).toBe("object-src 'none'")
    expect(directive('frame-ancestors')).toBe("frame-ancestors 'self'")
    expect(answer.headers['x-frame-options']).toBe('SAMEORIGIN')
    expect(answer.headers['x-content-type-options']).toBe('nosniff')
    expect(answer.headers['cross-origin-resource-policy']).toBe('same-origin')
    expect(answer.headers['cross-origin-opener-policy']).toBe('same-origin-allow-popups')
    expect(answer.headers['referrer-policy']).toBe('strict-origin-when-cross-origin')
  })

  it('allows the 404 page its one inline script, by hash', async () => {
    // Pinned: the hash of the 404 page's script above (a change to the page must change the policy).
    expect(inlineScriptHashes(dir)).toEqual(["'sha256-d2wrW7vPkR9JgIyExD1Ydc1mJjkLfrdzpc0stU/b+9k='"])
    const answer = await app.inject({ method: 'GET', url: '/no/such/page' })
    expect(answer.statusCode).toBe(404)
    expect(answer.headers['content-security-policy']).toContain(inlineScriptHashes(dir)[0])
  })

  it('lets any site frame embed.html, and only embed.html, with the rest of the policy intact', async () => {
    for (const url of ['/embed.html?job=x', '/embed']) {
      const answer = await app.inject({ method: 'GET', url })
      expect(answer.statusCode, url).toBe(200)
      const csp = answer.headers['content-security-policy'] as string
      expect(csp, url).toContain('frame-ancestors *')
      expect(csp, url).toContain("script-src 'self' 'wasm-unsafe-eval'")
      expect(answer.headers['x-frame-options'], url).toBeUndefined()
    }
  })

  it('keeps widget.js and the widget calls loadable by pages of any origin, and nothing else', async () => {
    const widget = await app.inject({ method: 'GET', url: '/widget.js', headers: { origin: 'https://blog.example' } })
    expect(widget.headers['cross-origin-resource-policy']).toBe('cross-origin')
    expect(widget.headers['access-control-allow-origin']).toBe('*')
    expect((await app.inject({ method: 'GET', url: '/api/info' })).headers['cross-origin-resource-policy']).toBe('cross-origin')
    expect((await app.inject({ method: 'GET', url: `/api/jobs/0x${'ab'.repeat(32)}/progress` })).headers['cross-origin-resource-policy']).toBe('same-origin')
  })

  it('reads the chain RPC origin, and leaves it out when there is no chain', () => {
    expect(contentSecurityPolicy({ scriptHashes: [], rpcUrl: 'https://rpc.example:8443/v1?key=x', embed: false })).toContain("connect-src 'self' https://rpc.example:8443 ")
    expect(contentSecurityPolicy({ scriptHashes: [], rpcUrl: null, embed: false })).toContain("connect-src 'self' wss://")
    expect(contentSecurityPolicy({ scriptHashes: [], rpcUrl: 'not a url', embed: false })).toContain("connect-src 'self' wss://")
  })
})
