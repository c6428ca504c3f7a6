import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fastifyStatic from '@fastify/static'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { registerSitePages } from './sitePages.ts'

/** Unknown addresses get a page that says so (or, under /api, a JSON refusal); only embed.html may be framed. */
describe('site pages', () => {
  let app: FastifyInstance
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tabtrain-site-'))
    await writeFile(join(dir, '404.html'), '<!doctype html><title>Page not found</title><h1>There is no page here</h1><a href="/index.html">Back to the jobs</a>')
    await writeFile(join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>')
    await writeFile(join(dir, 'embed.html'), '<!doctype html><title>embed</title>')
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>jobs</title>')
    app = Fastify()
    app.get('/api/info', async () => ({ ok: true }))
    registerSitePages(app, dir)
    await app.register(fastifyStatic, { root: dir, extensions: ['html'] })
    await app.ready()
  })

  afterAll(async () => {
    await app.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('serves the 404 page with status 404 for an unknown page, with the way back', async () => {
    const answer = await app.inject({ method: 'GET', url: '/jobs/nothing-here?x=1' })
    expect(answer.statusCode).toBe(404)
    expect(answer.headers['content-type']).toMatch(/^text\/html/)
    expect(answer.body).toContain('There is no page here')
    expect(answer.body).toContain('href="/index.html"')
  })

  it('keeps JSON with a stable code for an unknown API path', async () => {
    const answer = await app.inject({ method: 'GET', url: '/api/nope' })
    expect(answer.statusCode).toBe(404)
    expect(answer.json()).toMatchObject({ code: 'not_found', message: 'no route GET /api/nope' })
  })

  it('answers /favicon.ico with the SVG icon', async () => {
    const answer = await app.inject({ method: 'GET', url: '/favicon.ico' })
    expect(answer.statusCode).toBe(200)
    expect(answer.headers['content-type']).toBe('image/svg+xml')
  })

  it('lets any site frame embed.html, and only embed.html', async () => {
    for (const url of ['/embed.html?job=x', '/embed']) {
      const answer = await app.inject({ method: 'GET', url })
      expect(answer.statusCode, url).toBe(200)
      expect(answer.headers['content-security-policy'], url).toBe('frame-ancestors *')
    }
    expect((await app.inject({ method: 'GET', url: '/index.html' })).headers['content-security-policy']).toBeUndefined()
  })
})
