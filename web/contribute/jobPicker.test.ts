import { describe, expect, it } from 'vitest'
import type { JobSummary } from '../../src/protocol/index.ts'
import { jobLabel, pickJob } from './jobPicker.ts'

const job = (id: string, patch: Partial<JobSummary> = {}): JobSummary => ({
  id: id as JobSummary['id'],
  name: `job ${id}`,
  status: 'active',
  round: 3,
  rounds: 40,
  checkpoint: `0x${'00'.repeat(32)}` as JobSummary['checkpoint'],
  createdAt: 0,
  statusChangedAt: null,
  payment: null,
  ...patch,
}) as JobSummary

describe('the job picker', () => {
  const jobs = [job('a', { status: 'finished' }), job('b'), job('c')]

  it('preselects ?job=, else the first active job', () => {
    expect(pickJob(jobs, 'c')?.id).toBe('c')
    expect(pickJob(jobs, 'a')?.id).toBe('a')
    expect(pickJob(jobs, 'missing')?.id).toBe('b')
    expect(pickJob(jobs, null)?.id).toBe('b')
    expect(pickJob([], null)).toBeNull()
  })

  it('says what each job pays and where it is', () => {
    expect(jobLabel(job('b'), null)).toBe('job b · volunteer · round 3 of 40')
    const paid = job('p', { payment: { pricePerUnit: (10n ** 18n).toString() } as JobSummary['payment'] })
    expect(jobLabel(paid, { symbol: 'TTT', decimals: 18 })).toBe('job p · 1 TTT per unit · round 3 of 40')
    expect(jobLabel(job('a', { status: 'finished' }), null)).toBe('job a · volunteer · finished')
  })
})
