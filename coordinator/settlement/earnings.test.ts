import type { Address } from 'viem'
import { describe, expect, it } from 'vitest'
import { splitReferredPrice, type Hash } from '../../src/protocol/index.ts'
import type { Queryable } from '../db.ts'
import { computeEarnings, earnedBy, type FundedJob } from './earnings.ts'

const jobId = `0x${'cd'.repeat(32)}` as Hash
const alice: Address = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'
const site: Address = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC'
const PRICE = 1000n
const job: FundedJob = {
  id: jobId,
  payment: { pricePerUnit: String(PRICE) } as FundedJob['payment'],
  examplesPerUnit: 320,
  deposited: 1_000_000n,
  charged: 0n,
  refunded: false,
}

/** A store that answers every query with `rows` (earnings only read payable attempts). */
const answering = (rows: unknown[]): Queryable => ({ query: async <Row>() => rows as Row[] })

describe('pay follows the examples a unit trained', () => {
  it('pays a unit of the job H its price and a unit sized up in proportion, the referrer share included', async () => {
    const rows = [
      { job_id: jobId, contributor: alice, referrer: null, examples: 320 },
      { job_id: jobId, contributor: alice, referrer: null, examples: 1280 },
      { job_id: jobId, contributor: alice, referrer: site, examples: 640 },
    ]
    const { balances, jobTotals } = await computeEarnings(answering(rows), [job])
    const referred = splitReferredPrice(2n * PRICE)
    expect(balances.get(alice)).toBe(PRICE + 4n * PRICE + referred.contributor)
    expect(balances.get(site)).toBe(referred.referrer)
    expect(jobTotals.get(jobId)).toBe(7n * PRICE)
  })

  it("stops paying at the job's budget, a large unit counting as what it costs", async () => {
    const rows = [
      { job_id: jobId, contributor: alice, referrer: null, examples: 320 },
      { job_id: jobId, contributor: alice, referrer: null, examples: 1280 },
    ]
    const { jobTotals } = await computeEarnings(answering(rows), [{ ...job, deposited: 3n * PRICE }])
    expect(jobTotals.get(jobId)).toBe(PRICE)
  })

  it("adds an account's earnings the same way", async () => {
    const rows = [
      { job_id: jobId, examples: 320, own: '2', own_referred: '0', referred: '0' },
      { job_id: jobId, examples: 1280, own: '1', own_referred: '1', referred: '0' },
    ]
    expect(await earnedBy(answering(rows), alice, [job])).toBe(2n * PRICE + 4n * PRICE + splitReferredPrice(4n * PRICE).contributor)
  })
})
