import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROUTE_LIST } from '../../src/protocol/index.ts'
import { startTemporaryCoordinator, type TemporaryCoordinator } from '../testing/inProcess.ts'
import { TEST_DOMAIN } from '../testing/fixtures.ts'
import { openApiDocument, openApiPath, registeredRoutes } from './openapi.ts'

/** Routes of the API and of operations; the site's pages and files are not part of the description. */
const described = (route: string) => {
  const path = route.split(' ')[1]!
  return path.startsWith('/api/') || ['/metrics', '/healthz', '/readyz'].includes(path)
}

describe('operations on a running coordinator', () => {
  let coordinator: TemporaryCoordinator

  beforeAll(async () => {
    coordinator = await startTemporaryCoordinator({ chain: { mode: 'off', chainId: TEST_DOMAIN.chainId, verifyingContract: TEST_DOMAIN.verifyingContract } })
  }, 120_000)

  afterAll(async () => {
    await coordinator?.dispose()
  })

  it('describes exactly the routes the coordinator serves', async () => {
    const response = await fetch(`${coordinator.url}/api/openapi.json`)
    expect(response.status).toBe(200)
    const document = (await response.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> }
    expect(document.openapi).toBe('3.1.0')
    const inDocument = Object.entries(document.paths)
      .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
      .sort()
    const served = registeredRoutes(coordinator.app).filter(described).map((r) => {
      const [method, path] = r.split(' ')
      return `${method} ${openApiPath(path!)}`
    })
    expect(served.length).toBeGreaterThan(20)
    expect(inDocument).toEqual(served.sort())
    expect(inDocument).toHaveLength(ROUTE_LIST.length)
  })

  it('counts refusals by code from the API\'s own error bodies, and is ready', async () => {
    const refused = await fetch(`${coordinator.url}/api/jobs/${coordinator.presetJobId}/leases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ request: 'nonsense' }),
    })
    expect(refused.status).toBe(400)
    expect(((await refused.json()) as { code: string }).code).toBe('malformed_request')
    const metrics = await (await fetch(`${coordinator.url}/metrics`)).text()
    expect(metrics).toMatch(/^tabtrain_refusals_total\{route="\/api\/jobs\/:jobId\/leases",code="malformed_request"\} 1$/m)
    expect(metrics).toMatch(/^tabtrain_leases_total\{outcome="refused"\} 1$/m)
    // The presets' round 0 units wait for contributors.
    expect(Number(/^tabtrain_units_waiting (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0)
    const ready = await fetch(`${coordinator.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(await ready.json()).toMatchObject({ ready: true, checks: { store: { ok: true }, migrations: { ok: true } } })
  })

  it('gives every operation its parameters, body schema and refusal codes from the route table', () => {
    const document = openApiDocument({ version: 'test' }) as {
      paths: Record<string, Record<string, { operationId: string; parameters: { name: string; in: string; schema: { pattern?: string } }[]; requestBody?: { content: Record<string, { schema: unknown }> }; responses: Record<string, { description: string }> }>>
    }
    const lease = document.paths['/api/jobs/{jobId}/leases']!.post!
    expect(lease.operationId).toBe('lease')
    expect(lease.parameters).toEqual([expect.objectContaining({ name: 'jobId', in: 'path', schema: expect.objectContaining({ pattern: expect.any(String) }) })])
    expect(Object.keys(lease.requestBody!.content)).toEqual(['application/json'])
    expect(lease.responses['200']!.description).toMatch(/LeaseResponse/)
    expect(lease.responses['403']!.description).toMatch(/address_banned/)
    expect(lease.responses['429']!.description).toMatch(/too_many_leases/)
    const submission = document.paths['/api/leases/{leaseId}/submission']!.post!
    expect(Object.keys(submission.requestBody!.content)).toEqual(['application/octet-stream'])
    expect(submission.responses['410']!.description).toBe('lease_expired')
    expect(document.paths['/readyz']!.get!.responses['503']).toBeDefined()
  })
})
