import { describe, expect, it } from 'vitest'
import { CoordinatorRequestError, CoordinatorUnreachableError } from '../../src/client/coordinatorClient.ts'
import { loadProblem, parameterProblem } from './pageErrors.ts'

const JOB = `0x${'ab'.repeat(32)}`

describe('page problems', () => {
  it('names a missing or malformed parameter before anything is fetched', () => {
    const wanted = [{ name: 'job', kind: 'job' as const, required: true }, { name: 'round', kind: 'index' as const }]
    expect(parameterProblem(new URLSearchParams(), wanted)).toMatchObject({ code: 'missing_parameter', title: 'This link is missing its job' })
    expect(parameterProblem(new URLSearchParams({ job: 'abc' }), wanted)).toMatchObject({ code: 'bad_parameter', message: expect.stringContaining('64 hex digits') })
    expect(parameterProblem(new URLSearchParams({ job: JOB, round: '-1' }), wanted)).toMatchObject({ code: 'bad_parameter', title: "This link's round is not valid" })
    expect(parameterProblem(new URLSearchParams({ job: JOB, round: '3' }), wanted)).toBeNull()
  })

  it('says an unknown job or unit in words, with the way back', () => {
    const job = loadProblem(new CoordinatorRequestError(404, 'job_not_found', `no job ${JOB}`), { job: JOB })
    expect(job).toMatchObject({ code: 'job_not_found', title: 'There is no such job', message: expect.stringContaining(JOB) })
    expect(job.links.map((l) => l.href)).toContain('./index.html')
    const unit = loadProblem(new CoordinatorRequestError(404, 'unit_not_found', 'no unit'), { job: JOB, round: 2, unit: 9 })
    expect(unit).toMatchObject({ code: 'unit_not_found', message: expect.stringContaining('no unit 9 in round 2') })
    expect(unit.links[0]).toEqual({ href: `./job.html?id=${JOB}`, text: 'Back to the job' })
    expect(loadProblem(new CoordinatorUnreachableError('down'))).toMatchObject({ code: 'unreachable' })
  })
})
