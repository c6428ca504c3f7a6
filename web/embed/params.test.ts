import { describe, expect, it } from 'vitest'
import { DEFAULT_DUTY, EmbedParamError, MIN_DUTY, parseEmbedParams, restAfter } from './params.ts'

const JOB = `0x${'AB'.repeat(32)}`
const frame = { ancestorOrigin: 'https://blog.example', referrerOrigin: null }
const q = (params: Record<string, string>) => `?${new URLSearchParams(params)}`

describe('widget attributes', () => {
  it('reads job, duty and referrer; the host is the one the browser names, not the one the page claims', () => {
    const params = parseEmbedParams(q({ job: JOB, duty: '0.3', referrer: '0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc', host: 'https://liar.example' }), frame)
    expect(params).toEqual({ job: JOB.toLowerCase(), duty: 0.3, referrer: '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC', host: 'https://blog.example' })
  })

  it('defaults the duty, floors it, and treats the zero address as no referrer', () => {
    expect(parseEmbedParams(q({ job: JOB }), frame)).toMatchObject({ duty: DEFAULT_DUTY, referrer: null })
    expect(parseEmbedParams(q({ job: JOB, duty: '0.001' }), frame).duty).toBe(MIN_DUTY)
    expect(parseEmbedParams(q({ job: JOB, referrer: `0x${'0'.repeat(40)}` }), frame).referrer).toBeNull()
  })

  it('refuses what the consent could not state exactly, saying which attribute', () => {
    const code = (search: string) => {
      try {
        parseEmbedParams(search, frame)
        return null
      } catch (error) {
        return error instanceof EmbedParamError ? error.code : 'other'
      }
    }
    expect(code(q({}))).toBe('missing_job')
    expect(code(q({ job: 'mnist' }))).toBe('bad_job')
    expect(code(q({ job: JOB, referrer: 'my-site' }))).toBe('bad_referrer')
    expect(code(q({ job: JOB, duty: '2' }))).toBe('bad_duty')
  })
})

describe('duty cycle', () => {
  it('rests so that computing takes at most the duty share of the time', () => {
    expect(restAfter(0.25, 1000)).toBe(3000)
    expect(restAfter(0.5, 1000)).toBe(1000)
    expect(restAfter(1, 1000)).toBe(0)
  })
})
