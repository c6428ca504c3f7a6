import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify'
import type { z } from 'zod'
import type { RouteDefinition } from '../src/protocol/index.ts'
import { CoordinatorError } from './errors.ts'

/**
 * The HTTP edge: every request is checked against its route's entry in the protocol's route table
 * (src/protocol/routes.ts) before a handler sees it, and refused with 400 `malformed_request` and a message
 * naming the field and what was wrong. Handlers get typed values, never `unknown`.
 */

type Output<S> = S extends z.ZodType ? z.output<S> : never

export type RouteParams<R extends RouteDefinition> = Output<R['params']>
export type RouteQuery<R extends RouteDefinition> = Output<R['query']>
export type RouteBodyOf<R extends RouteDefinition> = R['body'] extends { kind: 'json'; schema: infer S } ? Output<S> : R['body'] extends { kind: 'octet-stream' } ? Buffer : undefined

export interface RouteInput<R extends RouteDefinition> {
  params: RouteParams<R>
  query: RouteQuery<R>
  body: RouteBodyOf<R>
}

const MAX_ISSUES = 4

/** Zod's issues as one sentence: `field: what was wrong`, the first few, a union's likeliest branch. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): string {
  const parts: string[] = []
  for (const issue of issues) {
    const path = [...prefix, ...issue.path]
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // The branch that got furthest (deepest field reached), then the one with the fewest complaints.
      const depth = (branch: readonly z.core.$ZodIssue[]) => Math.max(...branch.map((i) => i.path.length))
      const best = [...issue.errors].sort((a, b) => depth(b) - depth(a) || a.length - b.length)[0]!
      parts.push(describeIssues(best, path))
      continue
    }
    const where = path.length > 0 ? path.map(String).join('.') : '(root)'
    parts.push(`${where}: ${issue.message.replace(/^Invalid input: /, '')}`)
  }
  const shown = parts.slice(0, MAX_ISSUES).join('; ')
  return parts.length > MAX_ISSUES ? `${shown}; and ${parts.length - MAX_ISSUES} more` : shown
}

function parse<S extends z.ZodType>(schema: S, value: unknown, describe: (issues: string) => string): z.output<S> {
  const parsed = schema.safeParse(value)
  if (!parsed.success) throw new CoordinatorError('malformed_request', describe(describeIssues(parsed.error.issues)))
  return parsed.data
}

/** The route's path parameters, parsed. */
export function parseParams<R extends RouteDefinition>(route: R, req: FastifyRequest): RouteParams<R> {
  return parse(route.params, req.params ?? {}, (issues) => `bad path parameter: ${issues}`) as RouteParams<R>
}

/** Path parameters, query and body, parsed against the route's schemas; throws `malformed_request`. */
export function parseInput<R extends RouteDefinition>(route: R, req: FastifyRequest): RouteInput<R> {
  const params = parseParams(route, req)
  const query = parse(route.query, req.query ?? {}, (issues) => `bad query parameter: ${issues}`) as RouteQuery<R>
  let body: unknown
  switch (route.body.kind) {
    case 'json': {
      const { hint } = route.body
      if (req.body === undefined || req.body === null || typeof req.body !== 'object') {
        throw new CoordinatorError(
          'malformed_request',
          `${hint}: the body must be a JSON object sent with content-type application/json, not ${req.body === undefined ? 'nothing' : typeof req.body}`,
        )
      }
      body = parse(route.body.schema, req.body, (issues) => `${hint}: ${issues}`)
      break
    }
    case 'octet-stream':
      body = req.body
      break
    default:
      body = undefined
  }
  return { params, query, body: body as RouteBodyOf<R> }
}

export type RouteHandler<R extends RouteDefinition> = (input: RouteInput<R>, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>

/**
 * Registers `route` (its method, path and body limit from the table) with a handler that receives its
 * parsed input. `options` adds hooks (a submission's early size check) and the like.
 */
export function addRoute<R extends RouteDefinition>(app: FastifyInstance, route: R, handler: RouteHandler<R>, options: RouteShorthandOptions = {}): void {
  app.route({
    ...options,
    method: route.method,
    url: route.path,
    bodyLimit: route.bodyLimit,
    handler: async (req, reply) => handler(parseInput(route, req), req, reply),
  })
}
