import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { ERROR_STATUS, ROUTE_LIST, refusalsOf, type ErrorCode, type RouteDefinition } from '../../src/protocol/index.ts'

/**
 * The HTTP API as an OpenAPI 3.1 description, generated from the protocol's route table
 * (src/protocol/routes.ts): the same schemas the server validates requests with, so the description cannot
 * drift from what is enforced. Answers are named by their TypeScript type in src/protocol/api.ts (they
 * have no runtime schema); every refusal is the error body with the codes the route may give per status.
 */

type JsonSchema = Record<string, unknown>

/** A zod schema as JSON Schema of what a client sends (schemas with transforms describe their input). */
function jsonSchema(schema: z.ZodType): JsonSchema {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema
  return rest
}

/** `/api/jobs/:jobId` → `/api/jobs/{jobId}` */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}')
}

function parameters(route: RouteDefinition): JsonSchema[] {
  const of = (shape: Record<string, z.ZodType>, where: 'path' | 'query') =>
    Object.entries(shape).map(([name, schema]) => ({ name, in: where, required: where === 'path' || !schema.safeParse(undefined).success, schema: jsonSchema(schema) }))
  return [...of(route.params.shape as Record<string, z.ZodType>, 'path'), ...of(route.query.shape as Record<string, z.ZodType>, 'query')]
}

function requestBody(route: RouteDefinition): JsonSchema | undefined {
  const body = route.body
  switch (body.kind) {
    case 'none':
      return undefined
    case 'json':
      return { required: true, description: body.hint, content: { 'application/json': { schema: jsonSchema(body.schema) } } }
    case 'octet-stream':
      return { required: true, description: body.description, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } }
    case 'multipart':
      return {
        required: true,
        description: body.description,
        content: {
          'multipart/form-data': {
            schema: { type: 'object', properties: Object.fromEntries(body.fields.map((f) => [f, f === 'job' ? { type: 'string', contentMediaType: 'application/json' } : { type: 'string', contentMediaType: 'application/octet-stream' }])) },
          },
        },
      }
  }
}

function responses(route: RouteDefinition): JsonSchema {
  const ok = route.response.includes('/')
    ? { description: route.response, content: { [route.response]: { schema: route.response.startsWith('text/') ? { type: 'string' } : { type: 'string', contentMediaType: route.response } } } }
    : { description: `${route.response} (src/protocol/api.ts)`, content: { 'application/json': { schema: { 'x-tabtrain-type': route.response } } } }
  const out: JsonSchema = route.websocket ? { '101': { description: `WebSocket upgrade; messages are ${route.response}` } } : { '200': ok }
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of refusalsOf(route)) {
    const status = ERROR_STATUS[code]
    byStatus.set(status, [...(byStatus.get(status) ?? []), code])
  }
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    out[String(status)] = {
      description: codes.join(', '),
      content: {
        'application/json': {
          schema: { allOf: [{ $ref: '#/components/schemas/ApiError' }, { type: 'object', properties: { code: { enum: codes } } }] },
        },
      },
    }
  }
  if (route.ops && route.path === '/readyz') out['503'] = { description: 'Not ready: the report says which part', content: { 'application/json': { schema: { type: 'object' } } } }
  out['500'] = { description: 'internal: the request was not recorded', content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiError' } } } }
  return out
}

/** The OpenAPI 3.1 document of `routes` (the whole table by default). */
export function openApiDocument(options: { version: string; serverUrl?: string; routes?: ReadonlyArray<RouteDefinition & { name: string }> }): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {}
  for (const route of options.routes ?? ROUTE_LIST) {
    const operation: JsonSchema = {
      operationId: route.name,
      summary: route.summary,
      tags: [route.ops ? 'operations' : route.path.startsWith('/api/jobs/:jobId/rounds') || route.path.includes('model.json') ? 'models' : 'api'],
      parameters: parameters(route),
      responses: responses(route),
      'x-body-limit': route.bodyLimit,
      // A page of any origin may call it (the embeddable widget); others are same-origin only.
      'x-tabtrain-widget': route.widget,
    }
    const body = requestBody(route)
    if (body) operation.requestBody = body
    if (route.websocket) operation['x-websocket'] = true
    if (route.signedIn) operation.security = [{ siwe: [] }]
    ;(paths[openApiPath(route.path)] ??= {})[route.method.toLowerCase()] = operation
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'TabTrain coordinator',
      version: options.version,
      description: 'Browser tabs train units of ML jobs for this coordinator. Every refusal is an ApiError whose `code` is stable (src/protocol/errors.ts).',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    ...(options.serverUrl ? { servers: [{ url: options.serverUrl }] } : {}),
    paths,
    components: {
      schemas: {
        ApiError: {
          type: 'object',
          required: ['error', 'code', 'message'],
          properties: {
            error: { type: 'string' },
            code: { type: 'string', enum: Object.keys(ERROR_STATUS) },
            message: { type: 'string', description: 'What exactly was wrong, for a person' },
          },
        },
      },
      securitySchemes: { siwe: { type: 'http', scheme: 'bearer', description: 'The token POST /api/auth/siwe answers with' } },
    },
  }
}

/** `GET /api/openapi.json`, built once. */
export function openApiRoute(app: FastifyInstance, options: { version: string }): void {
  let document: JsonSchema | null = null
  app.get('/api/openapi.json', async () => (document ??= openApiDocument(options)))
}

/**
 * The routes fastify serves, as `METHOD path` (HEAD, which fastify adds to every GET, left out), read from
 * its route tree: for the test that the description and the server agree.
 */
export function registeredRoutes(app: FastifyInstance): string[] {
  const routes: string[] = []
  const stack: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│├└─\s]*)(\S.*?) \(([A-Z, ]+)\)$/.exec(line) ?? /^([│├└─\s]*)(\S.*)$/.exec(line)
    if (!match) continue
    const depth = match[1]!.length / 4 - 1
    stack.length = depth
    stack.push(match[2]!)
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m && m !== 'HEAD')) routes.push(`${method} ${stack.join('')}`)
  }
  return routes.sort()
}
